"""The spec's types and their canonical form (positional msgpack arrays, integers only) inside
APP_REGISTER / APP_UPDATE payloads and the app records of the state; and the geolocation rule,
which placement applies to nodes through `location_allowed` too.

`from_fields` checks shape and hard bounds only; the rules (rules.py) judge the content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from fluxchain.core.appspec.diagnostics import check_app_name
from fluxchain.core.appspec.limits import (
    MAX_APP_CPU,
    MAX_APP_DISK_GB,
    MAX_APP_NAME,
    MAX_APP_RAM_MB,
    MAX_COMMAND,
    MAX_COMMAND_ARG,
    MAX_COMPONENT_NAME,
    MAX_COMPONENTS_HARD,
    MAX_CONTACT,
    MAX_CONTACTS,
    MAX_CONTAINER_PORT,
    MAX_DATA_PATH,
    MAX_DESCRIPTION,
    MAX_ENV,
    MAX_ENV_ENTRY,
    MAX_EXPIRE_HARD,
    MAX_GEO_RULES,
    MAX_IMAGE,
    MAX_INSTANCES_HARD,
    MAX_PINNED,
    MAX_PORTS,
    NODE_ID_SIZE,
    OWNER_SIZE,
    SPEC_VERSION,
)
from fluxchain.core.encoding import as_bytes, as_int, as_list, as_str
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.params import Tier


@dataclass(frozen=True, slots=True)
class Component:
    """One container of an app. Every instance of the app runs every component."""

    name: str
    description: str
    image: str
    ports: tuple[int, ...]  # published on the host, MIN_HOST_PORT..MAX_HOST_PORT
    container_ports: tuple[int, ...]  # same length: ports[i] forwards to container_ports[i]
    environment: tuple[str, ...]  # "KEY=value"
    command: tuple[str, ...]  # argv override; empty keeps the image's
    data_path: str  # persistent volume mount point inside the container
    cpu: int  # tenths of a core
    ram_mb: int
    disk_gb: int

    def to_fields(self) -> list[Any]:
        return [
            self.name,
            self.description,
            self.image,
            list(self.ports),
            list(self.container_ports),
            list(self.environment),
            list(self.command),
            self.data_path,
            self.cpu,
            self.ram_mb,
            self.disk_gb,
        ]

    @classmethod
    def from_fields(cls, f: Any, where: str) -> Self:
        (
            name,
            description,
            image,
            ports,
            container_ports,
            environment,
            command,
            data_path,
            cpu,
            ram_mb,
            disk_gb,
        ) = _shape(as_list, f, where, length=11)
        return cls(
            _shape(as_str, name, f"{where}.name", max_len=MAX_COMPONENT_NAME),
            _shape(as_str, description, f"{where}.description", max_len=MAX_DESCRIPTION),
            _shape(as_str, image, f"{where}.image", max_len=MAX_IMAGE),
            _ints(ports, f"{where}.ports", MAX_PORTS, MAX_CONTAINER_PORT),
            _ints(container_ports, f"{where}.container_ports", MAX_PORTS, MAX_CONTAINER_PORT),
            _strs(environment, f"{where}.environment", MAX_ENV, MAX_ENV_ENTRY),
            _strs(command, f"{where}.command", MAX_COMMAND, MAX_COMMAND_ARG),
            _shape(as_str, data_path, f"{where}.data_path", max_len=MAX_DATA_PATH),
            _shape(as_int, cpu, f"{where}.cpu", hi=MAX_APP_CPU),
            _shape(as_int, ram_mb, f"{where}.ram_mb", hi=MAX_APP_RAM_MB),
            _shape(as_int, disk_gb, f"{where}.disk_gb", hi=MAX_APP_DISK_GB),
        )


@dataclass(frozen=True, slots=True)
class GeoRule:
    """Allow or deny nodes of one continent, or of one country (`country` non-empty).

    JSON form: "EU" (a continent) or "EU_DE" (a country, qualified by its continent so that
    "NA" — North America — is never confused with Namibia).
    """

    allow: bool
    continent: str
    country: str  # "" for the whole continent

    def to_fields(self) -> list[Any]:
        return [int(self.allow), self.continent, self.country]

    @classmethod
    def from_fields(cls, f: Any, where: str) -> Self:
        allow, continent, country = _shape(as_list, f, where, length=3)
        return cls(
            bool(_shape(as_int, allow, f"{where}.allow", hi=1)),
            _shape(as_str, continent, f"{where}.continent", max_len=2),
            _shape(as_str, country, f"{where}.country", max_len=2),
        )

    def matches(self, continent: str, country: str) -> bool:
        """Whether a node at (continent, country) falls under this rule."""
        if self.country:
            return country == self.country
        return continent == self.continent

    @property
    def code(self) -> str:
        return f"{self.continent}_{self.country}" if self.country else self.continent


@dataclass(frozen=True, slots=True)
class AppSpec:
    """What a customer asks the network to run. `name` identifies the app for life."""

    name: str
    description: str
    owner: bytes  # 20-byte address; signs updates, receives refunds
    contacts: tuple[str, ...]
    components: tuple[Component, ...]
    instances: int
    expire: int  # blocks the app is paid for, counted from the tx's block
    geolocation: tuple[GeoRule, ...] = ()
    min_tier: Tier = Tier.CUMULUS
    pinned_nodes: tuple[bytes, ...] = ()  # when non-empty, only these nodes may host it
    version: int = field(default=SPEC_VERSION)

    # -- derived figures ---------------------------------------------------------------------

    @property
    def cpu(self) -> int:
        """Tenths of a core one instance needs (all components)."""
        return sum(c.cpu for c in self.components)

    @property
    def ram_mb(self) -> int:
        return sum(c.ram_mb for c in self.components)

    @property
    def disk_gb(self) -> int:
        return sum(c.disk_gb for c in self.components)

    @property
    def host_ports(self) -> tuple[int, ...]:
        """Every port one instance publishes on its node, sorted."""
        return tuple(sorted(p for c in self.components for p in c.ports))

    def location_allowed(self, continent: str, country: str) -> bool:
        """Whether the geolocation rules let a node at (continent, country) host the app."""
        return location_allowed(self.geolocation, continent, country)

    # -- canonical form ----------------------------------------------------------------------

    def to_fields(self) -> list[Any]:
        return [
            self.version,
            self.name,
            self.description,
            self.owner,
            list(self.contacts),
            [c.to_fields() for c in self.components],
            self.instances,
            self.expire,
            [g.to_fields() for g in self.geolocation],
            int(self.min_tier),
            list(self.pinned_nodes),
        ]

    @classmethod
    def from_fields(cls, fields: Any) -> Self:
        """Decode the canonical form: shape and hard bounds only (see `validate`).

        Raises DecodeError(invalid_spec) naming the field.
        """
        (
            version,
            name,
            description,
            owner,
            contacts,
            components,
            instances,
            expire,
            geolocation,
            min_tier,
            pinned,
        ) = _shape(as_list, fields, "spec", length=11)
        if _shape(as_int, version, "spec.version", hi=255) != SPEC_VERSION:
            raise DecodeError(Reason.INVALID_SPEC, f"spec.version {version} is not supported")
        name = _shape(as_str, name, "spec.name", max_len=MAX_APP_NAME)
        check_app_name(name, "spec.name")
        return cls(
            name=name,
            description=_shape(as_str, description, "spec.description", max_len=MAX_DESCRIPTION),
            owner=_shape(as_bytes, owner, "spec.owner", size=OWNER_SIZE),
            contacts=_strs(contacts, "spec.contacts", MAX_CONTACTS, MAX_CONTACT),
            components=tuple(
                Component.from_fields(c, f"spec.components[{i}]")
                for i, c in enumerate(
                    _shape(as_list, components, "spec.components", max_len=MAX_COMPONENTS_HARD)
                )
            ),
            instances=_shape(as_int, instances, "spec.instances", hi=MAX_INSTANCES_HARD),
            expire=_shape(as_int, expire, "spec.expire", hi=MAX_EXPIRE_HARD),
            geolocation=tuple(
                GeoRule.from_fields(g, f"spec.geolocation[{i}]")
                for i, g in enumerate(
                    _shape(as_list, geolocation, "spec.geolocation", max_len=MAX_GEO_RULES)
                )
            ),
            min_tier=Tier(_shape(as_int, min_tier, "spec.min_tier", lo=1, hi=3)),
            pinned_nodes=tuple(
                _shape(as_bytes, n, f"spec.pinned_nodes[{i}]", size=NODE_ID_SIZE)
                for i, n in enumerate(
                    _shape(as_list, pinned, "spec.pinned_nodes", max_len=MAX_PINNED)
                )
            ),
        )

    # -- JSON form ---------------------------------------------------------------------------
    # form.py reads and writes it; form.py builds specs, so it imports this module and these
    # two methods import form.py when called (they keep `AppSpec.from_json` working for callers)

    def to_json(self, hrp: str | None = None) -> dict[str, Any]:
        """The user-facing form; the owner as bech32 when `hrp` is given, else hex."""
        from fluxchain.core.appspec.form import spec_to_json  # noqa: PLC0415 (cycle)

        return spec_to_json(self, hrp)

    @classmethod
    def from_json(cls, obj: Any, hrp: str | None = None) -> AppSpec:
        """Parse the user form; raise SpecError listing every structural problem.

        `hrp` is the network's address prefix; None accepts any (the wallet passes its own).
        Run `validate` on the result for the rules (limits, characters, consistency).
        """
        from fluxchain.core.appspec.form import spec_from_json  # noqa: PLC0415 (cycle)

        return spec_from_json(obj, hrp)


# -- canonical decoding helpers -----------------------------------------------------------------


def _shape(check: Any, value: Any, where: str, **bounds: Any) -> Any:
    """Run an encoding `as_*` check, turning its failure into invalid_spec for this field."""
    try:
        return check(value, where, **bounds)
    except DecodeError as exc:
        raise DecodeError(Reason.INVALID_SPEC, exc.message) from None


def _ints(value: Any, where: str, max_len: int, hi: int) -> tuple[int, ...]:
    items = _shape(as_list, value, where, max_len=max_len)
    return tuple(_shape(as_int, v, f"{where}[{i}]", hi=hi) for i, v in enumerate(items))


def _strs(value: Any, where: str, max_len: int, max_item: int) -> tuple[str, ...]:
    items = _shape(as_list, value, where, max_len=max_len)
    return tuple(_shape(as_str, v, f"{where}[{i}]", max_len=max_item) for i, v in enumerate(items))


def location_allowed(rules: Sequence[GeoRule], continent: str, country: str) -> bool:
    """The geolocation rule, for an app spec and for placement alike: a node at (continent,
    country) is allowed if no deny rule matches it and, when allow rules exist, one of them
    matches it."""
    allowed = not any(rule.allow for rule in rules)
    for rule in rules:
        if rule.matches(continent, country):
            if not rule.allow:
                return False
            allowed = True
    return allowed
