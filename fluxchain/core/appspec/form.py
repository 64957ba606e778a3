"""The user's form of a spec: what users write as YAML or JSON (cpu in cores with at most one
decimal, "0.5"; the owner as a bech32 address), read with every structural problem named and a
hint for the keys Flux users carry over (`repotag` -> `image`).

A component's ports are read in either of two forms, and always written in the second:

    ports: [31000]                  # Flux-like: host ports, tcp, no domains,
    container_ports: [80]           # with one container port each

    ports:                          # per port
      - {host: 8080, container: 80, protocol: tcp, domains: [blog.example.com]}

In the per-port form `protocol` (tcp, udp or both) defaults to tcp and `domains` to none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import bech32

from fluxchain.core.appspec.diagnostics import Problem, SpecError, SpecProblem, format_cpu
from fluxchain.core.appspec.limits import (
    CPU,
    MAX_EXPIRE_HARD,
    NODE_ID_SIZE,
    OWNER_SIZE,
    SPEC_VERSION,
    TIER_NAMES,
)
from fluxchain.core.appspec.rules import validate
from fluxchain.core.appspec.spec import (
    AppSpec,
    Component,
    GeoRule,
    Port,
    Protocol,
    Volume,
    VolumeMode,
)
from fluxchain.core.params import Params, Tier


def validate_json(obj: Any, params: Params, hrp: str | None = None) -> list[SpecProblem]:
    """Every problem of a user-written spec: structure first, then the rules.

    Rule problems under a field that already has a structural problem are left out, so each
    mistake is reported once.
    """
    spec, problems = _parse_json(obj, hrp)
    if spec is None:
        return problems
    broken = [p.path for p in problems]
    for problem in validate(spec, params):
        if not any(_under(problem.path, b) for b in broken):
            problems.append(problem)
    return problems


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def parse_cpu(value: Any) -> int | None:
    """Cores as written by a user ("0.5", 2, 1.5) -> tenths; None if not exact in tenths.

    A YAML/JSON number with a fraction arrives as a Python float; its shortest repr ("0.1")
    is parsed as decimal text, so no binary fraction is ever used in arithmetic.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 10 if 0 <= value <= 1000 else None
    if isinstance(value, float):
        value = repr(value)
    if not isinstance(value, str):
        return None
    match = CPU.fullmatch(value.strip())
    if match is None:
        return None
    return int(match.group(1)) * 10 + int(match.group(2) or 0)


# -- JSON parsing -----------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset(
    [
        "version",
        "name",
        "description",
        "owner",
        "contacts",
        "components",
        "instances",
        "expire",
        "geolocation",
        "min_tier",
        "pinned_nodes",
    ]
)
_COMPONENT_KEYS: Final = frozenset(
    [
        "name",
        "description",
        "image",
        "ports",
        "container_ports",
        "environment",
        "command",
        "data_path",
        "cpu",
        "ram_mb",
        "disk_gb",
        "volumes",
    ]
)
_VOLUME_KEYS: Final = frozenset(["mount", "mode"])
_VOLUME_MODES: Final[dict[str, VolumeMode]] = {m.label: m for m in VolumeMode}
_PORT_KEYS: Final = frozenset(["host", "container", "protocol", "domains"])
_PROTOCOLS: Final[dict[str, Protocol]] = {p.label: p for p in Protocol}


class _Reader:
    """Collects structural problems while reading a JSON object."""

    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []

    def add(self, path: str, code: Problem, message: str) -> None:
        self.problems.append(SpecProblem(path, code, message))

    def keys(self, obj: dict[str, Any], allowed: frozenset[str], base: str) -> None:
        for key in sorted(str(k) for k in obj):
            if key not in allowed:
                near = _suggest(key, allowed)
                hint = f"; did you mean {near!r}?" if near else ""
                self.add(_join(base, key), Problem.UNKNOWN_FIELD, f"is not a spec field{hint}")

    def text(self, obj: dict[str, Any], key: str, base: str, default: str | None) -> str:
        path = _join(base, key)
        if key not in obj or obj[key] is None:
            if default is None:
                self.add(path, Problem.MISSING, "is required")
                return ""
            return default
        value = obj[key]
        if not isinstance(value, str):
            self.add(path, Problem.WRONG_TYPE, f"expected text, got {_kind(value)}")
            return ""
        return value

    def integer(self, obj: dict[str, Any], key: str, base: str, default: int | None) -> int:
        path = _join(base, key)
        if key not in obj or obj[key] is None:
            if default is None:
                self.add(path, Problem.MISSING, "is required")
                return 0
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, Problem.WRONG_TYPE, f"expected a whole number, got {_kind(value)}")
            return 0
        if not 0 <= value <= MAX_EXPIRE_HARD:
            self.add(path, Problem.OUT_OF_RANGE, f"{value} is out of range")
            return 0
        return value

    def items(self, obj: dict[str, Any], key: str, base: str) -> list[Any]:
        path = _join(base, key)
        if key not in obj or obj[key] is None:
            return []
        value = obj[key]
        if not isinstance(value, list):
            self.add(path, Problem.WRONG_TYPE, f"expected a list, got {_kind(value)}")
            return []
        return value

    def texts(self, obj: dict[str, Any], key: str, base: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.items(obj, key, base)):
            if isinstance(item, str):
                out.append(item)
            elif key == "environment" and isinstance(item, dict):
                self.add(
                    f"{_join(base, key)}[{i}]",
                    Problem.WRONG_TYPE,
                    "expected 'KEY=value' text (quote it in YAML), got a mapping",
                )
            else:
                self.add(
                    f"{_join(base, key)}[{i}]",
                    Problem.WRONG_TYPE,
                    f"expected text, got {_kind(item)}",
                )
        return tuple(out)

    def ints(self, obj: dict[str, Any], key: str, base: str) -> tuple[int, ...]:
        """The list's whole numbers; a mistyped one is reported and held by a placeholder 0,
        so the items keep the indexes the user wrote."""
        out: list[int] = []
        for i, item in enumerate(self.items(obj, key, base)):
            if isinstance(item, bool) or not isinstance(item, int):
                self.add(
                    f"{_join(base, key)}[{i}]",
                    Problem.WRONG_TYPE,
                    f"expected a whole number, got {_kind(item)}",
                )
                out.append(0)
            else:
                out.append(item)
        return tuple(out)


def spec_from_json(obj: Any, hrp: str | None = None) -> AppSpec:
    """Parse the user form; raise SpecError listing every structural problem (see
    `AppSpec.from_json`)."""
    spec, problems = _parse_json(obj, hrp)
    if problems or spec is None:
        raise SpecError(problems)
    return spec


def spec_to_json(spec: AppSpec, hrp: str | None = None) -> dict[str, Any]:
    """The user-facing form of `spec`; the owner as bech32 when `hrp` is given, else hex."""
    return {
        "version": SPEC_VERSION,
        "name": spec.name,
        "description": spec.description,
        "owner": _owner_text(spec.owner, hrp),
        "contacts": list(spec.contacts),
        "components": [
            {
                "name": c.name,
                "description": c.description,
                "image": c.image,
                "ports": [
                    {
                        "host": p.host,
                        "container": p.container,
                        "protocol": p.protocol.label,
                        "domains": list(p.domains),
                    }
                    for p in c.ports
                ],
                "environment": list(c.environment),
                "command": list(c.command),
                "data_path": c.data_path,
                "cpu": format_cpu(c.cpu),
                "ram_mb": c.ram_mb,
                "disk_gb": c.disk_gb,
                "volumes": [{"mount": v.mount, "mode": v.mode.label} for v in c.volumes],
            }
            for c in spec.components
        ],
        "instances": spec.instances,
        "expire": spec.expire,
        "geolocation": {
            "allow": [g.code for g in spec.geolocation if g.allow],
            "deny": [g.code for g in spec.geolocation if not g.allow],
        },
        "min_tier": spec.min_tier.name.lower(),
        "pinned_nodes": [n.hex() for n in spec.pinned_nodes],
    }


def _parse_json(obj: Any, hrp: str | None) -> tuple[AppSpec | None, list[SpecProblem]]:
    """The spec `obj` describes (None if it is not a mapping) and every structural problem,
    in field order; a field with a problem holds a placeholder in the spec."""
    r = _Reader()
    if not isinstance(obj, dict):
        r.add("spec", Problem.WRONG_TYPE, f"expected a mapping of fields, got {_kind(obj)}")
        return None, r.problems
    r.keys(obj, _TOP_KEYS, "")
    # keyword arguments are evaluated in the order written: problems come in field order
    _read_version(r, obj)
    spec = AppSpec(
        name=r.text(obj, "name", "", None),
        description=r.text(obj, "description", "", ""),
        owner=_read_owner(r, obj, hrp),
        contacts=r.texts(obj, "contacts", ""),
        components=_read_components(r, obj),
        instances=r.integer(obj, "instances", "", 3),
        expire=r.integer(obj, "expire", "", None),
        geolocation=_parse_geolocation(r, obj.get("geolocation")),
        min_tier=_read_min_tier(r, obj),
        pinned_nodes=_read_pinned_nodes(r, obj),
    )
    return spec, r.problems


def _read_version(r: _Reader, obj: dict[str, Any]) -> None:
    # the user form of every version so far reads the same (version 1's ports included)
    version = r.integer(obj, "version", "", SPEC_VERSION)
    if not 1 <= version <= SPEC_VERSION:
        r.add("version", Problem.OUT_OF_RANGE, f"version {version} is not 1..{SPEC_VERSION}")


def _read_owner(r: _Reader, obj: dict[str, Any], hrp: str | None) -> bytes:
    owner_text = r.text(obj, "owner", "", None)
    if owner_text:
        owner, why = _parse_owner(owner_text, hrp)
        if owner is not None:
            return owner
        r.add("owner", Problem.BAD_ADDRESS, why)
    return b"\x00" * OWNER_SIZE


def _read_components(r: _Reader, obj: dict[str, Any]) -> tuple[Component, ...]:
    raw_components = r.items(obj, "components", "")
    if "components" not in obj:
        r.add("components", Problem.MISSING, "is required (a list of containers)")
    components: list[Component] = []
    for i, item in enumerate(raw_components):
        component = _parse_component(r, item, f"components[{i}]")
        if component is not None:
            components.append(component)
    return tuple(components)


def _read_min_tier(r: _Reader, obj: dict[str, Any]) -> Tier:
    tier_text = r.text(obj, "min_tier", "", "cumulus")
    if tier_text.lower() in TIER_NAMES:
        return TIER_NAMES[tier_text.lower()]
    if tier_text:
        r.add("min_tier", Problem.BAD_FORMAT, f"{tier_text!r} is not one of {sorted(TIER_NAMES)}")
    return Tier.CUMULUS


def _read_pinned_nodes(r: _Reader, obj: dict[str, Any]) -> tuple[bytes, ...]:
    pinned: list[bytes] = []
    for i, text in enumerate(r.texts(obj, "pinned_nodes", "")):
        try:
            node_id = bytes.fromhex(text)
        except ValueError:
            node_id = b""
        if len(node_id) != NODE_ID_SIZE:
            r.add(
                f"pinned_nodes[{i}]", Problem.BAD_FORMAT, f"expected {NODE_ID_SIZE * 2} hex digits"
            )
        else:
            pinned.append(node_id)
    return tuple(pinned)


def _parse_component(r: _Reader, item: Any, base: str) -> Component | None:
    if not isinstance(item, dict):
        r.add(base, Problem.WRONG_TYPE, f"expected a mapping of fields, got {_kind(item)}")
        return None
    r.keys(item, _COMPONENT_KEYS, base)
    cpu_path = f"{base}.cpu"
    cpu = 0
    if "cpu" not in item:
        r.add(cpu_path, Problem.MISSING, "is required (cores, e.g. 0.5)")
    else:
        parsed = parse_cpu(item["cpu"])
        if parsed is None:
            r.add(
                cpu_path,
                Problem.BAD_FORMAT,
                f"{item['cpu']!r} is not cores with one decimal, like 0.5",
            )
        else:
            cpu = parsed
    return Component(
        name=r.text(item, "name", base, None),
        description=r.text(item, "description", base, ""),
        image=r.text(item, "image", base, None),
        ports=_read_ports(r, item, base),
        environment=r.texts(item, "environment", base),
        command=r.texts(item, "command", base),
        data_path=r.text(item, "data_path", base, "/data"),
        cpu=cpu,
        ram_mb=r.integer(item, "ram_mb", base, None),
        disk_gb=r.integer(item, "disk_gb", base, None),
        volumes=_read_volumes(r, item, base),
    )


def _read_volumes(r: _Reader, item: dict[str, Any], base: str) -> tuple[Volume, ...]:
    """The component's declared volumes: mappings of `mount` and `mode` (local by default)."""
    out = []
    for i, raw in enumerate(r.items(item, "volumes", base)):
        path = f"{_join(base, 'volumes')}[{i}]"
        if not isinstance(raw, dict):
            r.add(
                path, Problem.WRONG_TYPE, f"expected a mapping of mount and mode, got {_kind(raw)}"
            )
            continue
        r.keys(raw, _VOLUME_KEYS, path)
        label = r.text(raw, "mode", path, "local")
        mode = _VOLUME_MODES.get(label)
        if mode is None:
            r.add(f"{path}.mode", Problem.BAD_FORMAT, f"{label!r} is not 'local' or 'replicated'")
            mode = VolumeMode.LOCAL
        out.append(Volume(r.text(raw, "mount", path, None), mode))
    return tuple(out)


def _read_ports(r: _Reader, item: dict[str, Any], base: str) -> tuple[Port, ...]:
    """The component's ports, in the form it is written in (the module doc)."""
    raw = r.items(item, "ports", base)
    if any(isinstance(p, dict) for p in raw):
        if "container_ports" in item:
            r.add(
                f"{base}.container_ports",
                Problem.MISMATCH,
                "goes with a list of port numbers; in the per-port form write "
                "'container' in each port",
            )
        return tuple(_parse_port(r, p, f"{base}.ports[{j}]") for j, p in enumerate(raw))
    hosts = r.ints(item, "ports", base)
    containers = r.ints(item, "container_ports", base)
    if len(containers) != len(hosts):
        r.add(
            f"{base}.container_ports",
            Problem.MISMATCH,
            f"{len(containers)} container ports for {len(hosts)} ports (one each)",
        )
    return tuple(Port(h, c) for h, c in zip(hosts, containers, strict=False))


def _parse_port(r: _Reader, raw: Any, path: str) -> Port:
    """One port of the per-port form; a placeholder (host 0) where it is not a mapping, so
    the ports keep the indexes the user wrote."""
    if not isinstance(raw, dict):
        r.add(
            path,
            Problem.WRONG_TYPE,
            f"expected a port mapping like the others ({{host: 8080, container: 80}}), "
            f"got {_kind(raw)}",
        )
        return Port(0, 0)
    r.keys(raw, _PORT_KEYS, path)
    protocol_text = r.text(raw, "protocol", path, "tcp")
    protocol = _PROTOCOLS.get(protocol_text.lower())
    if protocol is None:
        if protocol_text:
            r.add(
                f"{path}.protocol",
                Problem.BAD_FORMAT,
                f"{protocol_text!r} is not one of {sorted(_PROTOCOLS)}",
            )
        protocol = Protocol.TCP
    return Port(
        host=r.integer(raw, "host", path, None),
        container=r.integer(raw, "container", path, None),
        protocol=protocol,
        domains=r.texts(raw, "domains", path),
    )


def _parse_geolocation(r: _Reader, raw: Any) -> tuple[GeoRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        r.add("geolocation", Problem.WRONG_TYPE, "expected {allow: [...], deny: [...]}")
        return ()
    r.keys(raw, frozenset({"allow", "deny"}), "geolocation")
    rules: list[GeoRule] = []
    for mode in ("allow", "deny"):
        for i, code in enumerate(r.texts(raw, mode, "geolocation")):
            path = f"geolocation.{mode}[{i}]"
            continent, _, country = code.partition("_")
            if len(continent) != 2 or (country and len(country) != 2) or code.count("_") > 1:
                r.add(path, Problem.BAD_FORMAT, f"{code!r} is not like 'EU' or 'EU_DE'")
                continue
            rules.append(GeoRule(mode == "allow", continent, country))
    return tuple(rules)


def _parse_owner(text: str, hrp: str | None) -> tuple[bytes | None, str]:
    got_hrp, data = bech32.bech32_decode(text.strip())
    if got_hrp is None or data is None:
        return None, f"{text!r} is not a bech32 address"
    if hrp is not None and got_hrp != hrp:
        return None, f"address is for network {got_hrp!r}, not {hrp!r}"
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != OWNER_SIZE:
        return None, "address payload is not 20 bytes"
    return bytes(raw), ""


def _owner_text(owner: bytes, hrp: str | None) -> str:
    if hrp is None:
        return owner.hex()
    data = bech32.convertbits(owner, 8, 5)
    assert data is not None
    return str(bech32.bech32_encode(hrp, data))


def _suggest(key: str, allowed: Iterable[str]) -> str | None:
    """A Flux (camelCase) or misspelt key's likely intended name."""
    aliases = {
        "repotag": "image",
        "containerports": "container_ports",
        "environmentparameters": "environment",
        "enviromentparameters": "environment",
        "commands": "command",
        "containerdata": "data_path",
        "ram": "ram_mb",
        "hdd": "disk_gb",
        "disk": "disk_gb",
        "compose": "components",
        "nodes": "pinned_nodes",
        "hostport": "host",
        "containerport": "container",
        "domain": "domains",
        "proto": "protocol",
    }
    folded = key.lower().replace("_", "")
    if folded in aliases:
        return aliases[folded]
    for name in sorted(allowed):
        if name.replace("_", "") == folded:
            return name
    return None


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
