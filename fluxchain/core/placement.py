"""Placement: which confirmed node runs which instance of which app.

Rules this module keeps (docs/apps.md explains them with figures):

1. **Eligible** for an app: the node is active (CONFIRMED, so it has a load record), its
   tier is at least the app's `min_tier`, its location passes the geolocation rules, it
   is one of the pinned nodes when the app pins any, it has the free cpu, RAM and disk of
   one instance, none of the app's host ports is taken on it, and it does not already run
   an instance of the app (one instance per node per app).
2. **Ranking** (rendezvous hashing, two levels): nodes fall into `GROUPS` groups by the
   first byte of their rank key. For app `a`, a node with rank key `n` in group `g` ranks
   by the pair `(group_score(a, g), sha256(TAG_NODE ‖ a ‖ n))`, highest first, where the 64 group
   scores are 4-byte slices of SHA-256(TAG_GROUP ‖ a ‖ k) for k = 0..7 (plus g for ties). Missing
   instances go to the best-ranked eligible nodes. The pair order is a fixed function of
   (app, node), so every honest node computes the same placement, and the best nodes of
   an app can be found by visiting groups in rank order instead of hashing all nodes.
   The rank key, not the node id, because a node id is the hash of its register tx and
   can be ground to outrank every node for a chosen app; a rank key hashes the id with a
   mix of proposer reveals made after the id was fixed (core/nodes.py `compute_rank_key`).
   A node without one yet has no load record: it is not placed.
3. **Sticky and incremental**: an instance stays on its node while the node is active.
   When a node leaves CONFIRMED, exactly its instances are moved, in the same block
   (auto-failover). When capacity appears (a node joins; an app shrinks, moves, is
   cancelled or expires), the capacity version goes up, and at the end of the block the
   under-placed apps not yet retried at this version are retried, at most
   `params.app_refills_per_block` of them, in the round-robin order of the refill queue
   (the rest in the next blocks). Nothing recomputes the whole placement, and nothing
   scans every under-placed app.
4. **Under-placement is visible**: an app with fewer instances than it asked for has its
   own `W` record, its placement has a reason (`capacity`, `geolocation`, `tier`,
   `pinned`, `no_eligible_nodes`) and an APP_UNDERPLACED event says so; APP_PLACED when it
   is whole.
5. **Bounded records**: a node hosts at most `MAX_HOSTED` instances, and an app owes at
   most `MAX_ACCRUALS` nodes between two settlements (a stretch is merged into the node's
   earlier one): a node beyond either bound is not eligible, so no rule writes a record
   that the decoder would refuse on restart.
6. **Hosting is paid until `paid_until`** (the app's expiry): an app whose expiry is
   carried over to a later block (apps.py bounds that work per block) accrues nothing
   beyond it and gets no new instances.

Tables (one byte prefix):

    P  placement   app name            -> Placement (where app Y runs, with accruals)
    L  node load   node_id(20)         -> NodeLoad (what node X runs; capacity; exists
                                          exactly while the node is CONFIRMED and has
                                          its rank key)
    W  wanting     app name            -> Wanting: the app is under-placed; its live entry
                                          in the refill queue and the capacity version it
                                          was last tried at
    F  refill      (empty)             -> Refill: the capacity version and the number of
                                          under-placed apps
    T  totals      (empty)             -> NetworkTotals of active nodes
    C  countries   country code        -> Count of active nodes there
    O  operators   owner address(20)   -> Count of active nodes of that owner

The reason is a function of the state where the placement last changed: the first of
pins, tier, geolocation that leaves fewer active nodes than instances, else `capacity`
(`compute_shortfall_reason`); never of how the search went.

One index is derived, not stored: `NodeIndex`, the active nodes by group and by place,
which the search walks instead of every node. It is owned by the State (a watcher of the
L table, see state.py), equals `build_node_index(state)` at every instant (the
differential tests check it after every block), and holds exactly the nodes with a load
record, so a node that restarted, synced from genesis or ran for a month walks the same
sets. Which sets are walked (a location pool or all groups) changes only the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from hashlib import sha256
from typing import Any, Final, Self, TypeVar

from fluxchain.core import deque
from fluxchain.core.appspec import MAX_PINNED, NODE_ID_SIZE, OWNER_SIZE, AppSpec, GeoRule
from fluxchain.core.context import BlockContext
from fluxchain.core.encoding import U64, as_bytes, as_int, as_list, as_str
from fluxchain.core.events import EventKind
from fluxchain.core.params import Params, Tier
from fluxchain.core.records import NODE, Node, NodeStatus, node_key
from fluxchain.core.state import State

PLACEMENT: Final = b"P"
NODE_LOAD: Final = b"L"
WANTING: Final = b"W"
REFILL: Final = b"F"
TOTALS: Final = b"T"
COUNTRIES: Final = b"C"
OPERATORS: Final = b"O"

GROUPS: Final = 256  # the first byte of a rank key; ~40 nodes a group at FluxCloud scale
TAG_GROUP: Final = b"fluxchain/placement/group/1"
TAG_NODE: Final = b"fluxchain/placement/node/1"
REFILL_QUEUE: Final = b"placement/refill"  # deque of under-placed app names, round-robin
POOL_LIMIT: Final = 2_048  # larger location pools are cheaper to filter during the walk
# One search examines at most SEARCH_GROUPS groups' worth of nodes (never fewer than
# SEARCH_MIN): an app no node can hold costs a bounded search, not one per active node,
# for its flat app charge (docs/economics.md). Past the bound it is under-placed, as if
# nothing fitted, and the refill retries it when capacity appears.
SEARCH_GROUPS: Final = 8
SEARCH_MIN: Final = 64
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
    ports: tuple[int, ...]  # host ports, sorted
    min_tier: Tier
    geolocation: tuple[GeoRule, ...]
    pinned: tuple[bytes, ...]

    @classmethod
    def of(cls, spec: AppSpec) -> Self:
        return cls(
            spec.cpu,
            spec.ram_mb,
            spec.disk_gb,
            spec.host_ports,
            spec.min_tier,
            spec.geolocation,
            spec.pinned_nodes,
        )

    def location_allowed(self, continent: str, country: str) -> bool:
        allowed = not any(rule.allow for rule in self.geolocation)
        for rule in self.geolocation:
            if rule.matches(continent, country):
                if not rule.allow:
                    return False
                allowed = True
        return allowed

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
            tuple(as_int(p, "demand.ports[]", hi=65_535) for p in as_list(ports, "demand.ports")),
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
    ports: tuple[int, ...]  # host ports taken, sorted
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
            tuple(as_int(p, "load.ports[]", hi=65_535) for p in as_list(items[15], "load.ports")),
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


def _capacity_appeared(state: State) -> None:
    """Capacity may have appeared: every under-placed app is due for another search."""
    refill = get_refill(state)
    state.put(REFILL, Refill(refill.version + 1, refill.underplaced))


def _enqueue(state: State, name: str) -> None:
    """Put app `name` at the back of the refill queue, tried at the current version."""
    refill = get_refill(state)
    ticket = deque.push(state, REFILL_QUEUE, name.encode())
    state.put(wanting_key(name), Wanting(ticket, refill.version))


def _set_wanting(state: State, name: str, wanting: bool) -> None:
    """App `name` became under-placed (`wanting`) or whole: its own `W` record and the count."""
    refill = get_refill(state)
    if wanting:
        _enqueue(state, name)
        state.put(REFILL, Refill(refill.version, refill.underplaced + 1))
    else:
        state.delete(wanting_key(name))
        state.put(REFILL, Refill(refill.version, refill.underplaced - 1))


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


def compute_group(rank_key: bytes) -> int:
    return rank_key[0]


def compute_group_scores(name: str) -> list[bytes]:
    """The first-level rank of each group for app `name`: 4 bytes of SHA-256 in counter
    mode per group (`GROUPS * 4 // 32` = 32 hashes), then the group number for ties."""
    prefix = TAG_GROUP + name.encode()
    stream = b"".join(sha256(prefix + bytes((block,))).digest() for block in range(GROUPS // 8))
    return [stream[4 * g : 4 * g + 4] + bytes((g,)) for g in range(GROUPS)]


def _bucket(node_ids: Iterable[bytes], rank_of: Mapping[bytes, bytes]) -> dict[int, list[bytes]]:
    """Node ids by the group of their rank key; nodes without a load record (so without
    a rank key in the index) are not placeable and are left out."""
    buckets: dict[int, list[bytes]] = {}
    for node_id in node_ids:
        rank_key = rank_of.get(node_id)
        if rank_key is not None:
            buckets.setdefault(rank_key[0], []).append(node_id)
    return buckets


def compute_node_score(name: str, rank_key: bytes) -> bytes:
    return sha256(TAG_NODE + name.encode() + rank_key).digest()


# -- the node index (derived from the load records, owned by the State) ----------------------


class NodeIndex:
    """The active nodes (those with a load record) by group and by place, and their rank keys.

    Kept by the State as a watcher of the NODE_LOAD table (state.py): it equals
    `build_node_index(state)` at every instant, pending writes, reverts and discards
    included, and a restarted node builds the same one from the same records. A place is
    a continent ("EU") or a country ("_DE"), as geolocation rules name them.
    """

    __slots__ = ("by_group", "by_place", "rank_of")

    def __init__(self) -> None:
        self.by_group: dict[int, set[bytes]] = {}
        self.by_place: dict[str, set[bytes]] = {}
        self.rank_of: dict[bytes, bytes] = {}  # node id -> rank key

    def build(self, items: Iterable[tuple[bytes, Any]]) -> None:
        self.by_group = {}
        self.by_place = {}
        self.rank_of = {}
        for _, load in items:
            self._add(load)

    def changed(self, key: bytes, before: Any, after: Any) -> None:
        if (
            before is not None
            and after is not None
            and (before.continent, before.country) == (after.continent, after.country)
        ):
            return  # the usual change: what the node hosts, not where it is
        if before is not None:
            self._remove(before)
        if after is not None:
            self._add(after)

    def contents(
        self,
    ) -> tuple[dict[int, frozenset[bytes]], dict[str, frozenset[bytes]], dict[bytes, bytes]]:
        """A comparable copy (tests check the index against a fresh build)."""
        return (
            {g: frozenset(ids) for g, ids in self.by_group.items()},
            {p: frozenset(ids) for p, ids in self.by_place.items()},
            dict(self.rank_of),
        )

    def pool(self, places: Iterable[str]) -> set[bytes]:
        """Every active node in any of `places`."""
        out: set[bytes] = set()
        for place in places:
            out |= self.by_place.get(place, set())
        return out

    def _add(self, load: NodeLoad) -> None:
        self.by_group.setdefault(load.rank_key[0], set()).add(load.node_id)
        self.rank_of[load.node_id] = load.rank_key
        for place in _places(load.continent, load.country):
            self.by_place.setdefault(place, set()).add(load.node_id)

    def _remove(self, load: NodeLoad) -> None:
        _discard(self.by_group, load.rank_key[0], load.node_id)
        self.rank_of.pop(load.node_id, None)
        for place in _places(load.continent, load.country):
            _discard(self.by_place, place, load.node_id)


def _places(continent: str, country: str) -> tuple[str, str]:
    return continent, f"_{country}"


def _place_of(rule: GeoRule) -> str:
    """The index place a geolocation rule names (see GeoRule.matches)."""
    return f"_{rule.country}" if rule.country else rule.continent


_K = TypeVar("_K", int, str)


def _discard(table: dict[_K, set[bytes]], key: _K, node_id: bytes) -> None:
    members = table.get(key)
    if members is not None:
        members.discard(node_id)
        if not members:
            del table[key]  # so that the index equals a fresh build, empty sets and all


def build_node_index(state: State) -> NodeIndex:
    """The node index of `state`, built from its load records: the one definition."""
    index = NodeIndex()
    index.build(state.items(NODE_LOAD))
    return index


def node_index(state: State) -> NodeIndex:
    """The index `state` keeps up to date; attached (built) on first use."""
    index = state.watcher(NODE_LOAD)
    if index is None:
        index = NodeIndex()
        state.watch(NODE_LOAD, index)
    assert isinstance(index, NodeIndex)
    return index


# -- ranking and eligibility -----------------------------------------------------------------


class _Search:
    """One search for the best eligible nodes of one app."""

    __slots__ = ("demand", "exclude", "name", "owed", "pinned", "state")

    def __init__(
        self,
        state: State,
        name: str,
        demand: Demand,
        exclude: set[bytes],
        owed: frozenset[bytes] | None = None,
    ) -> None:
        self.state = state
        self.name = name
        self.demand = demand
        self.exclude = exclude
        self.pinned = frozenset(demand.pinned)
        # None: the app may take any node; else only these (it owes MAX_ACCRUALS nodes)
        self.owed = owed

    @classmethod
    def of(cls, state: State, placement: Placement) -> _Search:
        """The search for `placement`'s missing instances."""
        owed = None
        if len(placement.accruals) + len(placement.instances) >= MAX_ACCRUALS:
            # A node new to the app would need an accrual record beyond the bound when
            # its instance moves on: only the nodes already owed may take one, until the
            # next settlement pays them and clears the list.
            owed = frozenset(a.node_id for a in placement.accruals)
        return cls(state, placement.name, placement.demand, set(placement.nodes), owed)

    def eligible(self, node_id: bytes) -> NodeLoad | None:
        """The node's load if one more instance of this app may go there."""
        if node_id in self.exclude:
            return None
        load: NodeLoad | None = self.state.get(NODE_LOAD + node_id)
        if load is None:
            return None
        demand = self.demand
        if (
            (self.pinned and node_id not in self.pinned)
            or load.tier < demand.min_tier
            or (demand.geolocation and not demand.location_allowed(load.continent, load.country))
            or not load.fits(demand)
            or (self.owed is not None and node_id not in self.owed)
        ):
            return None
        return load

    def best(self, count: int) -> list[bytes]:
        """Up to `count` eligible nodes, best-ranked first.

        Nodes are visited best-ranked first (groups by score, nodes by score within a
        group) and at most `search_limit` of them are examined; eligibility is checked
        on each one's load record, the index holds exactly the active nodes, and the
        ranking is a fixed function of (app, node), so the result is the state's alone.
        """
        if count <= 0:
            return []
        demand = self.demand
        buckets: Mapping[int, Iterable[bytes]]
        index = node_index(self.state)
        if demand.pinned:
            buckets = _bucket(demand.pinned, index.rank_of)
        else:
            buckets = index.by_group
            allowed = [_place_of(rule) for rule in demand.geolocation if rule.allow]
            if allowed:
                pool = index.pool(allowed)
                if len(pool) <= POOL_LIMIT:
                    buckets = _bucket(pool, index.rank_of)
        return self._walk(buckets, index.rank_of, count)

    def _walk(
        self, buckets: Mapping[int, Iterable[bytes]], rank_of: Mapping[bytes, bytes], count: int
    ) -> list[bytes]:
        """Visit groups best first; in each, nodes by score, until `count` are chosen."""
        chosen: list[bytes] = []
        if not buckets:
            return chosen
        scores = compute_group_scores(self.name)
        name = self.name.encode()
        budget = [search_limit(len(rank_of))]

        def visit(group: int) -> bool:
            ranked = sorted(
                ((sha256(TAG_NODE + name + rank_of[n]).digest(), n) for n in buckets[group]),
                reverse=True,
            )
            for _, node_id in ranked:
                if len(chosen) >= count or not budget[0]:
                    break
                budget[0] -= 1
                if self.eligible(node_id) is not None:
                    chosen.append(node_id)
            return len(chosen) >= count or not budget[0]

        best_group = max(buckets, key=scores.__getitem__)
        if visit(best_group):  # the usual case: no need to order the other groups
            return chosen
        for group in sorted(buckets, key=scores.__getitem__, reverse=True)[1:]:
            if visit(group):
                break
        return chosen


def search_limit(active: int) -> int:
    """How many nodes one placement search may examine when `active` nodes are indexed."""
    return max(SEARCH_MIN, SEARCH_GROUPS * (active // GROUPS + 1))


def compute_shortfall_reason(state: State, demand: Demand, wanted: int) -> str:
    """Why an app of `wanted` instances with `demand` is short, from the state alone.

    The requirements are applied to the active nodes one after another, in a fixed order:
    pins, then tier, then geolocation. The reason is the first one after which fewer
    nodes remain than the app has instances (`no_eligible_nodes` when there are too few
    active nodes to begin with); when enough nodes pass all three, what is missing is free
    capacity (cpu, RAM, disk or host ports) on them: `capacity`. Nodes already hosting the
    app count like any other: they pass the requirements. docs/apps.md has examples.
    """
    totals = get_totals(state)
    index = node_index(state)
    if demand.pinned:
        loads = [get_load(state, node_id) for node_id in sorted(set(demand.pinned))]
        active = [load for load in loads if load is not None]
        if len(active) < wanted:
            return REASON_PINNED
        tiered = [load for load in active if load.tier >= demand.min_tier]
        if len(tiered) < wanted:
            return REASON_TIER
        placed = sum(1 for load in tiered if demand.location_allowed(load.continent, load.country))
        return REASON_GEO if placed < wanted else REASON_CAPACITY
    if totals.nodes < wanted:
        return REASON_NONE
    tiered_count = sum(totals.per_tier[int(demand.min_tier) - 1 :])
    if tiered_count < wanted:
        return REASON_TIER
    allowed = [_place_of(rule) for rule in demand.geolocation if rule.allow]
    denied = [_place_of(rule) for rule in demand.geolocation if not rule.allow]
    if allowed:
        # only nodes in an allowed place can pass: count those that do
        located = sum(
            1 for node_id in index.pool(allowed) if _passes(state, demand, node_id, allow=True)
        )
    else:
        # every node passes but those a deny rule refuses: subtract them
        located = tiered_count - sum(
            1 for node_id in index.pool(denied) if _passes(state, demand, node_id, allow=False)
        )
    return REASON_GEO if located < wanted else REASON_CAPACITY


def _passes(state: State, demand: Demand, node_id: bytes, *, allow: bool) -> bool:
    """The active node meets the tier and its location's verdict is `allow`."""
    load = get_load(state, node_id)
    assert load is not None, "the node index holds active nodes only"
    return (
        load.tier >= demand.min_tier
        and demand.location_allowed(load.continent, load.country) is allow
    )


# -- writing assignments ----------------------------------------------------------------------


def _assign(ctx: BlockContext, placement: Placement, index: int, load: NodeLoad) -> Placement:
    ctx.state.put(load_key(load.node_id), _take(load, placement.name, index, placement.demand))
    ctx.emit(EventKind.ASSIGNED, placement.name, load.node_id, index)
    instances = tuple(
        sorted((*placement.instances, Instance(index, load.node_id, ctx.height)), key=_by_index)
    )
    return replace(placement, instances=instances)


def _accrue(
    placement: Placement, node_id: bytes, owner: bytes, since: int, height: int
) -> Placement:
    """`placement` owing `node_id` its hosting from `since` to `height` (never beyond
    `paid_until`), merged into that node's earlier stretch: one accrual per node, so the
    settlement pays the same and the list is bounded by the nodes (see `_Search.eligible`)."""
    blocks = min(height, placement.paid_until) - since
    if blocks <= 0:
        return placement
    accruals = list(placement.accruals)
    for position, accrual in enumerate(accruals):
        if accrual.node_id == node_id:
            accruals[position] = Accrual(node_id, owner, accrual.blocks + blocks)
            break
    else:
        accruals.append(Accrual(node_id, owner, blocks))
    return replace(placement, accruals=tuple(accruals))


def _unassign(
    ctx: BlockContext, placement: Placement, instance: Instance, reason: str, *, free: bool
) -> Placement:
    """Take `instance` off its node; its unpaid hosting becomes an accrual.

    `free` is False when the node itself is leaving (its load record is being dropped).
    """
    load = get_load(ctx.state, instance.node_id)
    owner = b"\x00" * OWNER_SIZE if load is None else load.owner
    placement = _accrue(placement, instance.node_id, owner, instance.since, ctx.height)
    if free and load is not None:
        ctx.state.put(
            load_key(load.node_id),
            _release(load, placement.name, instance.index, placement.demand),
        )
        _capacity_appeared(ctx.state)
    ctx.emit(EventKind.UNASSIGNED, placement.name, instance.node_id, instance.index, reason)
    instances = tuple(i for i in placement.instances if i.index != instance.index)
    return replace(placement, instances=instances)


def _by_index(instance: Instance) -> int:
    return instance.index


def _fill(ctx: BlockContext, placement: Placement) -> Placement:
    """Give `placement` its missing instances on the best eligible nodes; record the outcome.
    An app past its paid time (its expiry carried over to a later block) gets none."""
    missing = placement.wanted - len(placement.instances)
    if missing > 0 and placement.paid_until > ctx.height:
        search = _Search.of(ctx.state, placement)
        used = {i.index for i in placement.instances}
        free_indexes = [i for i in range(placement.wanted) if i not in used]
        for node_id in search.best(missing):
            load = get_load(ctx.state, node_id)
            assert load is not None
            placement = _assign(ctx, placement, free_indexes.pop(0), load)
    return _record(ctx, placement, _reason(ctx.state, placement))


def _reason(state: State, placement: Placement) -> str:
    """The empty string when the app is whole, else why it is short (`compute_shortfall_reason`)."""
    if len(placement.instances) >= placement.wanted:
        return ""
    return compute_shortfall_reason(state, placement.demand, placement.wanted)


def _record(ctx: BlockContext, placement: Placement, reason: str) -> Placement:
    """Store `placement` with its under-placement reason, emitting a change of status."""
    before = get_placement(ctx.state, placement.name)
    was_placed = -1 if before is None else len(before.instances)
    was_reason = None if before is None else before.reason
    placement = replace(placement, reason=reason)
    ctx.state.put(placement_key(placement.name), placement)
    placed = len(placement.instances)
    if reason:
        if before is None or not before.reason:
            _set_wanting(ctx.state, placement.name, True)
        if (placed, reason) != (was_placed, was_reason):
            ctx.emit(EventKind.APP_UNDERPLACED, placement.name, placed, placement.wanted, reason)
    else:
        if before is not None and before.reason:
            _set_wanting(ctx.state, placement.name, False)
        if before is None or before.reason or placed != was_placed:
            ctx.emit(EventKind.APP_PLACED, placement.name, placed)
    return placement


# -- what apps.py calls -----------------------------------------------------------------------


def place_new_app(ctx: BlockContext, name: str, spec: AppSpec, paid_until: int) -> Placement:
    """Place a newly registered app, paid for hosting until `paid_until`."""
    placement = Placement(name, spec.instances, Demand.of(spec), (), (), "", paid_until)
    return _fill(ctx, placement)


def set_paid_until(state: State, name: str, paid_until: int) -> None:
    """App `name` was extended: its hosting is paid until `paid_until` now."""
    placement = get_placement(state, name)
    assert placement is not None, name
    state.put(placement_key(name), replace(placement, paid_until=paid_until))


def _still_fits(released: NodeLoad, instance: Instance, new: Demand) -> bool:
    """Whether `instance` may stay on its node (`released`: that node's load without it)."""
    return (
        (not new.pinned or instance.node_id in new.pinned)
        and released.tier >= new.min_tier
        and new.location_allowed(released.continent, released.country)
        and released.fits(new)
    )


def count_moved_by_update(state: State, name: str, spec: AppSpec) -> int:
    """How many of app `name`'s instances `replace_demand(.., spec)` would move off their
    node: the re-placement work an APP_UPDATE is charged for, computed before it mutates
    anything (pure: reads the state only). Instances dropped by scaling down are freed,
    not moved, and are not counted."""
    placement = get_placement(state, name)
    if placement is None:
        return 0
    old, new = placement.demand, Demand.of(spec)
    moved = 0
    for instance in placement.instances:
        if instance.index >= spec.instances:
            continue
        load = get_load(state, instance.node_id)
        assert load is not None
        if not _still_fits(_release(load, name, instance.index, old), instance, new):
            moved += 1
    return moved


def replace_demand(ctx: BlockContext, name: str, spec: AppSpec, paid_until: int) -> Placement:
    """An updated spec: keep every instance that still fits where it is, move the rest.

    Instances beyond the new count go first (highest indexes), then instances whose node
    no longer admits the app (tier, location, pins, capacity of the new size, ports).
    """
    placement = get_placement(ctx.state, name)
    assert placement is not None, name
    old = placement.demand
    new = Demand.of(spec)
    for instance in sorted(placement.instances, key=_by_index, reverse=True):
        if instance.index >= spec.instances:
            placement = _unassign(ctx, placement, instance, "scaled_down", free=True)
    # release everything, then take back what still fits, in instance order
    kept: list[Instance] = []
    for instance in placement.instances:
        load = get_load(ctx.state, instance.node_id)
        assert load is not None
        released = _release(load, placement.name, instance.index, old)
        if _still_fits(released, instance, new):
            ctx.state.put(load_key(load.node_id), _take(released, name, instance.index, new))
            kept.append(instance)
        else:
            ctx.state.put(load_key(load.node_id), released)
            _capacity_appeared(ctx.state)
            placement = _accrue(placement, instance.node_id, load.owner, instance.since, ctx.height)
            ctx.emit(EventKind.UNASSIGNED, name, instance.node_id, instance.index, "app_updated")
    placement = replace(
        placement,
        wanted=spec.instances,
        demand=new,
        instances=tuple(kept),
        paid_until=paid_until,
    )
    return _fill(ctx, placement)


def remove_app(ctx: BlockContext, name: str, reason: str) -> Placement:
    """Take every instance of app `name` off its node and forget its placement.

    Returns the last record (its accruals are what the caller still owes the nodes).
    """
    placement = get_placement(ctx.state, name)
    assert placement is not None, name
    for instance in placement.instances:
        placement = _unassign(ctx, placement, instance, reason, free=True)
    ctx.state.delete(placement_key(name))
    if placement.reason:
        _set_wanting(ctx.state, name, False)
    return placement


def get_accruals(state: State, name: str, height: int) -> list[Accrual]:
    """Unpaid hosting of app `name` before `height`: stretches of instances that moved
    away, then the current instances in index order."""
    placement = get_placement(state, name)
    if placement is None:
        return []
    owed = list(placement.accruals)
    for instance in placement.instances:
        if height > instance.since:
            load = get_load(state, instance.node_id)
            assert load is not None, "an instance's node is always active"
            owed.append(Accrual(instance.node_id, load.owner, height - instance.since))
    return owed


def mark_settled(state: State, name: str, height: int) -> None:
    """Everything `get_accruals(state, name, height)` returned has been paid."""
    placement = get_placement(state, name)
    if placement is None:
        return
    settled = tuple(replace(i, since=max(i.since, height)) for i in placement.instances)
    state.put(placement_key(name), replace(placement, instances=settled, accruals=()))


def _release(load: NodeLoad, name: str, index: int, demand: Demand) -> NodeLoad:
    """`load` without instance `index` of app `name`."""
    taken = list(load.ports)
    for port in demand.ports:
        taken.remove(port)
    return _with_usage(
        load,
        -demand.cpu,
        -demand.ram_mb,
        -demand.disk_gb,
        tuple(h for h in load.hosted if h != (name, index)),
        tuple(taken),
    )


def _take(load: NodeLoad, name: str, index: int, demand: Demand) -> NodeLoad:
    """`load` with instance `index` of app `name` added."""
    return _with_usage(
        load,
        demand.cpu,
        demand.ram_mb,
        demand.disk_gb,
        tuple(sorted((*load.hosted, (name, index)))),
        tuple(sorted(load.ports + demand.ports)) if demand.ports else load.ports,
    )


def _with_usage(
    load: NodeLoad,
    cpu: int,
    ram_mb: int,
    disk_gb: int,
    hosted: tuple[tuple[str, int], ...],
    ports: tuple[int, ...],
) -> NodeLoad:
    return NodeLoad(
        load.node_id,
        load.owner,
        load.tier,
        load.country,
        load.continent,
        load.cores,
        load.ram_mb,
        load.disk_gb,
        load.cap_cpu,
        load.cap_ram_mb,
        load.cap_disk_gb,
        load.used_cpu + cpu,
        load.used_ram_mb + ram_mb,
        load.used_disk_gb + disk_gb,
        hosted,
        ports,
        load.rank_key,
    )


# -- hooks nodes.py calls ---------------------------------------------------------------------


def compute_capacity(node: Node, params: Params) -> tuple[int, int, int]:
    """(cpu tenths, RAM MB, disk GB) a node offers apps: its benchmark minus the reserve."""
    bench = node.benchmark
    if bench is None:
        return 0, 0, 0
    return (
        max(0, bench.cores - params.reserve_cores) * 10,
        max(0, bench.ram_mb - params.reserve_ram_mb),
        max(0, bench.disk_gb - params.reserve_disk_gb),
    )


def on_node_active(ctx: BlockContext, node_id: bytes) -> None:
    """A node became CONFIRMED: it gets a load record and counts in the totals; the
    under-placed apps are retried at the end of the block (`process_block`), a bounded
    number per block, not scanned here."""
    state = ctx.state
    node: Node | None = state.get(node_key(node_id))
    # check: only a confirmed node hosts; a repeated call changes nothing
    if node is None or node.status is not NodeStatus.CONFIRMED or not node.rank_key:
        return
    if get_load(state, node_id) is not None:
        return
    cpu, ram, disk = compute_capacity(node, ctx.params)
    bench = node.benchmark
    load = NodeLoad(
        node_id,
        node.owner,
        node.tier,
        node.country,
        node.continent,
        0 if bench is None else bench.cores,
        0 if bench is None else bench.ram_mb,
        0 if bench is None else bench.disk_gb,
        cpu,
        ram,
        disk,
        0,
        0,
        0,
        (),
        (),
        node.rank_key,
    )
    state.put(load_key(node_id), load)
    _count(state, load, +1)
    _capacity_appeared(state)


def on_node_inactive(ctx: BlockContext, node_id: bytes, reason: str) -> None:
    """A node left CONFIRMED (down, expired, jailed, unbonding, relocated): each of its
    instances moves to the best eligible node now, in this block."""
    state = ctx.state
    load = get_load(state, node_id)
    # check: nothing to do for a node that was not hosting
    if load is None:
        return
    moved: list[str] = sorted({name for name, _ in load.hosted})
    for name in moved:
        placement = get_placement(state, name)
        assert placement is not None, name
        for instance in placement.instances:
            if instance.node_id == node_id:
                placement = _unassign(ctx, placement, instance, reason, free=False)
        state.put(placement_key(name), placement)
    state.delete(load_key(node_id))
    _count(state, load, -1)
    for name in moved:
        placement = get_placement(state, name)
        assert placement is not None
        _fill(ctx, placement)


def process_block(ctx: BlockContext) -> None:
    """End of block: retry under-placed apps, at most `params.app_refills_per_block`.

    The refill queue holds each under-placed app once (entries whose ticket is not the
    app's `W` record's are stale and dropped), in the order they were last tried, so the
    capacity versions they were tried at never decrease from head to tail. An app at the
    head tried at the current version means every app has been tried since capacity last
    appeared: nothing to do. Otherwise the head is popped, searched again (`_fill`), and
    if still short goes to the back, tried now. Every queue step counts towards the bound,
    stale ones included, so a block's refill work is at most that many steps; an app
    waits at most (under-placed apps / bound) blocks for its turn.
    """
    state = ctx.state
    version = get_refill(state).version
    for _ in range(ctx.params.app_refills_per_block):
        head = deque.peek(state, REFILL_QUEUE)
        if head is None:
            return
        ticket, raw = head
        name = raw.decode()
        wanting: Wanting | None = state.get(wanting_key(name))
        if wanting is not None and wanting.ticket == ticket and wanting.tried == version:
            return  # every app behind it was tried at this version too
        deque.pop(state, REFILL_QUEUE)
        if wanting is None or wanting.ticket != ticket:
            continue  # stale: the app was placed, removed, or queued again since
        placement = get_placement(state, name)
        assert placement is not None, name
        placement = _fill(ctx, placement)
        if placement.reason:
            _enqueue(state, name)  # still short: to the back, tried at this version


# -- network statistics -----------------------------------------------------------------------


def get_totals(state: State) -> NetworkTotals:
    totals: NetworkTotals | None = state.get(TOTALS)
    return EMPTY_TOTALS if totals is None else totals


def _bump(state: State, key: bytes, delta: int) -> int:
    """Add `delta` to a reference count; return +1/-1 when it appears/disappears, else 0."""
    count: Count | None = state.get(key)
    before = 0 if count is None else count.value
    after = before + delta
    if after:
        state.put(key, Count(after))
    else:
        state.delete(key)
    return (after > 0) - (before > 0)


def _count(state: State, load: NodeLoad, delta: int) -> None:
    totals = get_totals(state)
    tiers = list(totals.per_tier)
    tiers[int(load.tier) - 1] += delta
    state.put(
        TOTALS,
        NetworkTotals(
            totals.nodes + delta,
            (tiers[0], tiers[1], tiers[2]),
            totals.cores + delta * load.cores,
            totals.ram_mb + delta * load.ram_mb,
            totals.disk_gb + delta * load.disk_gb,
            totals.countries + _bump(state, COUNTRIES + load.country.encode(), delta),
            totals.operators + _bump(state, OPERATORS + load.owner, delta),
        ),
    )


def network_stats(state: State) -> dict[str, Any]:
    """The figures the FluxCloud dashboard shows, from maintained counters.

    `nodes_by_status` is the one figure counted by a scan of the node table (placement
    only hears of transitions into and out of CONFIRMED).
    """
    totals = get_totals(state)
    by_status = dict.fromkeys((s.name.lower() for s in NodeStatus), 0)
    for _, node in state.items(NODE):
        by_status[node.status.name.lower()] += 1
    return {
        "active_nodes": totals.nodes,
        "nodes_by_tier": {t.name.lower(): totals.per_tier[int(t) - 1] for t in Tier},
        "nodes_by_status": by_status,
        "total_cores": totals.cores,
        "total_ram_mb": totals.ram_mb,
        "total_storage_gb": totals.disk_gb,
        "countries": totals.countries,
        "operators": totals.operators,
        "apps_underplaced": count_underplaced(state),
    }
