"""What the API's reads over the node and app tables cost the node's event loop, on a
chain of many nodes (docs/performance.md "API reads over the node table").

The state is read through a backing as a node's is (its store), so that listing a table
walks the stored keys as on a node; each query is timed over repeated requests at one
head, then once more after the head moves (what the first request of a block pays).

    .venv/bin/python -P -m bench.api_reads --nodes 10000 --apps 1000
"""

from __future__ import annotations

import argparse
import bisect
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from bench.placement import COUNTRIES, TIERS
from fluxchain.api import queries
from fluxchain.api.directory import Directory, page_after
from fluxchain.api.queries import MAX_LIST
from fluxchain.api.view import NodeView
from fluxchain.core.apps import APP
from fluxchain.core.encoding import pack
from fluxchain.core.params import Params
from fluxchain.core.records import node_key
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

    def height_of(self, block_hash: bytes) -> int | None:
        """No block is known: every head is built afresh (api/directory.py carries the
        index over blocks that changed no node; this times the blocks that did)."""
        return None


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


def timed(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    """(first, median of the rest) in ms."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times[0], statistics.median(times[1:])


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
    print(f"nodes={args.nodes} apps={args.apps} runs={args.runs} (ms: first at a head, median)")
    for name, call in cases.items():
        cast(Chain, view.chain).height += 1  # a new head: the first request of the block builds
        first, median = timed(call, args.runs)
        print(f"{name:32s} first {first:8.2f}  median {median:8.2f}")


if __name__ == "__main__":
    main()
