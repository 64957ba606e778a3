"""Gossip: a message broadcast anywhere reaches every node's host exactly once, whatever
the topology, and an invalid one stops at the first honest node."""

from __future__ import annotations

import pytest

from p2p.errors import P2PError, PeerReason
from p2p.messages import Kind
from tests.p2p.harness import Cluster, Node, cluster, fast_limits, run
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


async def connect_all(links: list[tuple[Node, Node]]) -> None:
    for dialer, listener in links:
        await dialer.network.connect(listener.address)
    await wait_until_async(
        lambda: all(dialer.id in listener.peer_ids() for dialer, listener in links),
        what="links established",
    )


async def start(nodes: Cluster, count: int, *, own_links_only: bool = False) -> list[Node]:
    """`count` nodes; `own_links_only`: nodes that neither dial nor exchange peers, so the
    topology stays the one the test links (else they mesh within a second, and a link one
    end replaces as a duplicate loses the gossip queued on it)."""
    limits = fast_limits(max_outbound=0, pex_interval=3600.0) if own_links_only else None
    return [await nodes.add(limits=limits) for _ in range(count)]


def delivered(node: Node, payload: bytes) -> int:
    return node.host.payloads().count(payload)


async def assert_everyone_got_it_once(origin: Node, others: list[Node], payload: bytes) -> None:
    await wait_until_async(
        lambda: all(delivered(node, payload) >= 1 for node in others), what="gossip everywhere"
    )
    # Let echoes travel: broadcast a marker from the same origin and wait for it too;
    # frames of one link arrive in order, so every echo of the payload is in by then.
    marker = payload + b"/marker"
    origin.network.broadcast(Kind.TX, marker)
    await wait_until_async(
        lambda: all(delivered(node, marker) >= 1 for node in others), what="marker everywhere"
    )
    for node in others:
        assert delivered(node, payload) == 1, f"{node.id[:8]} saw it {delivered(node, payload)}x"
    # The origin's own host is never handed its own message back.
    assert delivered(origin, payload) == 0


def test_a_tx_crosses_a_line_of_four_once() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a, b, c, d = await start(nodes, 4, own_links_only=True)
            await connect_all([(b, a), (c, b), (d, c)])
            assert a.network.broadcast(Kind.TX, b"tx-1") == 1
            await assert_everyone_got_it_once(a, [b, c, d], b"tx-1")
            # And from the other end, for another kind.
            d.network.broadcast(Kind.VOTE, b"vote-1")
            await wait_until_async(
                lambda: b"vote-1" in a.host.payloads(Kind.VOTE), what="vote at a"
            )
            assert [n.host.payloads(Kind.VOTE).count(b"vote-1") for n in (a, b, c)] == [1, 1, 1]

    run(scenario)


def test_a_tx_crosses_a_ring_with_chords_once() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a, b, c, d = await start(nodes, 4, own_links_only=True)
            # A ring a-b-c-d-a plus the chord a-c: every message has several paths.
            await connect_all([(a, b), (b, c), (c, d), (d, a), (a, c)])
            for index in range(20):
                nodes.nodes[index % 4].network.broadcast(Kind.TX, b"ring-%d" % index)
            for index in range(20):
                origin = nodes.nodes[index % 4]
                others = [n for n in nodes.nodes if n is not origin]
                await assert_everyone_got_it_once(origin, others, b"ring-%d" % index)

    run(scenario)


def test_an_invalid_message_is_not_relayed_and_its_sender_is_banned() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a, b, c = await start(nodes, 3)
            await connect_all([(b, a), (c, b)])
            b.host.invalid.add(b"forged")
            a.network.broadcast(Kind.TX, b"forged")
            # b's host punishes a (100 points: a bad signature) and does not relay.
            await wait_until_async(lambda: a.id not in b.peer_ids(), what="b drops a")
            assert (a.id, "punished") in b.host.disconnected
            assert delivered(c, b"forged") == 0
            # b still relays honest traffic from c's side.
            c.network.broadcast(Kind.TX, b"honest")
            await wait_until_async(lambda: delivered(b, b"honest") == 1, what="b still serves c")
            # a is banned: its reconnection is refused.
            with pytest.raises(P2PError) as caught:
                await a.network.connect(b.address)
            assert caught.value.reason is PeerReason.BANNED

    run(scenario)


def test_status_heights_rank_peers() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            hub = await nodes.add()
            low, high = await start(nodes, 2)
            high.host.blocks = [(b"block-%d" % h, b"commit") for h in range(1, 6)]
            low.host.blocks = high.host.blocks[:2]
            await connect_all([(low, hub), (high, hub)])
            high.network.update_status()
            await wait_until_async(
                lambda: [p.height for p in hub.network.best_peers_by_height()] == [5, 2],
                what="heights from STATUS",
            )
            best = hub.network.best_peers_by_height()[0]
            assert best.peer_id == high.id and best.head_hash == high.host.status()[1]

    run(scenario)
