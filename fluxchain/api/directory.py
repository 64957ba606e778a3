"""The API's derived answers over the node and app tables, one set per committed head.

`/search` (a node by endpoint), `/nodes?tier=&status=&country=`, `/network/tiers`,
`/network/stats` and `/apps` each walked the whole node (or app) table on every request:
with 10,000 nodes, 20-60 ms of the event loop consensus runs on, as often as any client
asked (docs/performance.md "API reads over the node table"). Here the walk is done once
per head, by the first request that needs it, and every later request at that head is
a lookup.

When the head moves, the parts are updated from the blocks' events, never rebuilt by a
walk (api25 3): each node an event names (NODE_*, SLASHED; ASSIGNED and UNASSIGNED for
the loads of `/network/tiers`) is taken out of every part under the record the index
holds for it and put back under its current one. The tiers are recounted from the
index's own records (no walk) after an app event that names no node or an epoch's first
block; every part is built afresh when the blocks since cannot be read (a gap of more
than `MAX_CARRY`, a head not on the chain indexed, a restart, or more than `MAX_MOVES`
nodes to move). The events say what changed (every change of a node's status goes
through `nodes.set_status`, and each caller emits its NODE_* or SLASHED event;
registrations, updates of endpoint and country, releases and every app or placement
change emit theirs); `/apps` is carried over the blocks with no app event.
Payouts, queue tickets and attestations write node records every block and change none
of it, so a block of payouts only walks nothing. A `/nodes` page reads the current
record of each node it shows (its id from the index), never the one carried over.

Node-local and never consensus state: each part is a function of the committed state at
one head (built from it by one function, `_Head`, and tested equal to a fresh build
after every block of random chains), so a restarted node answers the same. Bounded: one
head's answers are held (the previous head's are moved into the next's when it is
asked for), and each is at most a few entries per node or app the state holds
(docs/security.md); an update reads the events of at most `MAX_CARRY` blocks.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from functools import cached_property
from typing import Any, Final

from fluxchain.api.view import ChainReader
from fluxchain.core import apps, placement
from fluxchain.core.events import Event, EventKind
from fluxchain.core.nodes import is_active
from fluxchain.core.params import Tier
from fluxchain.core.records import NODE, Node, NodeStatus, node_key
from fluxchain.core.state import State

Json = dict[str, Any]
# A filter of /nodes: (tier, status, country), "" for any; tier and status lower case,
# country upper case, as the query compares them.
Filter = tuple[str, str, str]
# What a node adds to /network/tiers: tier, status (lower case), and the cores, RAM (MB)
# and storage (GB) placed on it if it is active, else zeros.
Counted = tuple[str, str, int, int, int]

ANY: Final = ""
# Events of a block that change a node's tier, status, country or endpoint, or the node
# set (status changes all go through nodes.set_status, whose callers emit these).
NODE_EVENTS: Final = frozenset(
    {
        EventKind.NODE_REGISTERED,
        EventKind.NODE_CONFIRMED,
        EventKind.NODE_DOWN,
        EventKind.NODE_EXPIRED,
        EventKind.NODE_UNBONDING,
        EventKind.NODE_RELEASED,
        EventKind.NODE_UPDATED,
        EventKind.SLASHED,
    }
)
# Events of a block that change the app set or a node's placed load (/network/tiers).
APP_EVENTS: Final = frozenset(
    {
        EventKind.APP_REGISTERED,
        EventKind.APP_UPDATED,
        EventKind.APP_EXTENDED,
        EventKind.APP_CANCELLED,
        EventKind.APP_EXPIRED,
        EventKind.ASSIGNED,
        EventKind.UNASSIGNED,
        EventKind.APP_UNDERPLACED,
        EventKind.APP_PLACED,
    }
)
# App events that name the node whose placed load they change.
LOAD_EVENTS: Final = frozenset({EventKind.ASSIGNED, EventKind.UNASSIGNED})
# The parts answered from the node table, from the app and placement tables, from both.
NODE_PARTS: Final = ("records", "node_ids", "by_filter", "by_endpoint", "by_status")
APP_PARTS: Final = ("app_names",)
BOTH_PARTS: Final = ("tiers", "loads")
# Blocks whose events are read to carry parts over to a new head; a head further on (a
# node catching up, a snapshot restored) is built afresh, at the cost of one walk.
MAX_CARRY: Final = 64
# Nodes whose events an update moves in the parts (each move a few inserts into sorted
# lists of up to one id per node); past it the parts are built afresh, by one walk.
MAX_MOVES: Final = 1_000


def node_filters(node: Node) -> list[Filter]:
    """Every filter `node` matches: each of its three fields, or any."""
    tier, status, country = node.tier.name.lower(), node.status.name.lower(), node.country
    return [(t, s, c) for t in (tier, ANY) for s in (status, ANY) for c in (country, ANY)]


class _Head:
    """The derived answers at one head, each computed on first use from the committed
    state at that head."""

    def __init__(self, state: State, rendered: dict[bytes, tuple[Node, Json]]) -> None:
        self._state = state
        # node id -> (the record it was rendered from, its rendering): carried over from
        # the previous head for the records no block changed (records are immutable, so
        # `is` says unchanged); at most one per node of the table.
        self._previous = rendered
        self.rendered: dict[bytes, tuple[Node, Json]] = {}

    @cached_property
    def nodes(self) -> list[Node]:
        """Every node, in key (node id) order: a walk, only to build the parts (never
        carried over)."""
        return [node for _, node in self._state.items(NODE)]

    @cached_property
    def records(self) -> dict[bytes, Node]:
        """Each node's record as the parts index it: what an update takes a changed node
        out of the parts under."""
        return {node.node_id: node for node in self.nodes}

    @cached_property
    def node_ids(self) -> list[bytes]:
        """Every node's id, in order (`records` is in key order only until an update)."""
        return sorted(self.records)

    def _in_order(self) -> list[Node]:
        records = self.records
        return [records[node_id] for node_id in self.node_ids]

    def node(self, node_id: bytes) -> Node | None:
        """The current record of the node `node_id`."""
        found: Node | None = self._state.get(node_key(node_id))
        return found

    def carry(self, previous: _Head, events: list[Event]) -> None:
        """Take `previous`'s parts (moved, not copied: `previous` is dropped), updated for
        `events` (the blocks' since)."""
        kinds = {event.kind for event in events}
        changed = {e.fields[0] for e in events if e.kind in NODE_EVENTS}
        loaded = changed | {e.fields[1] for e in events if e.kind in LOAD_EVENTS}
        if len(loaded) > MAX_MOVES:
            return  # built afresh: one walk costs less than this many moves
        # An app event naming no node may change the loads of any node it was placed on,
        # and an epoch's first block makes the nodes whose rank keys arrived active, with
        # no node or app event (late review of session 24): the tiers are recounted.
        recount = bool(kinds & APP_EVENTS - LOAD_EVENTS) or EventKind.EPOCH_STARTED in kinds
        apps = not kinds & APP_EVENTS
        held = previous.__dict__
        # A changed node is taken out of the parts under the record `records` holds.
        nodes = "records" in held or not changed
        parts = (NODE_PARTS if nodes else ()) + (APP_PARTS if apps else ())
        tiers = nodes and not recount
        for part in parts + (BOTH_PARTS if tiers else ()):
            if part in held:
                self.__dict__[part] = held[part]
        if changed and nodes:
            for node_id in sorted(changed):
                self._renode(node_id)
        if loaded and "tiers" in self.__dict__:
            for node_id in sorted(loaded):
                self._reload(node_id)

    def _renode(self, node_id: bytes) -> None:
        """Move `node_id` in the node parts held (a part not built yet is built later,
        from the records updated here) from the record they hold to its current one."""
        old = self.records.pop(node_id, None)
        new = self.node(node_id)
        if old is not None:
            self._place(old, add=False)
        if new is not None:
            self.records[node_id] = new
            self._place(new, add=True)
        if "node_ids" in self.__dict__ and (old is None) != (new is None):
            _put({b"": self.node_ids}, b"", node_id, add=new is not None)

    def _place(self, node: Node, add: bool) -> None:
        """Put `node` in (or take it out of) the filters, endpoints and counts held."""
        held, node_id = self.__dict__, node.node_id
        if "by_filter" in held:
            for key in node_filters(node):
                _put(self.by_filter, key, node_id, add)
        if "by_endpoint" in held:
            _put(self.by_endpoint, node.endpoint, node_id, add)
        if "by_status" in held:
            self.by_status[node.status.name.lower()] += 1 if add else -1

    def _reload(self, node_id: bytes) -> None:
        """Recount `node_id` in the tiers: out under what they counted, in under its
        current record and load."""
        tiers, loads = self.tiers["tiers"], self.loads
        was = loads.pop(node_id, None)
        if was is not None:
            _count(tiers, *was, -1)
        now = self._counted(self.records.get(node_id))
        if now is not None:
            loads[node_id] = now
            _count(tiers, *now, 1)

    def _counted(self, node: Node | None) -> Counted | None:
        """What `node` adds to the tiers: its tier, status, and placed load if active."""
        if node is None:
            return None
        load = placement.get_load(self._state, node.node_id) if is_active(node) else None
        cores, ram, disk = (0, 0, 0) if load is None else (load.cores, load.ram_mb, load.disk_gb)
        return node.tier.name.lower(), node.status.name.lower(), cores, ram, disk

    @cached_property
    def by_filter(self) -> dict[Filter, list[bytes]]:
        """The ids of the nodes each filter matches, in id order: 8 entries per node at
        most."""
        index: dict[Filter, list[bytes]] = {}
        for node in self._in_order():
            for key in node_filters(node):
                index.setdefault(key, []).append(node.node_id)
        return index

    @cached_property
    def by_endpoint(self) -> dict[str, list[bytes]]:
        """Node ids by registered endpoint, in id order."""
        index: dict[str, list[bytes]] = {}
        for node in self._in_order():
            index.setdefault(node.endpoint, []).append(node.node_id)
        return index

    @cached_property
    def by_status(self) -> dict[str, int]:
        counts = dict.fromkeys((s.name.lower() for s in NodeStatus), 0)
        for node in self._in_order():
            counts[node.status.name.lower()] += 1
        return counts

    @cached_property
    def loads(self) -> dict[bytes, Counted]:
        """What each node adds to the tiers, from the index's records (a walk only if they
        are not held): one entry per node."""
        return {
            node_id: counted
            for node_id, node in self.records.items()
            if (counted := self._counted(node)) is not None
        }

    @cached_property
    def tiers(self) -> Json:
        """Per tier: nodes in each state, and the confirmed nodes' cores, RAM and storage
        as placement counts them (what /network/tiers answers)."""
        tiers: Json = {
            tier.name.lower(): {
                "nodes_by_status": dict.fromkeys((s.name.lower() for s in NodeStatus), 0),
                "cores": 0,
                "ram_mb": 0,
                "storage_gb": 0,
            }
            for tier in Tier
        }
        for counted in self.loads.values():
            _count(tiers, *counted, 1)
        return {"tiers": tiers}

    @cached_property
    def app_names(self) -> list[str]:
        """Every registered app's name, sorted."""
        return [key[1:].decode() for key in self._state.keys(apps.APP)]

    def render(self, node: Node, render: Callable[[Node], Json]) -> Json:
        """`render(node)`, once per head for each record (and kept across heads while the
        record is unchanged)."""
        kept = self.rendered.get(node.node_id) or self._previous.get(node.node_id)
        if kept is None or kept[0] is not node:
            kept = (node, render(node))
        self.rendered[node.node_id] = kept
        return kept[1]


class Directory:
    """The derived answers of the committed head (`at`): rebuilt, part by part, when the
    head moves."""

    def __init__(self) -> None:
        self._key: tuple[int, bytes] | None = None
        self._head: _Head | None = None

    def at(self, chain: ChainReader) -> _Head:
        """The answers at `chain`'s committed head."""
        key = (chain.height, chain.head_hash)
        if self._head is None or self._key is None:
            self._head = _Head(chain.state.committed_view(), {})
        elif self._key != key:
            head = _Head(chain.state.committed_view(), self._head.rendered)
            events = _events_since(chain, self._key)
            if events is not None:
                head.carry(self._head, events)
            self._head = head
        self._key = key
        return self._head


def _events_since(chain: ChainReader, key: tuple[int, bytes]) -> list[Event] | None:
    """The events of the blocks after `key` (height, hash) up to `chain`'s head; None
    when they cannot be told: that block is no longer on the chain, or the
    head is behind it or more than MAX_CARRY blocks on, or the blocks' events are not all
    held (below the base of a node started from a snapshot)."""
    height, block_hash = key
    if not 0 < chain.height - height <= MAX_CARRY or height < chain.base_height:
        return None
    if chain.height_of(block_hash) != height:
        return None
    return [event for at in range(height + 1, chain.height + 1) for event in chain.events(at)]


def _put(index: dict[Any, list[bytes]], key: Any, node_id: bytes, add: bool) -> None:
    """Put `node_id` in `index[key]` (sorted ids) or take it out, and the key once empty."""
    ids = index.setdefault(key, [])
    at = bisect.bisect_left(ids, node_id)
    present = at < len(ids) and ids[at] == node_id
    if add and not present:
        ids.insert(at, node_id)
    elif not add and present:
        del ids[at]
    if not ids:
        del index[key]


def _count(tiers: Json, tier: str, status: str, cores: int, ram: int, disk: int, sign: int) -> None:
    row = tiers[tier]
    row["nodes_by_status"][status] += sign
    row["cores"] += sign * cores
    row["ram_mb"] += sign * ram
    row["storage_gb"] += sign * disk


def page_after(ordered: list[Any], after: Any, size: int) -> tuple[list[Any], bool]:
    """The up to `size` items of sorted `ordered` after `after`, and whether more follow."""
    start = bisect.bisect_right(ordered, after)
    return ordered[start : start + size], len(ordered) > start + size
