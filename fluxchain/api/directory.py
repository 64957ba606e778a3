"""The API's derived answers over the node and app tables, one set per committed head.

`/search` (a node by endpoint), `/nodes?tier=&status=&country=`, `/network/tiers`,
`/network/stats` and `/apps` each walked the whole node (or app) table on every request:
with 10,000 nodes, 20-60 ms of the event loop consensus runs on, as often as any client
asked (docs/performance.md "API reads over the node table"). Here the walk is done once
per head, by the first request that needs it, and every later request at that head is
a lookup.

Node-local and never consensus state: each part is a function of the committed state at
one head (built from it by one function, `_Head`, and tested equal to a fresh walk), so
a restarted node answers the same. Bounded: one head's answers are held (the previous
head's are dropped when the next is asked for), and each is at most a few entries per
node or app the state holds (docs/security.md).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from functools import cached_property
from typing import Any, Final

from fluxchain.api.view import ChainReader
from fluxchain.core import apps, placement
from fluxchain.core.nodes import is_active
from fluxchain.core.params import Tier
from fluxchain.core.records import NODE, Node, NodeStatus
from fluxchain.core.state import State

Json = dict[str, Any]
# A filter of /nodes: (tier, status, country), "" for any; tier and status lower case,
# country upper case, as the query compares them.
Filter = tuple[str, str, str]

ANY: Final = ""


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
        """Every node, in key (node id) order."""
        return [node for _, node in self._state.items(NODE)]

    @cached_property
    def node_ids(self) -> list[bytes]:
        return [node.node_id for node in self.nodes]

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
        if self._head is None or self._key != key:
            rendered = {} if self._head is None else self._head.rendered
            self._head = _Head(chain.state.committed_view(), rendered)
            self._key = key
        return self._head


def page_after(ordered: list[Any], after: Any, size: int) -> tuple[list[Any], bool]:
    """The up to `size` items of sorted `ordered` after `after`, and whether more follow."""
    start = bisect.bisect_right(ordered, after)
    return ordered[start : start + size], len(ordered) > start + size
