"""Brief api24 of the reads that walked the whole node table on every request
(`/search` by endpoint, `/nodes?tier=&status=&country=`, `/network/tiers`,
`/network/stats`; the app table for `/apps`): with 10,000 nodes each was 20-60 ms of
the event loop consensus runs on. They now read the head's index (api/directory.py),
built by one walk at the first request of a head; these tests hold it to a fresh walk.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest

from fluxchain.api import queries
from fluxchain.api.directory import Directory
from fluxchain.api.view import NodeView
from fluxchain.core import placement
from fluxchain.core.events import Event, EventKind
from fluxchain.core.nodes import is_active
from fluxchain.core.params import Params, Tier
from fluxchain.core.records import NODE, Node, NodeStatus, node_key
from fluxchain.core.state import State
from tests.api.test_api import api
from tests.support.state import StateRunner, make_node

SEED = 24
COUNTRIES = ["DE", "FR", "US", "JP"]


@dataclass
class Chain:
    params: Params
    state: State
    height: int = 1
    head_hash: bytes = field(default=b"\x01" * 32)
    base_height: int = 0
    hashes: dict[bytes, int] = field(default_factory=lambda: {b"\x01" * 32: 1})
    emitted: dict[int, list[Event]] = field(default_factory=dict)

    def height_of(self, block_hash: bytes) -> int | None:
        return self.hashes.get(block_hash)

    def events(self, height: int) -> list[Event]:
        return self.emitted.get(height, [])

    def next_block(self, *events: Event) -> None:
        """Commit the state's writes as the next block, with the events its rules emit."""
        self.state.commit()
        self.height += 1
        self.head_hash = self.height.to_bytes(32, "big")
        self.hashes[self.head_hash] = self.height
        self.emitted[self.height] = list(events)


@dataclass
class View:
    chain: Chain


def network(n: int) -> tuple[StateRunner, NodeView]:
    rng = random.Random(SEED)
    runner = StateRunner()
    for i in range(n):
        node = make_node(
            i,
            tier=rng.choice(list(Tier)),
            country=rng.choice(COUNTRIES),
            status=rng.choice([NodeStatus.CONFIRMED, NodeStatus.CONFIRMED, NodeStatus.DOWN]),
        )
        node = replace(node, endpoint=f"10.0.0.{i % 5}:16127")
        runner.state.put(node_key(node.node_id), node)
        if is_active(node):
            placement.on_node_active(runner.ctx, node.node_id)
    runner.state.commit()
    return runner, cast(NodeView, View(Chain(runner.params, runner.state)))


def walked(view: NodeView) -> list[Node]:
    return [node for _, node in view.chain.state.committed_view().items(NODE)]


def fresh_tiers(view: NodeView) -> dict[str, Any]:
    """/network/tiers as a walk of the node table computes it."""
    state = view.chain.state.committed_view()
    tiers: dict[str, Any] = {
        t.name.lower(): {
            "nodes_by_status": dict.fromkeys((s.name.lower() for s in NodeStatus), 0),
            "cores": 0,
            "ram_mb": 0,
            "storage_gb": 0,
        }
        for t in Tier
    }
    for node in walked(view):
        row = tiers[node.tier.name.lower()]
        row["nodes_by_status"][node.status.name.lower()] += 1
        load = placement.get_load(state, node.node_id) if is_active(node) else None
        if load is not None:
            row["cores"] += load.cores
            row["ram_mb"] += load.ram_mb
            row["storage_gb"] += load.disk_gb
    return {"tiers": tiers}


def all_pages(
    view: NodeView, directory: Directory, tier: str, status: str, country: str
) -> list[str]:
    ids: list[str] = []
    after = ""
    while True:
        page = queries.nodes(view, directory, tier, status, country, after)
        ids += [n["node_id"] for n in page["nodes"]]
        if page["next"] is None:
            return ids
        after = page["next"]


def test_api24_the_head_index_answers_as_a_fresh_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "MAX_LIST", 7)  # several pages of every filter
    runner, view = network(60)
    directory = Directory()
    for _ in range(2):  # at a head, and again after it moved and nodes changed
        nodes = walked(view)
        for tier in ("", "cumulus", "NIMBUS", "stratus", "nope"):
            for status in ("", "confirmed", "down"):
                for country in ("", "de", "US", "ZZ"):
                    expected = [
                        n.node_id.hex()
                        for n in nodes
                        if (not tier or n.tier.name.lower() == tier.lower())
                        and (not status or n.status.name.lower() == status)
                        and (not country or n.country == country.upper())
                    ]
                    got = all_pages(view, directory, tier, status, country)
                    assert got == expected, (SEED, tier, status, country)
        for endpoint in ("10.0.0.3:16127", "10.0.0.9:16127"):
            found = queries.search(view, directory, endpoint)["results"]
            expected = [n.node_id.hex() for n in nodes if n.endpoint == endpoint]
            assert [r["ref"] for r in found if r["kind"] == "node"] == expected
        assert queries.network_tiers(view, directory) == fresh_tiers(view)
        state = view.chain.state.committed_view()
        assert queries.network_stats(view, directory) == placement.network_stats(state)
        # The next head: a node goes down, another changes country.
        first, second = nodes[0], nodes[1]
        runner.set_status(first.node_id, NodeStatus.DOWN)
        runner.state.put(node_key(second.node_id), replace(second, country="JP"))
        cast(Chain, view.chain).next_block(
            Event(EventKind.NODE_DOWN, (first.node_id, 1, 1)),
            Event(EventKind.NODE_UPDATED, (second.node_id,)),
        )
    shown = queries.nodes(view, directory, "", "down", "", "")["nodes"]
    assert any(n["node_id"] == nodes[0].node_id.hex() for n in shown)


def test_api24_a_bad_page_cursor_is_a_bad_request(tmp_path: Path) -> None:
    async def run() -> None:
        async with api(tmp_path) as (client, _service, _b):
            for after in ("zz", "a" * 41):
                answer = await client.get(f"/nodes?after={after}")
                assert answer.status == 400
                assert (await answer.json())["error"]["reason"] == "bad_field"
            body = await (await client.get("/nodes")).json()
            assert body["next"] is None and len(body["nodes"]) == 4

    asyncio.run(run())


def test_api24_one_walk_of_the_node_table_per_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many of these reads come at one head, the node table is walked once."""
    walks: list[int] = []
    items = State.items

    def counted(self: State, prefix: bytes) -> Any:
        if prefix == NODE:
            walks.append(1)
        return items(self, prefix)

    monkeypatch.setattr(State, "items", counted)

    async def run() -> None:
        async with api(tmp_path) as (client, _service, _b):
            walks.clear()  # the chain reads its state when it opens
            paths = ["/network/tiers", "/network/stats", "/nodes?country=DE", "/search?q=a:1"]
            for path in paths * 3:
                assert (await client.get(path)).status == 200
            assert len(walks) == 1, f"{len(walks)} walks of the node table at one head"

    asyncio.run(run())


def test_api24_the_index_holds_one_head() -> None:
    """Bounded: the previous head's answers go when the next head's are built, and the
    renderings kept are at most one per node."""
    _runner, view = network(20)
    directory = Directory()
    first = directory.at(view.chain)
    queries.nodes(view, directory, "", "", "", "")
    chain = cast(Chain, view.chain)
    chain.height += 1
    second = directory.at(view.chain)
    assert second is not first and directory.at(view.chain) is second
    queries.nodes(view, directory, "", "", "", "")
    assert len(second.rendered) == 20


def test_fix24api_a_block_that_changes_no_indexed_field_keeps_the_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Payouts write node records every block: the index is carried over such blocks (no
    walk), and a /nodes page still shows each node's current record; a block with a node
    event, or a head the index cannot follow, is built afresh, equal to a fresh walk."""
    runner, view = network(30)
    chain = cast(Chain, view.chain)
    directory = Directory()
    walks: list[int] = []
    items = State.items

    def counted(self: State, prefix: bytes) -> Any:
        if prefix == NODE:
            walks.append(1)
        return items(self, prefix)

    def tiers_as_a_fresh_walk() -> None:
        expected = fresh_tiers(view)  # before the index's walk is counted
        monkeypatch.setattr(State, "items", counted)
        assert queries.network_tiers(view, directory) == expected
        monkeypatch.setattr(State, "items", items)

    tiers_as_a_fresh_walk()
    monkeypatch.setattr(State, "items", counted)
    all_pages(view, directory, "", "", "")  # the filters' part: the same walk
    monkeypatch.setattr(State, "items", items)
    assert len(walks) == 1
    paid = walked(view)[0]
    runner.state.put(node_key(paid.node_id), replace(paid, paid_total=paid.paid_total + 7))
    chain.next_block(Event(EventKind.PAID, (paid.owner, 7, 2, paid.node_id)))
    tiers_as_a_fresh_walk()
    monkeypatch.setattr(State, "items", counted)
    shown = queries.nodes(view, directory, "", "", "", "")["nodes"]
    monkeypatch.setattr(State, "items", items)
    assert [n["paid_total"] for n in shown if n["node_id"] == paid.node_id.hex()] == [
        paid.paid_total + 7
    ]
    assert len(walks) == 1, "a block of payouts only walked the node table again"
    moved = walked(view)[1]
    runner.state.put(node_key(moved.node_id), replace(moved, endpoint="10.0.0.9:16127"))
    chain.next_block(Event(EventKind.NODE_UPDATED, (moved.node_id,)))
    found = queries.search(view, directory, "10.0.0.9:16127")["results"]
    assert [r["ref"] for r in found if r["kind"] == "node"] == [moved.node_id.hex()]
    tiers_as_a_fresh_walk()
    chain.hashes.clear()  # the block indexed is no longer known: built afresh
    chain.next_block()
    walks.clear()
    tiers_as_a_fresh_walk()
    assert len(walks) == 1


def test_a_node_whose_rank_key_arrives_at_an_epoch_start_is_counted_in_the_tiers() -> None:
    """Late review of session 24: a node confirmed before its rank key gets its load
    record (placement.on_node_active, `nodes.process_rank_keys`) at an epoch's first
    block, which emits EPOCH_STARTED and no node or app event; the tiers part was carried
    over that block, so /network/tiers left the node's capacity out until some other
    event came (hours on a quiet network) while /network/stats counted it."""
    runner, view = network(12)
    chain = cast(Chain, view.chain)
    directory = Directory()
    newcomer = make_node(99, tier=Tier.CUMULUS, country="DE", status=NodeStatus.CONFIRMED)
    runner.state.put(node_key(newcomer.node_id), newcomer)  # confirmed, no rank key yet
    chain.next_block(Event(EventKind.NODE_CONFIRMED, (newcomer.node_id,)))
    assert queries.network_tiers(view, directory) == fresh_tiers(view)
    placement.on_node_active(runner.ctx, newcomer.node_id)  # its rank key, an epoch later
    chain.next_block(Event(EventKind.EPOCH_STARTED, (3, b"\x00" * 32)))
    assert queries.network_tiers(view, directory) == fresh_tiers(view), (
        "the tiers part was carried over an epoch's first block that made a node active"
    )
