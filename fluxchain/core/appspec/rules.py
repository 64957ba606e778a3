"""The validation rules of an app spec: `validate(spec, params)` reports every problem at
once, in field order, each with its field path, a problem code and a sentence.

Each rule below checks one field (or one part of a component) and adds what it finds to a
`Report`; `validate` runs them in the order of the spec's fields. The state machine and the
wallet call the same function, so a spec the wallet accepts is a spec the chain accepts.
Nothing here reads the state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fluxchain.core.appspec.diagnostics import (
    Problem,
    SpecProblem,
    app_name_problem,
    char_problem,
    describe_characters,
    domain_problem,
    format_cpu,
)
from fluxchain.core.appspec.limits import (
    CONTINENTS,
    COUNTRY,
    ENV_KEY,
    IMAGE,
    MAX_APP_CPU,
    MAX_APP_DISK_GB,
    MAX_APP_NAME,
    MAX_APP_RAM_MB,
    MAX_COMMAND,
    MAX_COMMAND_ARG,
    MAX_COMPONENTS_HARD,
    MAX_CONTACT,
    MAX_CONTACTS,
    MAX_CONTAINER_PORT,
    MAX_DATA_PATH,
    MAX_DESCRIPTION,
    MAX_DOMAINS,
    MAX_ENV,
    MAX_ENV_ENTRY,
    MAX_GEO_RULES,
    MAX_HOST_PORT,
    MAX_IMAGE,
    MAX_PINNED,
    MAX_PORTS,
    MAX_VOLUMES,
    MIN_COMPONENT_CPU,
    MIN_COMPONENT_DISK_GB,
    MIN_COMPONENT_RAM_MB,
    MIN_DATA_PATH,
    MIN_HOST_PORT,
    NODE_ID_SIZE,
    OWNER_SIZE,
    banned_port_reason,
)
from fluxchain.core.appspec.spec import AppSpec, Component, Port
from fluxchain.core.params import Params, Tier


class Report:
    """The problems found so far, and what the component rules share across components:
    the names, host ports and domains already taken in the app."""

    __slots__ = ("component_names", "domains", "host_ports", "problems")

    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []
        self.component_names: dict[str, int] = {}  # name -> index of the first component
        self.host_ports: dict[int, str] = {}  # port key (spec.port_key) -> path of first use
        self.domains: dict[str, str] = {}  # domain -> path of its first use

    def add(self, path: str, code: Problem, message: str) -> None:
        self.problems.append(SpecProblem(path, code, message))

    def maybe(self, problem: SpecProblem | None) -> None:
        if problem is not None:
            self.problems.append(problem)

    def characters(
        self, path: str, text: str, *, allow_typographic: bool, allow_newline: bool = False
    ) -> bool:
        """Add a problem if `text` has invisible (or, unless allowed, typographic)
        characters; return whether it had."""
        problem = char_problem(
            path, text, allow_typographic=allow_typographic, allow_newline=allow_newline
        )
        self.maybe(problem)
        return problem is not None


def validate(spec: AppSpec, params: Params) -> list[SpecProblem]:
    """Every problem of `spec` under `params`, in field order; [] means valid."""
    report = Report()
    for rule in _SPEC_RULES:
        rule(report, spec, params)
    return report.problems


def too_long(text: str, limit: int) -> str:
    """The sentence for a text over its limit."""
    return f"is {len(text)} characters, at most {limit} are allowed"


# -- the spec's fields, in order ----------------------------------------------------------------


def _check_name(report: Report, spec: AppSpec, _: Params) -> None:
    # one DNS label, the app's identity
    message = app_name_problem(spec.name)
    if message is None:
        return
    code = Problem.BAD_FORMAT
    if not spec.name:
        code = Problem.MISSING
    elif len(spec.name) > MAX_APP_NAME:
        code = Problem.TOO_LONG
    elif describe_characters(spec.name, allow_typographic=False):
        code = Problem.INVISIBLE_CHARACTER
    report.add("name", code, message)


def _check_description(report: Report, spec: AppSpec, _: Params) -> None:
    # human text: typographic quotes are fine here, invisible ones are not
    _check_description_text(report, "description", spec.description)


def _check_owner(report: Report, spec: AppSpec, _: Params) -> None:
    # an address
    if len(spec.owner) != OWNER_SIZE:
        report.add("owner", Problem.BAD_ADDRESS, f"is {len(spec.owner)} bytes, not {OWNER_SIZE}")


def _check_contacts(report: Report, spec: AppSpec, _: Params) -> None:
    # at most five short strings
    if len(spec.contacts) > MAX_CONTACTS:
        report.add(
            "contacts", Problem.TOO_MANY, f"{len(spec.contacts)} contacts, at most {MAX_CONTACTS}"
        )
    for i, contact in enumerate(spec.contacts):
        path = f"contacts[{i}]"
        if not contact:
            report.add(path, Problem.MISSING, "is empty")
        if len(contact) > MAX_CONTACT:
            report.add(path, Problem.TOO_LONG, too_long(contact, MAX_CONTACT))
        report.characters(path, contact, allow_typographic=False)


def _check_components(report: Report, spec: AppSpec, params: Params) -> None:
    # 1..app_max_components, each one checked by the component rules, unique names and host
    # ports across the app
    limit = min(params.app_max_components, MAX_COMPONENTS_HARD)
    if not spec.components:
        report.add("components", Problem.TOO_FEW, "an app needs at least one component")
    if len(spec.components) > limit:
        report.add(
            "components", Problem.TOO_MANY, f"{len(spec.components)} components, at most {limit}"
        )
    for i, component in enumerate(spec.components):
        base = f"components[{i}]"
        for rule in _COMPONENT_RULES:
            rule(report, component, i, base)
    _check_totals(report, spec)


def _check_instances(report: Report, spec: AppSpec, params: Params) -> None:
    # a genesis param
    if not params.app_min_instances <= spec.instances <= params.app_max_instances:
        report.add(
            "instances",
            Problem.OUT_OF_RANGE,
            f"{spec.instances} is outside {params.app_min_instances}..{params.app_max_instances}",
        )


def _check_expire(report: Report, spec: AppSpec, params: Params) -> None:
    # a genesis param
    if not params.app_min_expire <= spec.expire <= params.app_max_expire:
        report.add(
            "expire",
            Problem.OUT_OF_RANGE,
            f"{spec.expire} blocks is outside {params.app_min_expire}..{params.app_max_expire}",
        )


def _check_geolocation(report: Report, spec: AppSpec, _: Params) -> None:
    # continent codes or continent_country codes, no repeats
    if len(spec.geolocation) > MAX_GEO_RULES:
        report.add(
            "geolocation",
            Problem.TOO_MANY,
            f"{len(spec.geolocation)} rules, at most {MAX_GEO_RULES}",
        )
    seen: dict[tuple[str, str], int] = {}
    for i, rule in enumerate(spec.geolocation):
        path = f"geolocation[{i}]"
        if rule.continent not in CONTINENTS:
            report.add(
                path,
                Problem.BAD_FORMAT,
                f"{rule.continent!r} is not a continent code ({', '.join(sorted(CONTINENTS))})",
            )
        if rule.country and not COUNTRY.fullmatch(rule.country):
            report.add(
                path, Problem.BAD_FORMAT, f"{rule.country!r} is not a country code like 'DE'"
            )
        key = (rule.continent, rule.country)
        if key in seen:
            report.add(path, Problem.DUPLICATE, f"{rule.code} already appears at [{seen[key]}]")
        else:
            seen[key] = i


def _check_min_tier(report: Report, spec: AppSpec, _: Params) -> None:
    # one of the three tiers
    if int(spec.min_tier) not in {int(t) for t in Tier}:
        report.add("min_tier", Problem.OUT_OF_RANGE, f"{spec.min_tier} is not a tier")


def _check_pinned_nodes(report: Report, spec: AppSpec, _: Params) -> None:
    # unique node ids, enough of them for every instance (one instance per node)
    if len(spec.pinned_nodes) > MAX_PINNED:
        report.add(
            "pinned_nodes", Problem.TOO_MANY, f"{len(spec.pinned_nodes)}, at most {MAX_PINNED}"
        )
    seen: dict[bytes, int] = {}
    for i, node_id in enumerate(spec.pinned_nodes):
        path = f"pinned_nodes[{i}]"
        if len(node_id) != NODE_ID_SIZE:
            report.add(path, Problem.BAD_FORMAT, f"is {len(node_id)} bytes, not {NODE_ID_SIZE}")
        if node_id in seen:
            report.add(path, Problem.DUPLICATE, f"node already pinned at [{seen[node_id]}]")
        else:
            seen[node_id] = i
    if spec.pinned_nodes and len(seen) < spec.instances:
        report.add(
            "pinned_nodes",
            Problem.TOO_FEW,
            f"{len(seen)} distinct nodes pinned for {spec.instances} instances "
            "(one instance per node)",
        )


_SPEC_RULES: Final[tuple[Callable[[Report, AppSpec, Params], None], ...]] = (
    _check_name,
    _check_description,
    _check_owner,
    _check_contacts,
    _check_components,
    _check_instances,
    _check_expire,
    _check_geolocation,
    _check_min_tier,
    _check_pinned_nodes,
)


# -- one component's fields, in order -----------------------------------------------------------


def _check_component_name(report: Report, c: Component, i: int, base: str) -> None:
    # DNS-safe, unique within the app
    message = app_name_problem(c.name)
    names = report.component_names
    if message is not None:
        code = Problem.MISSING if not c.name else Problem.BAD_FORMAT
        report.add(f"{base}.name", code, message)
    elif c.name in names:
        report.add(
            f"{base}.name", Problem.DUPLICATE, f"{c.name!r} is also components[{names[c.name]}]"
        )
    else:
        names[c.name] = i


def _check_component_description(report: Report, c: Component, _: int, base: str) -> None:
    _check_description_text(report, f"{base}.description", c.description)


def _check_image(report: Report, c: Component, _: int, base: str) -> None:
    # a Docker reference
    path = f"{base}.image"
    if report.characters(path, c.image, allow_typographic=False):
        return
    if not c.image:
        report.add(path, Problem.MISSING, "an image such as 'nginx:1.27' is required")
    elif len(c.image) > MAX_IMAGE:
        report.add(path, Problem.TOO_LONG, too_long(c.image, MAX_IMAGE))
    elif not IMAGE.fullmatch(c.image):
        report.add(path, Problem.BAD_FORMAT, f"{c.image!r} is not a Docker image reference")


def _check_ports(report: Report, c: Component, _: int, base: str) -> None:
    # host ports in 1024..65535 and not banned, each (port, protocol) once across the app;
    # container ports 1..65535; domains valid, on tcp ports, once across the app
    if len(c.ports) > MAX_PORTS:
        report.add(f"{base}.ports", Problem.TOO_MANY, f"{len(c.ports)} ports, at most {MAX_PORTS}")
    for j, port in enumerate(c.ports):
        path = f"{base}.ports[{j}]"
        _check_host_port(report, port, path)
        if not 1 <= port.container <= MAX_CONTAINER_PORT:
            report.add(
                f"{path}.container",
                Problem.OUT_OF_RANGE,
                f"{port.container} is outside 1..{MAX_CONTAINER_PORT}",
            )
        _check_domains(report, port, path)


def _check_host_port(report: Report, port: Port, path: str) -> None:
    where = f"{path}.host"
    if not MIN_HOST_PORT <= port.host <= MAX_HOST_PORT:
        report.add(
            where, Problem.OUT_OF_RANGE, f"{port.host} is outside {MIN_HOST_PORT}..{MAX_HOST_PORT}"
        )
        return
    banned = banned_port_reason(port.host)
    if banned is not None:
        report.add(where, Problem.OUT_OF_RANGE, f"{port.host} is reserved for {banned}")
        return
    taken = report.host_ports
    for key in port.keys:
        if key in taken:
            label = "udp" if key % 2 else "tcp"
            report.add(where, Problem.DUPLICATE, f"{port.host}/{label} is also {taken[key]}")
            return
    for key in port.keys:
        taken[key] = where


def _check_domains(report: Report, port: Port, path: str) -> None:
    if not port.domains:
        return
    if len(port.domains) > MAX_DOMAINS:
        report.add(
            f"{path}.domains",
            Problem.TOO_MANY,
            f"{len(port.domains)} domains, at most {MAX_DOMAINS} a port",
        )
    if not port.protocol.carries_tcp:
        report.add(
            f"{path}.domains",
            Problem.MISMATCH,
            "domains are routed over HTTP, which needs tcp: a udp port has none",
        )
    for k, domain in enumerate(port.domains):
        where = f"{path}.domains[{k}]"
        if report.characters(where, domain, allow_typographic=False):
            continue
        problem = domain_problem(domain)
        if problem is not None:
            report.add(where, *problem)
        elif domain in report.domains:
            report.add(where, Problem.DUPLICATE, f"{domain} is also {report.domains[domain]}")
        else:
            report.domains[domain] = where


def _check_environment(report: Report, c: Component, _index: int, base: str) -> None:
    # KEY=value, unique keys, no invisible or typographic characters
    if len(c.environment) > MAX_ENV:
        report.add(
            f"{base}.environment",
            Problem.TOO_MANY,
            f"{len(c.environment)} entries, at most {MAX_ENV}",
        )
    keys: dict[str, int] = {}
    for j, entry in enumerate(c.environment):
        path = f"{base}.environment[{j}]"
        if len(entry) > MAX_ENV_ENTRY:
            report.add(path, Problem.TOO_LONG, too_long(entry, MAX_ENV_ENTRY))
        report.characters(path, entry, allow_typographic=False)
        key, sep, _ = entry.partition("=")
        if not sep or not ENV_KEY.fullmatch(key):
            report.add(path, Problem.BAD_FORMAT, f"{entry[:40]!r} is not KEY=value")
        elif key in keys:
            report.add(path, Problem.DUPLICATE, f"{key} is also set at environment[{keys[key]}]")
        else:
            keys[key] = j


def _check_command(report: Report, c: Component, _: int, base: str) -> None:
    # argv strings; an argument may span lines
    if len(c.command) > MAX_COMMAND:
        report.add(
            f"{base}.command",
            Problem.TOO_MANY,
            f"{len(c.command)} arguments, at most {MAX_COMMAND}",
        )
    for j, arg in enumerate(c.command):
        path = f"{base}.command[{j}]"
        if len(arg) > MAX_COMMAND_ARG:
            report.add(path, Problem.TOO_LONG, too_long(arg, MAX_COMMAND_ARG))
        report.characters(path, arg, allow_typographic=False, allow_newline=True)


def _check_data_path(report: Report, c: Component, _: int, base: str) -> None:
    _check_mount(report, f"{base}.data_path", c.data_path)


def _check_mount(report: Report, path: str, mount: str) -> bool:
    # an absolute path inside the container, not the root, never climbing out (the process
    # runtime makes it a directory under the workload's own: '..' would leave it)
    if report.characters(path, mount, allow_typographic=False):
        return False
    if len(mount) < MIN_DATA_PATH or not mount.startswith("/") or _mount_key(mount) == "/":
        report.add(path, Problem.BAD_FORMAT, f"{mount!r} must be an absolute path, not '/'")
    elif len(mount) > MAX_DATA_PATH:
        report.add(path, Problem.TOO_LONG, too_long(mount, MAX_DATA_PATH))
    elif ".." in mount.split("/"):
        report.add(path, Problem.BAD_FORMAT, f"{mount!r} must not contain '..'")
    else:
        return True
    return False


def _check_volumes(report: Report, c: Component, _: int, base: str) -> None:
    # each volume a distinct directory, none inside another or inside data_path: one file
    # must belong to one volume, or a replicated volume would carry a local one's data
    if len(c.volumes) > MAX_VOLUMES:
        report.add(f"{base}.volumes", Problem.TOO_MANY, f"{len(c.volumes)}, at most {MAX_VOLUMES}")
    seen = [_mount_key(c.data_path)] if c.data_path else []
    for j, volume in enumerate(c.volumes):
        path = f"{base}.volumes[{j}].mount"
        if not _check_mount(report, path, volume.mount):
            continue
        mount = _mount_key(volume.mount)
        for other in seen:
            if mount == other or mount.startswith(other + "/") or other.startswith(mount + "/"):
                report.add(path, Problem.DUPLICATE, f"{volume.mount!r} overlaps {other!r}")
                break
        seen.append(mount)


def _mount_key(mount: str) -> str:
    # the directory a mount names, however spelled: `/./a//b/` is `/a/b` (the runtimes map
    # both to one host directory, so the overlap rule compares these)
    return "/" + "/".join(part for part in mount.split("/") if part not in ("", "."))


def _check_resources(report: Report, c: Component, _: int, base: str) -> None:
    # each component asks for something
    if c.cpu < MIN_COMPONENT_CPU:
        report.add(f"{base}.cpu", Problem.OUT_OF_RANGE, "at least 0.1 core")
    if c.ram_mb < MIN_COMPONENT_RAM_MB:
        report.add(f"{base}.ram_mb", Problem.OUT_OF_RANGE, f"at least {MIN_COMPONENT_RAM_MB} MB")
    if c.disk_gb < MIN_COMPONENT_DISK_GB:
        report.add(f"{base}.disk_gb", Problem.OUT_OF_RANGE, f"at least {MIN_COMPONENT_DISK_GB} GB")


_COMPONENT_RULES: Final[tuple[Callable[[Report, Component, int, str], None], ...]] = (
    _check_component_name,
    _check_component_description,
    _check_image,
    _check_ports,
    _check_environment,
    _check_command,
    _check_data_path,
    _check_volumes,
    _check_resources,
)


def _check_totals(report: Report, spec: AppSpec) -> None:
    # per instance, over all components: what one node of the largest tier can hold
    if spec.cpu > MAX_APP_CPU:
        report.add(
            "components",
            Problem.OUT_OF_RANGE,
            f"cpu totals {format_cpu(spec.cpu)} cores, at most {format_cpu(MAX_APP_CPU)}",
        )
    if spec.ram_mb > MAX_APP_RAM_MB:
        report.add(
            "components",
            Problem.OUT_OF_RANGE,
            f"RAM totals {spec.ram_mb} MB, at most {MAX_APP_RAM_MB}",
        )
    if spec.disk_gb > MAX_APP_DISK_GB:
        report.add(
            "components",
            Problem.OUT_OF_RANGE,
            f"disk totals {spec.disk_gb} GB, at most {MAX_APP_DISK_GB}",
        )


def _check_description_text(report: Report, path: str, text: str) -> None:
    if len(text) > MAX_DESCRIPTION:
        report.add(path, Problem.TOO_LONG, too_long(text, MAX_DESCRIPTION))
    report.characters(path, text, allow_typographic=True)
