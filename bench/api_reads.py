"""What the API's reads over the node and app tables cost the node's event loop, on a
chain of many nodes (docs/performance.md "API reads over the node table").

The state is read through a backing as a node's is (its store), so that listing a table
walks the stored keys as on a node; each query is timed over repeated requests at one
head, built afresh (what the first request after a restart or a gap pays), then as the
first request after each of `--runs` blocks that moved one node, the index kept and
updated from the block's events (what the first request of a block pays).

    .venv/bin/python -P -m bench.api_reads --nodes 10000 --apps 1000
"""

from __future__ import annotations

import argparse
import bisect
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

from bench.placement import COUNTRIES, TIERS
from fluxchain.api import queries
from fluxchain.api.directory import Directory, page_after
from fluxchain.api.queries import MAX_LIST
from fluxchain.api.view import NodeView
from fluxchain.core.apps import APP
from fluxchain.core.encoding import pack
from fluxchain.core.events import Event, EventKind
from fluxchain.core.params import Params
from fluxchain.core.records import NODE, NodeStatus, node_key
from fluxchain.core.schema import TABLES, new_state
from fluxchain.core.state import State
from tests.support.state import StateRunner, make_node


class DictBacking:
    """Encoded records in key order, as the store serves them."""

    def __init__(self, records: dict[bytes, bytes]) -> None:
        self._records = records
        self._keys = sorted(records)

    def get(self, key: bytes) -> bytes | None:
        return self._records.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        at = bisect.bisect_left(self._keys, prefix)
        while at < len(self._keys) and self._keys[at].startswith(prefix):
            key = self._keys[at]
            yield key, self._records[key]
            at += 1


@dataclass
class Chain:
    params: Params
    state: State
    height: int = 1
    head_hash: bytes = field(default=b"\x01" * 32)
    base_height: int = 0
    # The blocks the index may follow (by hash) and their events; a head not here is
    # built afresh (api/directory.py).
    hashes: dict[bytes, int] = field(default_factory=dict)
    emitted: dict[int, list[Event]] = field(default_factory=dict)

    def height_of(self, block_hash: bytes) -> int | None:
        return self.hashes.get(block_hash)

    def events(self, height: int) -> list[Event]:
        return self.emitted.get(height, [])

    def next_block(self, events: list[Event], known: bool) -> None:
        """A new head: followed from its events (`known`), or one the index cannot follow
        (a restart, a gap), built afresh."""
        self.hashes = {self.head_hash: self.height} if known else {}
        self.height += 1
        self.head_hash = self.height.to_bytes(32, "big")
        self.emitted = {self.height: events}


@dataclass
class View:
    chain: Chain


def build(n_nodes: int, n_apps: int, seed: int) -> tuple[NodeView, str]:
    rng = random.Random(seed)
    runner = StateRunner()
    endpoint = ""
    for i in range(n_nodes):
        tier = rng.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0]
        country, continent = rng.choice(COUNTRIES)
        node = make_node(i, tier=tier, country=country, continent=continent)
        endpoint = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:16127"
        node = type(node)(**{**{s: getattr(node, s) for s in node.__slots__}, "endpoint": endpoint})
        runner.state.put(node_key(node.node_id), node)
    runner.state.commit()
    records = {
        key: pack(record.to_fields())
        for table in TABLES
        for key, record in runner.state.items(table)
    }
    # App records are not needed to time the walk of their keys: a key of each stands in.
    app_stub = next(iter(records.values()))
    for i in range(n_apps):
        records[APP + f"app-{i:06d}".encode()] = app_stub
    view = View(Chain(runner.params, new_state(DictBacking(records))))
    return cast(NodeView, view), endpoint


_UP, _DOWN = NodeStatus.CONFIRMED, NodeStatus.DOWN


def timed(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    """(first, median of the rest, or the first alone) in ms."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times[0], statistics.median(times[1:] or times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--apps", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    view, endpoint = build(args.nodes, args.apps, args.seed)
    directory = Directory()
    country = COUNTRIES[-1][0]
    cases: dict[str, Callable[[], Any]] = {
        "/search?q=ENDPOINT": lambda: queries.search(view, directory, endpoint),
        f"/nodes?country={country}": lambda: queries.nodes(view, directory, "", "", country),
        "/nodes (first page)": lambda: queries.nodes(view, directory, "", "", ""),
        "/network/tiers": lambda: queries.network_tiers(view, directory),
        "/network/stats": lambda: queries.network_stats(view, directory),
        "/apps (first page of names)": lambda: page_after(
            directory.at(view.chain).app_names, "", MAX_LIST
        ),
    }
    chain = cast(Chain, view.chain)
    print(f"nodes={args.nodes} apps={args.apps} runs={args.runs} (ms: first at a head, median)")
    for name, call in cases.items():
        chain.next_block([], known=False)  # a head built afresh by its first request
        first, median = timed(call, args.runs)
        print(f"{name:32s} first {first:8.2f}  median {median:8.2f}")
    # The index kept: each run is the first request after a block in which one node went
    # down or came back (a NODE_* event), what nearly every block of a live chain is.
    print("kept over a block that moved one node (ms: first request after it, median and max)")
    rng = random.Random(args.seed)
    ids = [node.node_id for _, node in chain.state.items(NODE)]
    for name, call in cases.items():
        call()  # the head's parts built once: the index follows from here
        times = []
        for _ in range(args.runs):
            node_id = rng.choice(ids)
            node = chain.state.get(node_key(node_id))
            down = node.status is NodeStatus.DOWN
            chain.state.put(node_key(node_id), replace(node, status=_UP if down else _DOWN))
            chain.state.commit()
            chain.next_block([Event(EventKind.NODE_DOWN, (node_id, 1, 1))], known=True)
            times.append(timed(call, 1)[0])
        print(f"{name:32s} median {statistics.median(times):8.2f}  max {max(times):8.2f}")


if __name__ == "__main__":
    main()
