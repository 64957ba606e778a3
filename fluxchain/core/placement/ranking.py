"""Ranking: the order of nodes for an app (two-level rendezvous hashing of the app name and
a node's rank key), the node index it walks, the search for an app's best eligible nodes, and
the reason an app is short (`compute_shortfall_reason`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from hashlib import sha256
from typing import Any, Final, TypeVar

from fluxchain.core.appspec import GeoRule
from fluxchain.core.placement.records import (
    MAX_ACCRUALS,
    NODE_LOAD,
    REASON_CAPACITY,
    REASON_GEO,
    REASON_NONE,
    REASON_PINNED,
    REASON_TIER,
    Demand,
    NodeLoad,
    Placement,
    get_load,
    get_totals,
)
from fluxchain.core.state import State

GROUPS: Final = 256  # the first byte of a rank key; ~40 nodes a group at FluxCloud scale
TAG_GROUP: Final = b"fluxchain/placement/group/1"
TAG_NODE: Final = b"fluxchain/placement/node/1"
POOL_LIMIT: Final = 2_048  # larger location pools are cheaper to filter during the walk
# One search examines at most SEARCH_GROUPS groups' worth of nodes (never fewer than
# SEARCH_MIN): an app no node can hold costs a bounded search, not one per active node,
# for its flat app charge (docs/economics.md). Past the bound it is under-placed, as if
# nothing fitted, and the refill retries it when capacity appears.
SEARCH_GROUPS: Final = 8
SEARCH_MIN: Final = 64


def compute_group(rank_key: bytes) -> int:
    return rank_key[0]


def compute_group_scores(name: str) -> list[bytes]:
    """The first-level rank of each group for app `name`: 4 bytes of SHA-256 in counter
    mode per group (`GROUPS * 4 // 32` = 32 hashes), then the group number for ties."""
    prefix = TAG_GROUP + name.encode()
    stream = b"".join(sha256(prefix + bytes((block,))).digest() for block in range(GROUPS // 8))
    return [stream[4 * g : 4 * g + 4] + bytes((g,)) for g in range(GROUPS)]


def _bucket(node_ids: Iterable[bytes], rank_of: Mapping[bytes, bytes]) -> dict[int, set[bytes]]:
    """Node ids by the group of their rank key; nodes without a load record (so without
    a rank key in the index) are not placeable and are left out."""
    buckets: dict[int, set[bytes]] = {}
    for node_id in node_ids:
        rank_key = rank_of.get(node_id)
        if rank_key is not None:
            buckets.setdefault(rank_key[0], set()).add(node_id)
    return buckets


def compute_node_score(name: str, rank_key: bytes) -> bytes:
    return sha256(TAG_NODE + name.encode() + rank_key).digest()


# -- the node index (derived from the load records, owned by the State) ----------------------


class NodeIndex:
    """The active nodes (those with a load record) by group and by place, and their rank
    keys; and by host port taken (`by_port`: port key -> the nodes an app publishes it on).

    Kept by the State as a watcher of the NODE_LOAD table (state.py): it equals
    `build_node_index(state)` at every instant, pending writes, reverts and discards
    included, and a restarted node builds the same one from the same records. A place is
    a continent ("EU") or a country ("_DE"), as geolocation rules name them. Every map
    holds what the load records hold, no more: bounded by them.
    """

    __slots__ = ("by_group", "by_place", "by_port", "rank_of")

    def __init__(self) -> None:
        self.by_group: dict[int, set[bytes]] = {}
        self.by_place: dict[str, set[bytes]] = {}
        self.by_port: dict[int, set[bytes]] = {}
        self.rank_of: dict[bytes, bytes] = {}  # node id -> rank key

    def build(self, items: Iterable[tuple[bytes, Any]]) -> None:
        self.by_group = {}
        self.by_place = {}
        self.by_port = {}
        self.rank_of = {}
        for _, load in items:
            self._add(load)

    def changed(self, key: bytes, before: Any, after: Any) -> None:
        if (
            before is not None
            and after is not None
            and (before.continent, before.country) == (after.continent, after.country)
        ):
            # the usual change: what the node hosts, not where it is
            if before.ports != after.ports:
                self._move_ports(after.node_id, before.ports, after.ports)
            return
        if before is not None:
            self._remove(before)
        if after is not None:
            self._add(after)

    def contents(
        self,
    ) -> tuple[
        dict[int, frozenset[bytes]],
        dict[str, frozenset[bytes]],
        dict[int, frozenset[bytes]],
        dict[bytes, bytes],
    ]:
        """A comparable copy (tests check the index against a fresh build)."""
        return (
            {g: frozenset(ids) for g, ids in self.by_group.items()},
            {p: frozenset(ids) for p, ids in self.by_place.items()},
            {k: frozenset(ids) for k, ids in self.by_port.items()},
            dict(self.rank_of),
        )

    def taken(self, ports: Iterable[int]) -> list[set[bytes]]:
        """For each of `ports` (port keys) that an app publishes somewhere, the active
        nodes it is taken on (the index's own sets: read, never change them)."""
        return [self.by_port[key] for key in ports if key in self.by_port]

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
        self._move_ports(load.node_id, (), load.ports)

    def _remove(self, load: NodeLoad) -> None:
        _discard(self.by_group, load.rank_key[0], load.node_id)
        self.rank_of.pop(load.node_id, None)
        for place in _places(load.continent, load.country):
            _discard(self.by_place, place, load.node_id)
        self._move_ports(load.node_id, load.ports, ())

    def _move_ports(self, node_id: bytes, before: Iterable[int], after: Iterable[int]) -> None:
        gone, new = set(before), set(after)
        for key in gone - new:
            _discard(self.by_port, key, node_id)
        for key in new - gone:
            self.by_port.setdefault(key, set()).add(node_id)


class IndexOverlay(NodeIndex):
    """A dry-run view's NodeIndex over its state's: reads the state's sets until the view
    moves a node in the index, then copies them, so the state's index is never changed.
    A placement only changes what nodes host, which moves no node: it copies just the
    sets of the host ports it takes or frees (`_own_ports`)."""

    __slots__ = ("_own", "_own_ports")

    def __init__(self, base: NodeIndex) -> None:
        self.by_group, self.by_place, self.rank_of = base.by_group, base.by_place, base.rank_of
        self.by_port = base.by_port
        self._own = False
        self._own_ports: set[int] | None = None  # None: by_port is the base's dict

    def build(self, items: Iterable[tuple[bytes, Any]]) -> None:
        self._own = True  # fresh containers of its own
        self._own_ports = set()
        super().build(items)

    def _add(self, load: NodeLoad) -> None:
        self._copy()
        super()._add(load)

    def _remove(self, load: NodeLoad) -> None:
        self._copy()
        super()._remove(load)

    def _move_ports(self, node_id: bytes, before: Iterable[int], after: Iterable[int]) -> None:
        before, after = tuple(before), tuple(after)
        if self._own_ports is None:
            self.by_port = dict(self.by_port)
            self._own_ports = set()
        for key in (*before, *after):
            if key not in self._own_ports:
                if key in self.by_port:
                    self.by_port[key] = set(self.by_port[key])
                self._own_ports.add(key)
        super()._move_ports(node_id, before, after)

    def _copy(self) -> None:
        if not self._own:
            self.by_group = {g: set(ids) for g, ids in self.by_group.items()}
            self.by_place = {p: set(ids) for p, ids in self.by_place.items()}
            self.rank_of = dict(self.rank_of)
            self._own = True


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


class Search:
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
    def of(cls, state: State, placement: Placement) -> Search:
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
        Nodes on which another app publishes one of the app's host ports are passed over
        from the index (`by_port`) without being examined: they cannot take it, and were
        they counted, pinned port squatters on the nodes ranked next would spend the
        whole budget and leave the app nowhere while free nodes remain (red23d).
        """
        if count <= 0:
            return []
        demand = self.demand
        buckets: Mapping[int, set[bytes]]
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
        taken = index.taken(demand.ports) if demand.ports else []
        return self._walk(buckets, index.rank_of, taken, count)

    def _walk(
        self,
        buckets: Mapping[int, set[bytes]],
        rank_of: Mapping[bytes, bytes],
        taken: list[set[bytes]],
        count: int,
    ) -> list[bytes]:
        """Visit groups best first; in each, nodes by score but those in a `taken` set,
        until `count` are chosen."""
        chosen: list[bytes] = []
        if not buckets:
            return chosen
        scores = compute_group_scores(self.name)
        name = self.name.encode()
        budget = search_limit(len(rank_of))
        # Passing over a port-taken node costs a set lookup (C-level, in `difference`), not
        # a load read: at worst every active node's once per search, while the budget
        # still bounds the nodes examined. A group whose nodes all have a port taken
        # spends none of it, one with a free node at least one.

        def visit(group: int) -> bool:
            nonlocal budget
            members = buckets[group].difference(*taken) if taken else buckets[group]
            ranked = sorted(
                ((sha256(TAG_NODE + name + rank_of[n]).digest(), n) for n in members),
                reverse=True,
            )
            for _, node_id in ranked:
                if len(chosen) >= count or not budget:
                    break
                budget -= 1
                if self.eligible(node_id) is not None:
                    chosen.append(node_id)
            return len(chosen) >= count or not budget

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
