"""Brief api25 3: the directory's index was rebuilt by a walk of the node table after
every head that changed an indexed field (~150 ms at 10,000 nodes; nearly every block
pays or moves some node). It is now updated from the blocks' events. Node-local, but it
must equal a fresh build: random blocks of a test chain are applied, and after each the
index kept (with a random set of its parts asked for) equals one built afresh, and it
never walked the node table again unless the blocks since could not be read."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, cast

import pytest

from fluxchain.api import directory as directory_module
from fluxchain.api.directory import Directory
from fluxchain.api.view import ChainReader
from fluxchain.core import placement
from fluxchain.core.events import Event, EventKind
from fluxchain.core.params import Tier
from fluxchain.core.placement.records import load_key
from fluxchain.core.records import NODE, Node, NodeStatus, node_key
from fluxchain.core.state import State
from tests.api.test_api24_directory import COUNTRIES, Chain, network
from tests.support.state import StateRunner, make_node

PARTS = ("node_ids", "by_filter", "by_endpoint", "by_status", "tiers", "app_names")
SEEDS = range(6)
BLOCKS = 40


def random_block(rng: random.Random, runner: StateRunner, chain: Chain, serial: list[int]) -> None:
    """Writes a block's rules could make, each with the event its rule emits."""
    events: list[Event] = []
    for _ in range(rng.randrange(5)):
        nodes = [node for _, node in runner.state.items(NODE)]  # this block's writes too
        node: Node = rng.choice(nodes)
        op = rng.randrange(8)
        if op == 0:  # a status change (nodes.set_status), loads with it
            status = rng.choice([NodeStatus.CONFIRMED, NodeStatus.DOWN, NodeStatus.EXPIRED])
            runner.set_status(node.node_id, status)
            events.append(Event(EventKind.NODE_DOWN, (node.node_id, 1, 1)))
        elif op == 1:  # an update of country, endpoint or tier
            field: dict[str, Any] = rng.choice(
                [
                    {"country": rng.choice(COUNTRIES)},
                    {"endpoint": f"10.0.0.{rng.randrange(6)}:16127"},
                    {"tier": rng.choice(list(Tier))},
                ]
            )
            runner.state.put(node_key(node.node_id), replace(node, **field))
            events.append(Event(EventKind.NODE_UPDATED, (node.node_id,)))
        elif op == 2:  # a registration
            serial[0] += 1
            # Confirmed with no load record yet, some: its rank key comes at an epoch start.
            status = rng.choice([NodeStatus.CONFIRMED, NodeStatus.DOWN])
            new = make_node(
                serial[0], tier=rng.choice(list(Tier)), country=rng.choice(COUNTRIES), status=status
            )
            runner.state.put(node_key(new.node_id), new)
            events.append(Event(EventKind.NODE_REGISTERED, (new.node_id, new.owner, 1)))
        elif op == 3 and len(nodes) > 5:  # a release: the record and its load go
            if node.status is NodeStatus.CONFIRMED:
                placement.on_node_inactive(runner.ctx, node.node_id, "released")
            runner.state.delete(node_key(node.node_id))
            events.append(Event(EventKind.NODE_RELEASED, (node.node_id, 0)))
        else:
            events.append(load_write(runner, node, op))
    chain.next_block(*events)


def load_write(runner: StateRunner, node: Node, op: int) -> Event:
    """A payout, or a write of placement's (a load, a rank key), with its event."""
    load = placement.get_load(runner.state, node.node_id)
    if op == 4 or (op == 5 and load is None):  # a payout: no indexed field
        runner.state.put(node_key(node.node_id), replace(node, paid_total=node.paid_total + 1))
        return Event(EventKind.PAID, (node.owner, 1, 2, node.node_id))
    if op == 5 and load is not None:  # a placement on an active node changes its load
        runner.state.put(load_key(node.node_id), replace(load, cores=load.cores + 1))
        return Event(EventKind.ASSIGNED, ("app", node.node_id, 0))
    if op == 6:  # an epoch's first block: a confirmed node may get its rank key
        if node.status is NodeStatus.CONFIRMED and load is None:
            placement.on_node_active(runner.ctx, node.node_id)
        return Event(EventKind.EPOCH_STARTED, (3, b"\x00" * 32))
    if load is not None:  # an app event naming no node: loads may change anywhere
        runner.state.put(load_key(node.node_id), replace(load, ram_mb=load.ram_mb + 7))
    return Event(EventKind.APP_UPDATED, ("app", 0))


def parts(directory: Directory, chain: Chain, names: tuple[str, ...]) -> dict[str, Any]:
    head = directory.at(cast(ChainReader, chain))
    return {name: getattr(head, name) for name in names}


@pytest.mark.parametrize("seed", SEEDS)
def test_api25_the_index_kept_over_random_blocks_equals_a_fresh_build(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    runner, view = network(40)
    chain = cast(Chain, view.chain)
    directory = Directory()
    walks: list[int] = []
    items = State.items

    def counted(self: State, prefix: bytes) -> Any:
        if prefix == NODE:
            walks.append(1)
        return items(self, prefix)

    parts(directory, chain, PARTS)
    serial = [1_000]
    owed = False  # a walk since the index could not follow the chain (at the first ask)
    for block in range(BLOCKS):
        random_block(rng, runner, chain, serial)
        if rng.random() < 0.1:  # the block indexed is no longer known: built afresh
            chain.hashes.clear()
            chain.next_block()
            owed = True
        asked = tuple(rng.sample(PARTS, rng.randrange(len(PARTS) + 1)))
        monkeypatch.setattr(State, "items", counted)
        kept = parts(directory, chain, asked)
        monkeypatch.setattr(State, "items", items)
        assert len(walks) <= owed, (seed, block, "the node table was walked again")
        owed = owed and not walks
        walks.clear()
        assert kept == parts(Directory(), chain, asked), (seed, block, asked)
    assert parts(directory, chain, PARTS) == parts(Directory(), chain, PARTS), seed


def test_api25_a_block_that_moves_more_than_max_moves_nodes_is_built_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An update is bounded: past `MAX_MOVES` nodes named by the blocks' events, the
    parts are built afresh by one walk (cheaper than that many moves), equal to a fresh
    build."""
    monkeypatch.setattr(directory_module, "MAX_MOVES", 3)
    runner, view = network(20)
    chain = cast(Chain, view.chain)
    directory = Directory()
    parts(directory, chain, PARTS)
    walks: list[int] = []
    items = State.items

    def counted(self: State, prefix: bytes) -> Any:
        if prefix == NODE:
            walks.append(1)
        return items(self, prefix)

    for moved in (3, 4):
        nodes = [node for _, node in runner.state.items(NODE)][:moved]
        for node in nodes:
            runner.state.put(node_key(node.node_id), replace(node, country="JP"))
        chain.next_block(*(Event(EventKind.NODE_UPDATED, (n.node_id,)) for n in nodes))
        monkeypatch.setattr(State, "items", counted)
        kept = parts(directory, chain, PARTS)
        monkeypatch.setattr(State, "items", items)
        assert kept == parts(Directory(), chain, PARTS)
        assert len(walks) == (moved > 3), moved
        walks.clear()
