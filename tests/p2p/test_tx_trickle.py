"""Trickled tx announcements and faster fetch retries (issue 22, wan23t).

A node that took txs from a peer announces their ids at once to `tx_announce_fanout`
random peers only, and to each other peer at that peer's next trickle time, leaving out
then the ids it announced to us meanwhile and the txs no longer in the mempool. A tx
still crosses a sparse network in a bounded time. After a first announcer failed to
deliver, the next ones are asked `tx_fetch_retry_after` apart, not a whole timeout
apart, and each announcer still at most once per id."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack
from p2p.messages import GetTxs, Gossip, Kind, TxBodies, TxIds
from p2p.network import Network
from p2p.tx_fetch import TRICKLE_MAX_FACTOR
from tests.p2p.harness import (
    CHAIN_ID,
    GENESIS_HASH,
    RawPeer,
    accepted_raw_peer,
    cluster,
    run,
)
from tests.p2p.test_tx_relay_by_id import (
    IDS,
    TXS,
    PoolHost,
    _counts,
    _link,
    _node,
    _pool,
    _start,
)
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


@contextlib.asynccontextmanager
async def _pushed_with_two_more_peers(
    network: Network, host: PoolHost
) -> AsyncIterator[tuple[RawPeer, RawPeer]]:
    """Three raw peers of the node: the first, their origin, pushes TXS[:3] to it; the
    other two, once the node holds the txs."""
    peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
    async with (
        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as origin,
        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p1,
        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p2,
    ):
        await origin.send(Gossip(Kind.TXS, pack(TXS[:3])))
        await wait_until_async(lambda: IDS[2] in host.pool, what="the pushed txs")
        yield p1, p2


def test_a_trickled_tx_crosses_a_line_of_five_nodes_in_bounded_time() -> None:
    """a-b-c-d-e in a line, and no node announces anything at once (fanout 0): every
    announcement waits for its peer's trickle. a pushes the tx to b; c, d and e each
    learn it at their neighbour's trickle and fetch it. The far end has it within three
    trickles at their longest, plus a fetch each."""

    async def scenario() -> None:
        interval = 0.2
        async with cluster() as nodes:
            a, b, c, d, e = await _start(
                nodes, 5, tx_announce_fanout=0, tx_trickle_interval=interval
            )
            await _link([(b, a), (c, b), (d, c), (e, d)])
            host = a.host
            assert isinstance(host, PoolHost)
            loop = asyncio.get_running_loop()
            start = loop.time()
            host.submit([TXS[0]])
            # Three trickled hops, each at most the longest trickle, two batching windows
            # (the request, the announcement) and a loopback round trip; 1 s of slack.
            hop = TRICKLE_MAX_FACTOR * interval + 2 * 0.1
            bound = 3 * hop + 1.0
            await wait_until_async(
                lambda: IDS[0] in _pool(e), timeout=bound, what="the tx at the far end"
            )
            print(f"far end after {loop.time() - start:.2f} s (bound {bound:.2f} s)")
            for node in (c, d, e):
                assert _counts(node, "received").get("TX_BODIES", 0) >= 1

    run(scenario)


def test_trickled_announcements_leave_out_ids_the_peer_announced_meanwhile_or_committed() -> None:
    """Three txs pushed to a node by their origin; no peer hears of them at once (fanout
    0). Before the trickle, p1 announces one of them to the node (it holds it: the node
    now knows), and another is committed (no longer in the mempool). At its trickle, p1
    hears only of the third; p2, which announced nothing, of the first and the third,
    each in one TX_IDS frame."""

    async def scenario() -> None:
        network, host = await _node(tx_announce_fanout=0, tx_trickle_interval=2.0)
        try:
            async with _pushed_with_two_more_peers(network, host) as (p1, p2):
                # The earliest trickle is 1 s after the push (half the interval).
                await p1.send(TxIds(IDS[0]))
                host.committed.add(IDS[1])
                heard_p1 = await p1.receive_kind(TxIds, timeout=8.0)
                heard_p2 = await p2.receive_kind(TxIds, timeout=8.0)
                assert heard_p1.ids() == [IDS[2]]
                assert heard_p2.ids() == [IDS[0], IDS[2]]
        finally:
            await network.stop()

    run(scenario, timeout=30.0)


def test_the_fast_wave_leaves_out_ids_the_peer_announced_within_the_window() -> None:
    """Three txs pushed to a node by their origin; p1 and p2 are the fast peers (fanout
    2). Within the batching window p1 announces two of them to the node (on a full mesh
    it had the origin's push too): at the window's end p1 hears only of the third, p2 of
    all three, each in one TX_IDS frame (on main both heard of all three: a frame of ids
    that were news to nobody)."""

    async def scenario() -> None:
        network, host = await _node(tx_announce_wait=1.0, tx_trickle_interval=60.0)
        try:
            async with _pushed_with_two_more_peers(network, host) as (p1, p2):
                await p1.send(TxIds(IDS[0] + IDS[1]))
                known = network._tx_fetch._state[p1.id].known
                await wait_until_async(
                    lambda: IDS[0] in known and IDS[1] in known, what="p1's announcement"
                )
                assert network.frame_counts()["sent"].get("TX_IDS", 0) == 0  # window open
                heard_p1 = await p1.receive_kind(TxIds, timeout=5.0)
                heard_p2 = await p2.receive_kind(TxIds, timeout=5.0)
                assert heard_p1.ids() == [IDS[2]]
                assert heard_p2.ids() == IDS[:3]
        finally:
            await network.stop()

    run(scenario, timeout=30.0)


def test_a_dense_mesh_announces_a_tx_at_once_to_two_peers_only() -> None:
    """A node with six peers takes a tx from one of them: two of the other five hear of
    it in the next window, the other three wait for their trickle (here a minute away)."""

    async def scenario() -> None:
        network, host = await _node(tx_trickle_interval=60.0)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with contextlib.AsyncExitStack() as stack:
                raws = [
                    await stack.enter_async_context(
                        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers)
                    )
                    for _ in range(6)
                ]
                origin, others = raws[0], raws[1:]
                await origin.send(Gossip(Kind.TXS, pack([TXS[3]])))
                await wait_until_async(lambda: IDS[3] in host.pool, what="the pushed tx")
                fetcher = network._tx_fetch
                await wait_until_async(
                    lambda: network.frame_counts()["sent"].get("TX_IDS", 0) == 2,
                    what="the fast announcements sent",
                )
                waiting = [p for p in others if IDS[3] in fetcher._state[p.id].trickle]
                assert len(waiting) == 3
                for peer in others:
                    if peer not in waiting:
                        assert (await peer.receive_kind(TxIds)).ids() == [IDS[3]]
        finally:
            await network.stop()

    run(scenario)


async def _announced_first(peer: RawPeer, tx_id: bytes, marker: bytes) -> int:
    """`peer` announces `tx_id`, then `marker`; once it is asked for the marker (frames of
    a link are handled in order: its announcement is in), how many requests named `tx_id`.
    A marker's request not naming `tx_id` is answered "not held" (free), so that only
    `tx_id` is left unanswered (a peer whose request expired is late, and asked after the
    others)."""
    await peer.send(TxIds(tx_id))
    await peer.send(TxIds(marker))
    count = 0
    while True:
        request = await peer.receive_kind(GetTxs)
        count += tx_id in request.ids()
        if marker in request.ids():
            if tx_id not in request.ids():
                await peer.send(TxBodies(request.request_id, ()))
            return count


async def _requests_for(peer: RawPeer, tx_id: bytes, quiet: float) -> int:
    """How many of the GET_TXS frames `peer` gets until `quiet` seconds pass without one
    name `tx_id`."""
    count = 0
    with contextlib.suppress(TimeoutError):
        while True:
            request = await peer.receive_kind(GetTxs, timeout=quiet)
            count += tx_id in request.ids()
    return count


def test_silent_announcers_delay_a_tx_far_less_than_a_timeout_each() -> None:
    """Eight attacker peers announce a tx first and never answer; an honest peer
    announces it next. Before, each silent announcer cost a whole `tx_fetch_timeout`
    (1 s), so the honest peer was asked ~8 s later; now the first costs a timeout and
    each next one `tx_fetch_retry_after` (0.25 s): the honest peer is asked within half
    of nine timeouts. No attacker is asked for the tx twice."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=1.0, tx_fetch_retry_after=0.25)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with contextlib.AsyncExitStack() as stack:
                liars = [
                    await stack.enter_async_context(
                        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers)
                    )
                    for _ in range(8)
                ]
                honest = await stack.enter_async_context(
                    accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers)
                )
                asked = [
                    await _announced_first(liar, IDS[4], sha256(b"marker-%d" % index))
                    for index, liar in enumerate(liars)
                ]
                assert asked == [1] + [0] * 7  # the first announcer is asked first
                loop = asyncio.get_running_loop()
                start = loop.time()
                await honest.send(TxIds(IDS[4]))
                request = await honest.receive_kind(GetTxs, timeout=9 * 1.0 / 2)
                took = loop.time() - start
                print(f"honest announcer asked after {took:.2f} s")
                assert request.ids() == [IDS[4]]
                await honest.send(TxBodies(request.request_id, (TXS[4],)))
                await wait_until_async(lambda: IDS[4] in host.pool, what="the tx fetched")
                later = await asyncio.gather(
                    *(_requests_for(liar, IDS[4], quiet=0.5) for liar in liars)
                )
                assert [a + b for a, b in zip(asked, later, strict=True)] == [1] * 8
        finally:
            await network.stop()

    run(scenario, timeout=30.0)
