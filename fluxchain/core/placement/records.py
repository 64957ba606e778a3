"""Placement's records: their tables, their canonical form and their bounds, and the
read-only accessors (`get_*`) every other placement module and the API use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Self

from fluxchain.core.appspec import (
    MAX_PINNED,
    MAX_PORT_KEY,
    NODE_ID_SIZE,
    OWNER_SIZE,
    AppSpec,
    GeoRule,
    Protocol,
    location_allowed,
    port_key,
)
from fluxchain.core.encoding import (
    MAX_ARRAY,
    U64,
    Bytes,
    Int,
    ListOf,
    Record,
    Str,
    Tuple,
    Uint64,
    record,
)
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
MAX_INSTANCES: Final = 1_000  # the decoder's bound on an app's instances (params cap lower)

NodeId = Annotated[bytes, Bytes(NODE_ID_SIZE)]
Owner = Annotated[bytes, Bytes(OWNER_SIZE)]
# (host port, protocol) keys (appspec.port_key): tcp and udp on one number never conflict
Ports = Annotated[tuple[int, ...], ListOf(Int(hi=MAX_PORT_KEY), max_len=MAX_ARRAY)]
Hosted = Tuple(name=Str(MAX_NAME), index=Int())  # (app name, instance index)
PerTier = Tuple(cumulus=Int(hi=U64), nimbus=Int(hi=U64), stratus=Int(hi=U64))

# Under-placement reasons (compute_shortfall_reason says which applies).
REASON_CAPACITY: Final = "capacity"
REASON_GEO: Final = "geolocation"
REASON_TIER: Final = "tier"
REASON_PINNED: Final = "pinned"
REASON_NONE: Final = "no_eligible_nodes"


# -- records ----------------------------------------------------------------------------------


@record("demand")
@dataclass(frozen=True, slots=True)
class Demand(Record):
    """What one instance of an app needs from a node, and where it may run."""

    cpu: Uint64  # tenths of a core
    ram_mb: Uint64
    disk_gb: Uint64
    # (host port, protocol) keys (appspec.port_key), sorted: tcp and udp on one number are
    # two keys, so they never conflict
    ports: Ports
    min_tier: Tier
    geolocation: Annotated[tuple[GeoRule, ...], ListOf(GeoRule, max_len=MAX_ARRAY)]
    pinned: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_PINNED)]

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


@record("instance")
@dataclass(frozen=True, slots=True)
class Instance(Record):
    """Instance `index` of an app runs on `node_id`; hosting accrues from `since`."""

    index: Annotated[int, Int(hi=MAX_INSTANCES)]
    node_id: NodeId
    since: Uint64  # height from which this node's hosting is not yet settled


@record("accrual")
@dataclass(frozen=True, slots=True)
class Accrual(Record):
    """Blocks of hosting a node did for an app, not yet paid (the instance moved away)."""

    node_id: NodeId
    owner: Owner
    blocks: Uint64


@record("placement")
@dataclass(frozen=True, slots=True)
class Placement(Record):
    """Where app `name` runs. Instances sorted by index; `reason` is "" when whole."""

    name: Annotated[str, Str(MAX_NAME)]
    wanted: Annotated[int, Int(hi=MAX_INSTANCES)]
    demand: Demand
    instances: Annotated[tuple[Instance, ...], ListOf(Instance, max_len=MAX_INSTANCES)]
    # At most one per node, MAX_ACCRUALS nodes.
    accruals: Annotated[tuple[Accrual, ...], ListOf(Accrual, max_len=MAX_ACCRUALS)]
    reason: Annotated[str, Str(32)]
    paid_until: Uint64  # the app's expire_height: hosting after it is not paid

    @property
    def nodes(self) -> tuple[bytes, ...]:
        return tuple(i.node_id for i in self.instances)


@record("load")
@dataclass(frozen=True, slots=True)
class NodeLoad(Record):
    """An active node as placement sees it: a snapshot taken when it became CONFIRMED,
    plus what it hosts. Capacity = its benchmark capped by its declared hardware, minus the
    params' reserve (0 without one)."""

    node_id: NodeId
    owner: Owner
    tier: Tier
    country: Annotated[str, Str(2)]
    continent: Annotated[str, Str(2)]
    cores: Uint64  # benchmark figures capped by declared hardware (network totals)
    ram_mb: Uint64
    disk_gb: Uint64
    cap_cpu: Uint64  # tenths of a core available to apps
    cap_ram_mb: Uint64
    cap_disk_gb: Uint64
    used_cpu: Uint64
    used_ram_mb: Uint64
    used_disk_gb: Uint64
    # (app name, instance index), sorted
    hosted: Annotated[tuple[tuple[str, int], ...], ListOf(Hosted, max_len=MAX_HOSTED)]
    ports: Ports  # port keys taken (appspec.port_key), sorted
    # The node's (core/nodes.py): what ranks it for every app.
    rank_key: Annotated[bytes, Bytes(RANK_KEY_SIZE)]
    # The port of its registered endpoint, where its API answers (0: none): no app that
    # publishes it over tcp is placed here, or the app could hold the port on the node's
    # next restart and answer for the node's API (kept by NODE_UPDATE).
    api_port: Annotated[int, Int(0, 65535)] = 0

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
        if self.api_port and port_key(self.api_port, Protocol.TCP) in demand.ports:
            return False
        return not (demand.ports and not self._ports_free(demand.ports))

    def _ports_free(self, ports: tuple[int, ...]) -> bool:
        taken = self.ports
        return not taken or not any(p in taken for p in ports)


@record("totals")
@dataclass(frozen=True, slots=True)
class NetworkTotals(Record):
    """Counters over active (CONFIRMED) nodes, kept as nodes join and leave."""

    nodes: Uint64
    per_tier: Annotated[tuple[int, int, int], PerTier]  # cumulus, nimbus, stratus
    cores: Uint64
    ram_mb: Uint64
    disk_gb: Uint64
    countries: Uint64  # distinct countries with an active node
    operators: Uint64  # distinct owners of active nodes


@record("count")
@dataclass(frozen=True, slots=True)
class Count(Record):
    value: Uint64


@record("wanting")
@dataclass(frozen=True, slots=True)
class Wanting(Record):
    """App (named by the key) is under-placed: `ticket` is its live entry in the refill
    queue (older entries of the app are stale), `tried` the capacity version its
    placement was last searched at."""

    ticket: Uint64
    tried: Uint64


@record("refill")
@dataclass(frozen=True, slots=True)
class Refill(Record):
    """`version` goes up whenever capacity may have appeared (a node joins, an instance
    leaves a node); `underplaced` counts the `W` records."""

    version: Uint64
    underplaced: Uint64


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
