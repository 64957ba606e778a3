"""The spec's types and their canonical form (positional msgpack arrays, integers only) inside
APP_REGISTER / APP_UPDATE payloads and the app records of the state; and the geolocation rule,
which placement applies to nodes through `location_allowed` too.

The types are declared records (core/encoding.py): each field's annotation is its decode
bound, so `from_fields` checks shape and hard bounds only and names the failing field
("payload.spec.components[0].ports[1].host: ..."); the rules (rules.py) judge the content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any

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
    MAX_DOMAIN,
    MAX_DOMAINS,
    MAX_ENV,
    MAX_ENV_ENTRY,
    MAX_EXPIRE_HARD,
    MAX_GEO_RULES,
    MAX_HOST_PORT,
    MAX_IMAGE,
    MAX_INSTANCES_HARD,
    MAX_PINNED,
    MAX_PORTS,
    MAX_VOLUMES,
    NODE_ID_SIZE,
    OWNER_SIZE,
    SPEC_VERSION,
)
from fluxchain.core.encoding import Bool, Bytes, Int, ListOf, Record, Str, record
from fluxchain.core.params import Tier


class Protocol(IntEnum):
    """What a port carries. The values are bits: BOTH is TCP | UDP."""

    TCP = 1
    UDP = 2
    BOTH = 3  # tcp and udp on the same number (Flux publishes every port so)

    @property
    def label(self) -> str:
        """The user form: "tcp", "udp" or "both"."""
        return self.name.lower()

    @property
    def carries_tcp(self) -> bool:
        return bool(self & Protocol.TCP)

    @property
    def carries_udp(self) -> bool:
        return bool(self & Protocol.UDP)


def port_key(host: int, protocol: Protocol) -> int:
    """One (host port, single protocol) as an integer: what placement counts as taken on a
    node. tcp and udp on one number are two keys, so they never conflict."""
    return host * 2 + (1 if protocol is Protocol.UDP else 0)


MAX_PORT_KEY = port_key(MAX_HOST_PORT, Protocol.UDP)


@record("port")
@dataclass(frozen=True, slots=True)
class Port(Record):
    """One port of a component: `host` on the node forwards to `container` in the
    container, over `protocol`. `domains` are DNS names the gateway routes to it over HTTP
    (so only a port carrying tcp has any), each owned by one live app at a time."""

    host: Annotated[int, Int(0, MAX_HOST_PORT)]
    container: Annotated[int, Int(0, MAX_CONTAINER_PORT)]
    protocol: Protocol = Protocol.TCP
    domains: Annotated[tuple[str, ...], ListOf(Str(MAX_DOMAIN), max_len=MAX_DOMAINS)] = ()

    @property
    def keys(self) -> tuple[int, ...]:
        """The port keys (`port_key`) this port takes on its node: two for BOTH."""
        return tuple(
            port_key(self.host, single)
            for single in (Protocol.TCP, Protocol.UDP)
            if self.protocol & single
        )


class VolumeMode(IntEnum):
    """Where a volume's data lives. LOCAL: on the host only, lost when the instance moves
    (what `data_path` has always been). REPLICATED: one primary host runs the component and
    sends the data to every other host of the app (standbys), which run it only once they
    become primary, after pulling the data (docs/apps.md, "Volumes")."""

    LOCAL = 1
    REPLICATED = 2

    @property
    def label(self) -> str:
        """The user form: "local" or "replicated"."""
        return self.name.lower()


@record("volume")
@dataclass(frozen=True, slots=True)
class Volume(Record):
    """A directory of a component that outlives its process: `mount` inside the container
    (for the process runtime, relative to the working directory)."""

    mount: Annotated[str, Str(MAX_DATA_PATH)]
    mode: VolumeMode = VolumeMode.LOCAL


@record("component")
@dataclass(frozen=True, slots=True)
class Component(Record):
    """One container of an app. Every instance of the app runs every component."""

    name: Annotated[str, Str(MAX_COMPONENT_NAME)]
    description: Annotated[str, Str(MAX_DESCRIPTION)]
    image: Annotated[str, Str(MAX_IMAGE)]
    ports: Annotated[tuple[Port, ...], ListOf(Port, max_len=MAX_PORTS)]
    environment: Annotated[tuple[str, ...], ListOf(Str(MAX_ENV_ENTRY), max_len=MAX_ENV)]
    command: Annotated[tuple[str, ...], ListOf(Str(MAX_COMMAND_ARG), max_len=MAX_COMMAND)]
    data_path: Annotated[str, Str(MAX_DATA_PATH)]  # the persistent volume's mount point
    cpu: Annotated[int, Int(0, MAX_APP_CPU)]  # tenths of a core
    ram_mb: Annotated[int, Int(0, MAX_APP_RAM_MB)]
    disk_gb: Annotated[int, Int(0, MAX_APP_DISK_GB)]
    # volumes besides data_path (which stays a local volume)
    volumes: Annotated[tuple[Volume, ...], ListOf(Volume, max_len=MAX_VOLUMES)] = ()

    @property
    def replicated(self) -> tuple[Volume, ...]:
        """Its replicated volumes: while the app has any, it runs on its primary only."""
        return tuple(v for v in self.volumes if v.mode is VolumeMode.REPLICATED)


@record("geo")
@dataclass(frozen=True, slots=True)
class GeoRule(Record):
    """Allow or deny nodes of one continent, or of one country (`country` non-empty).

    JSON form: "EU" (a continent) or "EU_DE" (a country, qualified by its continent so that
    "NA" — North America — is never confused with Namibia).
    """

    allow: Annotated[bool, Bool()]
    continent: Annotated[str, Str(2)]
    country: Annotated[str, Str(2)]  # "" for the whole continent

    def matches(self, continent: str, country: str) -> bool:
        """Whether a node at (continent, country) falls under this rule."""
        if self.country:
            return country == self.country
        return continent == self.continent

    @property
    def code(self) -> str:
        return f"{self.continent}_{self.country}" if self.country else self.continent


@record("spec", version=SPEC_VERSION)
@dataclass(frozen=True, slots=True)
class AppSpec(Record):
    """What a customer asks the network to run. `name` identifies the app for life.

    The canonical form starts with SPEC_VERSION; a decoder refuses any other version
    (unknown_version)."""

    name: Annotated[str, Str(MAX_APP_NAME)]
    description: Annotated[str, Str(MAX_DESCRIPTION)]
    owner: Annotated[bytes, Bytes(OWNER_SIZE)]  # address; signs updates, receives refunds
    contacts: Annotated[tuple[str, ...], ListOf(Str(MAX_CONTACT), max_len=MAX_CONTACTS)]
    components: Annotated[tuple[Component, ...], ListOf(Component, max_len=MAX_COMPONENTS_HARD)]
    instances: Annotated[int, Int(0, MAX_INSTANCES_HARD)]
    expire: Annotated[int, Int(0, MAX_EXPIRE_HARD)]  # blocks paid for, from the tx's block
    geolocation: Annotated[tuple[GeoRule, ...], ListOf(GeoRule, max_len=MAX_GEO_RULES)] = ()
    min_tier: Tier = Tier.CUMULUS
    # when non-empty, only these nodes may host it
    pinned_nodes: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_PINNED)] = ()

    def check_decoded(self, where: str) -> None:
        """The name is the app's identity (and a DNS label): refused at decode already."""
        check_app_name(self.name, f"{where}.name")

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
    def ports(self) -> tuple[Port, ...]:
        """Every port one instance publishes on its node, in component order."""
        return tuple(p for c in self.components for p in c.ports)

    @property
    def port_keys(self) -> tuple[int, ...]:
        """The (host port, protocol) keys one instance takes on its node, sorted."""
        return tuple(sorted(k for p in self.ports for k in p.keys))

    @property
    def domains(self) -> tuple[str, ...]:
        """Every domain the spec names, sorted (the rules refuse a repeat)."""
        return tuple(sorted(d for p in self.ports for d in p.domains))

    def location_allowed(self, continent: str, country: str) -> bool:
        """Whether the geolocation rules let a node at (continent, country) host the app."""
        return location_allowed(self.geolocation, continent, country)

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
