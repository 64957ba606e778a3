"""The API's derived answers over the node and app tables, one set per committed head.

`/search` (a node by endpoint), `/nodes?tier=&status=&country=`, `/network/tiers`,
`/network/stats` and `/apps` each walked the whole node (or app) table on every request:
with 10,000 nodes, 20-60 ms of the event loop consensus runs on, as often as any client
asked (docs/performance.md "API reads over the node table"). Here the walk is done once
per head, by the first request that needs it, and every later request at that head is
a lookup.

When the head moves, a part is carried over unless a block since wrote what it answers
from: the blocks' events say so (every change of a node's status goes through
`nodes.set_status`, and each caller emits its NODE_* or SLASHED event; registrations,
updates of endpoint and country, releases and every app or placement change emit theirs).
Payouts, queue tickets and attestations write node records every block and change none
of it, so a block of payouts only walks nothing. A `/nodes` page reads the current
record of each node it shows (its id from the index), never the one carried over.

Node-local and never consensus state: each part is a function of the committed state at
one head (built from it by one function, `_Head`, and tested equal to a fresh walk), so
a restarted node answers the same. Bounded: one head's answers are held (the previous
head's are dropped when the next is asked for), and each is at most a few entries per
node or app the state holds (docs/security.md); carrying over reads the events of at
most `MAX_CARRY` blocks.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from functools import cached_property
from typing import Any, Final

from fluxchain.api.view import ChainReader
from fluxchain.core import apps, placement
from fluxchain.core.events import EventKind
from fluxchain.core.nodes import is_active
from fluxchain.core.params import Tier
from fluxchain.core.records import NODE, Node, NodeStatus, node_key
from fluxchain.core.state import State

Json = dict[str, Any]
# A filter of /nodes: (tier, status, country), "" for any; tier and status lower case,
# country upper case, as the query compares them.
Filter = tuple[str, str, str]

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
# The parts answered from the node table, from the app and placement tables, from both.
NODE_PARTS: Final = ("node_ids", "by_filter", "by_endpoint", "by_status")
APP_PARTS: Final = ("app_names",)
BOTH_PARTS: Final = ("tiers",)
# Blocks whose events are read to carry parts over to a new head; a head further on (a
# node catching up, a snapshot restored) is built afresh, at the cost of one walk.
MAX_CARRY: Final = 64


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
    def node_ids(self) -> list[bytes]:
        return [node.node_id for node in self.nodes]

    def node(self, at: int) -> Node | None:
        """The current record of the node at position `at` of `node_ids`."""
        found: Node | None = self._state.get(node_key(self.node_ids[at]))
        return found

    def carry(self, previous: _Head, kinds: set[EventKind]) -> None:
        """Take `previous`'s parts that no event of `kinds` (the blocks' since) changed."""
        nodes, apps = not kinds & NODE_EVENTS, not kinds & APP_EVENTS
        parts = (NODE_PARTS if nodes else ()) + (APP_PARTS if apps else ())
        # An epoch's first block makes the nodes whose rank keys arrived active: their
        # load records count in the tiers, with no node or app event (late review of
        # session 24).
        loads = EventKind.EPOCH_STARTED not in kinds
        for part in parts + (BOTH_PARTS if nodes and apps and loads else ()):
            if part in previous.__dict__:
                self.__dict__[part] = previous.__dict__[part]

    @cached_property
    def by_filter(self) -> dict[Filter, list[int]]:
        """Positions in `nodes` of the nodes each filter matches, in id order: 8 entries
        per node at most."""
        index: dict[Filter, list[int]] = {}
        for at, node in enumerate(self.nodes):
            for key in node_filters(node):
                index.setdefault(key, []).append(at)
        return index

    @cached_property
    def by_endpoint(self) -> dict[str, list[bytes]]:
        """Node ids by registered endpoint, in id order."""
        index: dict[str, list[bytes]] = {}
        for node in self.nodes:
            index.setdefault(node.endpoint, []).append(node.node_id)
        return index

    @cached_property
    def by_status(self) -> dict[str, int]:
        counts = dict.fromkeys((s.name.lower() for s in NodeStatus), 0)
        for node in self.nodes:
            counts[node.status.name.lower()] += 1
        return counts

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
        for node in self.nodes:
            row = tiers[node.tier.name.lower()]
            row["nodes_by_status"][node.status.name.lower()] += 1
            load = placement.get_load(self._state, node.node_id) if is_active(node) else None
            if load is not None:
                row["cores"] += load.cores
                row["ram_mb"] += load.ram_mb
                row["storage_gb"] += load.disk_gb
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
            kinds = _kinds_since(chain, self._key)
            if kinds is not None:
                head.carry(self._head, kinds)
            self._head = head
        self._key = key
        return self._head


def _kinds_since(chain: ChainReader, key: tuple[int, bytes]) -> set[EventKind] | None:
    """The kinds of the events of the blocks after `key` (height, hash) up to `chain`'s
    head; None when they cannot be told: that block is no longer on the chain, or the
    head is behind it or more than MAX_CARRY blocks on, or the blocks' events are not all
    held (below the base of a node started from a snapshot)."""
    height, block_hash = key
    if not 0 < chain.height - height <= MAX_CARRY or height < chain.base_height:
        return None
    if chain.height_of(block_hash) != height:
        return None
    return {event.kind for at in range(height + 1, chain.height + 1) for event in chain.events(at)}


def page_after(ordered: list[Any], after: Any, size: int) -> tuple[list[Any], bool]:
    """The up to `size` items of sorted `ordered` after `after`, and whether more follow."""
    start = bisect.bisect_right(ordered, after)
    return ordered[start : start + size], len(ordered) > start + size
