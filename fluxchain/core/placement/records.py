"""Placement's records: their tables, their canonical form and their bounds, and the
read-only accessors (`get_*`) every other placement module and the API use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Self

from fluxchain.core.appspec import (
    MAX_PINNED,
    MAX_PORT_KEY,
    NODE_ID_SIZE,
    OWNER_SIZE,
    AppSpec,
    GeoRule,
    location_allowed,
)
from fluxchain.core.encoding import U64, as_bytes, as_int, as_list, as_str
from fluxchain.core.params import Tier
from fluxchain.core.state import State

PLACEMENT: Final = b"P"
NODE_LOAD: Final = b"L"
WANTING: Final = b"W"
REFILL: Final = b"F"
TOTALS: Final = b"T"
COUNTRIES: Final = b"C"
OPERATORS: Final = b"O"

MAX_NAME: Final = 63
RANK_KEY_SIZE: Final = 32
MAX_HOSTED: Final = 10_000  # instances on one node; each assignment rewrites its record
MAX_ACCRUALS: Final = 100_000

# Under-placement reasons (compute_shortfall_reason says which applies).
REASON_CAPACITY: Final = "capacity"
REASON_GEO: Final = "geolocation"
REASON_TIER: Final = "tier"
REASON_PINNED: Final = "pinned"
REASON_NONE: Final = "no_eligible_nodes"


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Demand:
    """What one instance of an app needs from a node, and where it may run."""

    cpu: int  # tenths of a core
    ram_mb: int
    disk_gb: int
    # (host port, protocol) keys (appspec.port_key), sorted: tcp and udp on one number are
    # two keys, so they never conflict
    ports: tuple[int, ...]
    min_tier: Tier
    geolocation: tuple[GeoRule, ...]
    pinned: tuple[bytes, ...]

    @classmethod
    def of(cls, spec: AppSpec) -> Self:
        return cls(
            spec.cpu,
            spec.ram_mb,
            spec.disk_gb,
            spec.port_keys,
            spec.min_tier,
            spec.geolocation,
            spec.pinned_nodes,
        )

    def location_allowed(self, continent: str, country: str) -> bool:
        """Whether the app's geolocation rules let a node at (continent, country) host it."""
        return location_allowed(self.geolocation, continent, country)

    def to_fields(self) -> list[Any]:
        return [
            self.cpu,
            self.ram_mb,
            self.disk_gb,
            list(self.ports),
            int(self.min_tier),
            [g.to_fields() for g in self.geolocation],
            list(self.pinned),
        ]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        cpu, ram, disk, ports, tier, geo, pinned = as_list(f, "demand", length=7)
        return cls(
            as_int(cpu, "demand.cpu", hi=U64),
            as_int(ram, "demand.ram_mb", hi=U64),
            as_int(disk, "demand.disk_gb", hi=U64),
            tuple(
                as_int(p, "demand.ports[]", hi=MAX_PORT_KEY) for p in as_list(ports, "demand.ports")
            ),
            Tier(as_int(tier, "demand.min_tier", lo=1, hi=3)),
            tuple(GeoRule.from_fields(g, "demand.geolocation[]") for g in as_list(geo, "geo")),
            tuple(
                as_bytes(n, "demand.pinned[]", size=NODE_ID_SIZE)
                for n in as_list(pinned, "demand.pinned", max_len=MAX_PINNED)
            ),
        )


@dataclass(frozen=True, slots=True)
class Instance:
    """Instance `index` of an app runs on `node_id`; hosting accrues from `since`."""

    index: int
    node_id: bytes
    since: int  # height from which this node's hosting is not yet settled

    def to_fields(self) -> list[Any]:
        return [self.index, self.node_id, self.since]


@dataclass(frozen=True, slots=True)
class Accrual:
    """Blocks of hosting a node did for an app, not yet paid (the instance moved away)."""

    node_id: bytes
    owner: bytes
    blocks: int

    def to_fields(self) -> list[Any]:
        return [self.node_id, self.owner, self.blocks]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where app `name` runs. Instances sorted by index; `reason` is "" when whole."""

    name: str
    wanted: int
    demand: Demand
    instances: tuple[Instance, ...]
    accruals: tuple[Accrual, ...]  # at most one per node, MAX_ACCRUALS nodes
    reason: str
    paid_until: int  # the app's expire_height: hosting after it is not paid

    @property
    def nodes(self) -> tuple[bytes, ...]:
        return tuple(i.node_id for i in self.instances)

    def to_fields(self) -> list[Any]:
        return [
            self.name,
            self.wanted,
            self.demand.to_fields(),
            [i.to_fields() for i in self.instances],
            [a.to_fields() for a in self.accruals],
            self.reason,
            self.paid_until,
        ]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        name, wanted, demand, instances, accruals, reason, paid_until = as_list(
            f, "placement", length=7
        )
        parsed_instances = []
        for item in as_list(instances, "placement.instances", max_len=1_000):
            index, node_id, since = as_list(item, "placement.instance", length=3)
            parsed_instances.append(
                Instance(
                    as_int(index, "instance.index", hi=1_000),
                    as_bytes(node_id, "instance.node_id", size=NODE_ID_SIZE),
                    as_int(since, "instance.since", hi=U64),
                )
            )
        parsed_accruals = []
        for item in as_list(accruals, "placement.accruals", max_len=MAX_ACCRUALS):
            node_id, owner, blocks = as_list(item, "placement.accrual", length=3)
            parsed_accruals.append(
                Accrual(
                    as_bytes(node_id, "accrual.node_id", size=NODE_ID_SIZE),
                    as_bytes(owner, "accrual.owner", size=OWNER_SIZE),
                    as_int(blocks, "accrual.blocks", hi=U64),
                )
            )
        return cls(
            as_str(name, "placement.name", max_len=MAX_NAME),
            as_int(wanted, "placement.wanted", hi=1_000),
            Demand.from_fields(demand),
            tuple(parsed_instances),
            tuple(parsed_accruals),
            as_str(reason, "placement.reason", max_len=32),
            as_int(paid_until, "placement.paid_until", hi=U64),
        )


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """An active node as placement sees it: a snapshot taken when it became CONFIRMED,
    plus what it hosts. Capacity = benchmark minus the params' reserve (0 without one)."""

    node_id: bytes
    owner: bytes
    tier: Tier
    country: str
    continent: str
    cores: int  # benchmark figures (network totals)
    ram_mb: int
    disk_gb: int
    cap_cpu: int  # tenths of a core available to apps
    cap_ram_mb: int
    cap_disk_gb: int
    used_cpu: int
    used_ram_mb: int
    used_disk_gb: int
    hosted: tuple[tuple[str, int], ...]  # (app name, instance index), sorted
    ports: tuple[int, ...]  # port keys taken (appspec.port_key), sorted
    rank_key: bytes  # the node's (core/nodes.py): what ranks it for every app

    def fits(self, demand: Demand) -> bool:
        """Free cpu, RAM, disk and ports for one instance of `demand`, and room in the
        record (MAX_HOSTED: what the decoder accepts)."""
        if (
            len(self.hosted) >= MAX_HOSTED
            or self.used_cpu + demand.cpu > self.cap_cpu
            or self.used_ram_mb + demand.ram_mb > self.cap_ram_mb
            or self.used_disk_gb + demand.disk_gb > self.cap_disk_gb
        ):
            return False
        return not (demand.ports and not self._ports_free(demand.ports))

    def _ports_free(self, ports: tuple[int, ...]) -> bool:
        taken = self.ports
        return not taken or not any(p in taken for p in ports)

    def to_fields(self) -> list[Any]:
        return [
            self.node_id,
            self.owner,
            int(self.tier),
            self.country,
            self.continent,
            self.cores,
            self.ram_mb,
            self.disk_gb,
            self.cap_cpu,
            self.cap_ram_mb,
            self.cap_disk_gb,
            self.used_cpu,
            self.used_ram_mb,
            self.used_disk_gb,
            [[name, index] for name, index in self.hosted],
            list(self.ports),
            self.rank_key,
        ]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        items = as_list(f, "load", length=17)
        hosted = []
        for item in as_list(items[14], "load.hosted", max_len=MAX_HOSTED):
            name, index = as_list(item, "load.hosted[]", length=2)
            hosted.append((as_str(name, "load.hosted.name", max_len=MAX_NAME), as_int(index, "i")))
        return cls(
            as_bytes(items[0], "load.node_id", size=NODE_ID_SIZE),
            as_bytes(items[1], "load.owner", size=OWNER_SIZE),
            Tier(as_int(items[2], "load.tier", lo=1, hi=3)),
            as_str(items[3], "load.country", max_len=2),
            as_str(items[4], "load.continent", max_len=2),
            as_int(items[5], "load.cores", hi=U64),
            as_int(items[6], "load.ram_mb", hi=U64),
            as_int(items[7], "load.disk_gb", hi=U64),
            as_int(items[8], "load.cap_cpu", hi=U64),
            as_int(items[9], "load.cap_ram_mb", hi=U64),
            as_int(items[10], "load.cap_disk_gb", hi=U64),
            as_int(items[11], "load.used_cpu", hi=U64),
            as_int(items[12], "load.used_ram_mb", hi=U64),
            as_int(items[13], "load.used_disk_gb", hi=U64),
            tuple(hosted),
            tuple(
                as_int(p, "load.ports[]", hi=MAX_PORT_KEY) for p in as_list(items[15], "load.ports")
            ),
            as_bytes(items[16], "load.rank_key", size=RANK_KEY_SIZE),
        )


@dataclass(frozen=True, slots=True)
class NetworkTotals:
    """Counters over active (CONFIRMED) nodes, kept as nodes join and leave."""

    nodes: int
    per_tier: tuple[int, int, int]  # cumulus, nimbus, stratus
    cores: int
    ram_mb: int
    disk_gb: int
    countries: int  # distinct countries with an active node
    operators: int  # distinct owners of active nodes

    def to_fields(self) -> list[Any]:
        return [
            self.nodes,
            list(self.per_tier),
            self.cores,
            self.ram_mb,
            self.disk_gb,
            self.countries,
            self.operators,
        ]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        nodes, per_tier, cores, ram, disk, countries, operators = as_list(f, "totals", length=7)
        tiers = as_list(per_tier, "totals.per_tier", length=3)
        return cls(
            as_int(nodes, "totals.nodes", hi=U64),
            (
                as_int(tiers[0], "t", hi=U64),
                as_int(tiers[1], "t", hi=U64),
                as_int(tiers[2], "t", hi=U64),
            ),
            as_int(cores, "totals.cores", hi=U64),
            as_int(ram, "totals.ram_mb", hi=U64),
            as_int(disk, "totals.disk_gb", hi=U64),
            as_int(countries, "totals.countries", hi=U64),
            as_int(operators, "totals.operators", hi=U64),
        )


@dataclass(frozen=True, slots=True)
class Count:
    value: int

    def to_fields(self) -> list[Any]:
        return [self.value]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        (value,) = as_list(f, "count", length=1)
        return cls(as_int(value, "count", hi=U64))


@dataclass(frozen=True, slots=True)
class Wanting:
    """App (named by the key) is under-placed: `ticket` is its live entry in the refill
    queue (older entries of the app are stale), `tried` the capacity version its
    placement was last searched at."""

    ticket: int
    tried: int

    def to_fields(self) -> list[Any]:
        return [self.ticket, self.tried]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        ticket, tried = as_list(f, "wanting", length=2)
        return cls(as_int(ticket, "wanting.ticket", hi=U64), as_int(tried, "wanting.tried", hi=U64))


@dataclass(frozen=True, slots=True)
class Refill:
    """`version` goes up whenever capacity may have appeared (a node joins, an instance
    leaves a node); `underplaced` counts the `W` records."""

    version: int
    underplaced: int

    def to_fields(self) -> list[Any]:
        return [self.version, self.underplaced]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        version, underplaced = as_list(f, "refill", length=2)
        return cls(
            as_int(version, "refill.version", hi=U64),
            as_int(underplaced, "refill.underplaced", hi=U64),
        )


EMPTY_TOTALS: Final = NetworkTotals(0, (0, 0, 0), 0, 0, 0, 0, 0)

TABLES: Final[dict[bytes, Callable[[Any], Any]]] = {
    PLACEMENT: Placement.from_fields,
    NODE_LOAD: NodeLoad.from_fields,
    WANTING: Wanting.from_fields,
    REFILL: Refill.from_fields,
    TOTALS: NetworkTotals.from_fields,
    COUNTRIES: Count.from_fields,
    OPERATORS: Count.from_fields,
}


def placement_key(name: str) -> bytes:
    return PLACEMENT + name.encode()


def load_key(node_id: bytes) -> bytes:
    return NODE_LOAD + node_id


def wanting_key(name: str) -> bytes:
    return WANTING + name.encode()


EMPTY_REFILL: Final = Refill(0, 0)


def get_refill(state: State) -> Refill:
    refill: Refill | None = state.get(REFILL)
    return EMPTY_REFILL if refill is None else refill


# -- read-only accessors ----------------------------------------------------------------------


def get_placement(state: State, name: str) -> Placement | None:
    placement: Placement | None = state.get(placement_key(name))
    return placement


def get_load(state: State, node_id: bytes) -> NodeLoad | None:
    load: NodeLoad | None = state.get(load_key(node_id))
    return load


def get_apps_on_node(state: State, node_id: bytes) -> tuple[tuple[str, int], ...]:
    """What node X runs: (app name, instance index) pairs, O(result)."""
    load = get_load(state, node_id)
    return () if load is None else load.hosted


def get_app_nodes(state: State, name: str) -> tuple[tuple[int, bytes], ...]:
    """Where app Y runs: (instance index, node id) pairs, O(result)."""
    placement = get_placement(state, name)
    return () if placement is None else tuple((i.index, i.node_id) for i in placement.instances)


def get_underplaced(state: State) -> list[str]:
    """Names of apps running fewer instances than they asked for, sorted (O(result):
    for the API and tests; no rule lists them all)."""
    return [key[len(WANTING) :].decode() for key in state.keys(WANTING)]


def count_underplaced(state: State) -> int:
    """How many apps are under-placed, O(1)."""
    return get_refill(state).underplaced


def get_totals(state: State) -> NetworkTotals:
    totals: NetworkTotals | None = state.get(TOTALS)
    return EMPTY_TOTALS if totals is None else totals
