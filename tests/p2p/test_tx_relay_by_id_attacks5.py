"""Review of tx relay by id and peer scoring (rev14b), after fix14c: forgiveness of late
answers outlives the points it forgives, so a peer banks decayed `undelivered` points and
spends them on other faults; a first announcer that answers every request just after its
deadline is forgiven every time, so it delays each tx it announces first by a whole
`tx_fetch_timeout` for ever, at no cost; and an expired request stops counting as open,
so an honest peer on a slow link is asked faster than it can answer and banned for the
answers still on their way. Each test states what a user or operator would check and
fails on wt/integ14."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from p2p.limits import POINTS_UNDELIVERED_TX, POINTS_UNSOLICITED
from p2p.messages import MAX_TXS_PER_FETCH, GetTxs, TxBodies, TxIds
from p2p.network import Network
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, RawPeer, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import TXS, PoolHost, _limits, _node, _score
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _peer_ids
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


async def _decaying_node(decay: float, **limits: object) -> tuple[Network, PoolHost]:
    """A started Network whose peers' points decay at `decay` a second."""
    host = PoolHost()
    network = Network(
        host,
        SigningKey.generate(),
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS_HASH,
        limits=_limits(score_decay_per_second=decay, **limits),
        tx_pool=host,
    )
    host.network = network
    await network.start()
    return network, host


def _spawn(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
    """Run `work` as a task kept in `tasks` until it ends (cancelled at the test's end)."""
    task = asyncio.get_running_loop().create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def test_forgiveness_outlives_the_points_it_forgives_and_pays_for_other_faults() -> None:
    """An attacker announces 8,192 txs of its own and answers none of the 8 requests:
    each expiry scores it 10.24 `undelivered` points, which decay like any others (here
    at 20 a second; in production at 1 a minute, so an attacker spacing expiries an hour
    apart banks EXPIRED_KEPT=64 of them, 655 points, in a day). With its score back at 0,
    it sends 8 answers nobody asked for (20 points each, 160 in a fraction of a second)
    and, between them, the 8 late answers: each late answer takes back its 10.24 points
    (`Network.forgive`, `Score.take_back`) though they decayed away long ago, so they
    take back the unsolicited answers' points instead, and the peer is never banned.
    What an operator sees: a peer committing 160 points of faults within a second stays
    connected; the ban threshold is `ban_threshold` plus whatever it banked. Fix
    direction: forgive at most what is left of the request's own charge (remember the
    points and time of each expired request and decay them as the score does), or keep
    an expired request for forgiveness only a few `tx_fetch_timeout`s."""

    async def scenario() -> None:
        decay = 20.0
        network, _ = await _decaying_node(decay, tx_fetch_timeout=0.3)
        own = [b"banked-%05d " % i * 3 for i in range(8 * MAX_TXS_PER_FETCH)]
        bodies = {sha256(tx): tx for tx in own}
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as attacker:
                ids = list(bodies)
                for start in range(0, len(ids), 4096):
                    await attacker.send(TxIds(b"".join(ids[start : start + 4096])))
                requests: list[GetTxs] = []
                asked = 0
                while asked < len(ids):
                    request = await attacker.receive_kind(GetTxs, timeout=5.0)
                    requests.append(request)
                    asked += len(request.ids())
                # The last expiry scored it, and its points decayed back to nothing.
                fetcher = network._tx_fetch
                await wait_until_async(
                    lambda: not fetcher._state[attacker.id].requests, what="all expired"
                )
                await wait_until_async(lambda: _score(network, attacker) == 0, what="decayed")
                for index in range(4):
                    await attacker.send(TxBodies(900 + index, (TXS[5],)))
                for request in requests:
                    late = tuple(bodies[tx_id] for tx_id in request.ids())
                    await attacker.send(TxBodies(request.request_id, late))
                for index in range(4, 8):
                    await attacker.send(TxBodies(900 + index, (TXS[5],)))
                charged = POINTS_UNDELIVERED_TX * len(ids)
                with contextlib.suppress(AssertionError):
                    await wait_until_async(
                        lambda: attacker.id not in _peer_ids(network),
                        timeout=3.0,
                        what="the attacker banned",
                    )
                assert attacker.id not in _peer_ids(network), (
                    f"8 unsolicited answers ({8 * POINTS_UNSOLICITED} points in a burst) "
                    f"left the peer connected at {_score(network, attacker):.1f} points: "
                    f"its late answers took back {charged:.1f} points that had decayed "
                    "long before"
                )
        finally:
            await network.stop()

    run(scenario)


async def delays_after_the_honest_announcement(
    network: Network, host: PoolHost, tx_ids: list[bytes], first: RawPeer, honest: RawPeer
) -> list[float]:
    """For each of `tx_ids` in turn: `first` announces it (and the node takes it up), then
    `honest` does; how long after that the tx reached the host, in seconds."""
    loop = asyncio.get_running_loop()
    fetcher = network._tx_fetch
    delays = []
    for tx_id in tx_ids:
        await first.send(TxIds(tx_id))
        await wait_until_async(
            lambda tx_id=tx_id: tx_id in fetcher._fetching,  # type: ignore[misc]
            what="the first announcement taken",
        )
        await honest.send(TxIds(tx_id))
        start = loop.time()
        await wait_until_async(
            lambda tx_id=tx_id: tx_id in host.pool,  # type: ignore[misc]
            timeout=5.0,
            what="the tx fetched",
        )
        delays.append(round(loop.time() - start, 2))
    return delays


def test_a_first_announcer_that_always_answers_late_delays_every_tx_for_free() -> None:
    """An attacker front-runs an honest peer: it announces each new tx the moment it
    hears of it (before the honest holder, whose announcement follows), and answers each
    request with the body just after `tx_fetch_timeout`. Until rev14a each late request
    cost it 0.01 a tx (banned after 10,000); now each late answer takes its points back,
    so it is never scored, and it stays the first one asked for the next tx: every tx
    reaches the node a whole timeout (plus the expiry sweep) after the honest peer
    announced it, round after round. The same holds for a peer that stops reading its
    link: a request still in our send queue at its deadline is not charged at all. What
    a user sees: every tx takes more than a second longer per hop where such a peer
    announces first, for ever. Fix direction: lateness should cost the late peer, not
    the tx: a peer whose answer came late (or whose request was still queued at its
    deadline) is asked after the other announcers (as a hedge, after
    `tx_fetch_retry_after`) for a while, or keeps part of its `undelivered` points."""

    async def scenario() -> None:
        timeout = 1.0
        network, host = await _node(tx_fetch_timeout=timeout)
        txs = [b"front-run-%d " % i * 20 for i in range(5)]
        pool = {sha256(tx): tx for tx in txs}
        tasks: set[asyncio.Task[None]] = set()
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            address = network.listen_address
            async with (
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as attacker,
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as honest,
            ):

                async def late(request: GetTxs) -> None:
                    await asyncio.sleep(timeout + 0.35)  # the attacker's chosen lateness
                    bodies = tuple(pool[t] for t in request.ids() if t in pool)
                    with contextlib.suppress(Exception):
                        await attacker.send(TxBodies(request.request_id, bodies))

                async def serve_late() -> None:
                    with contextlib.suppress(Exception):  # the link closing at the end
                        while True:
                            request = await attacker.receive_kind(GetTxs, timeout=30.0)
                            _spawn(tasks, late(request))

                async def serve_at_once() -> None:
                    with contextlib.suppress(Exception):
                        while True:
                            request = await honest.receive_kind(GetTxs, timeout=30.0)
                            bodies = tuple(pool[t] for t in request.ids() if t in pool)
                            await honest.send(TxBodies(request.request_id, bodies))

                for serve in (serve_late, serve_at_once):
                    _spawn(tasks, serve())
                delays = await delays_after_the_honest_announcement(
                    network, host, list(pool), attacker, honest
                )
                assert attacker.id in _peer_ids(network)
                score = _score(network, attacker)
                assert max(delays[2:]) < timeout / 2, (
                    f"after {len(delays)} late answers the late peer (score {score}) is still "
                    f"asked first: each tx came this long after the honest announcement: "
                    f"{delays} s"
                )
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await network.stop()

    run(scenario)


def test_an_honest_peer_whose_link_carries_one_answer_at_a_time_is_banned() -> None:
    """An honest peer announces 14,336 txs and answers every request in turn, as fast as
    its link carries them: one answer a second (a 1 MB answer of 1,024 1 KB txs takes
    4 s at 2 Mbit/s; here the timeout is 0.3 s instead of 1 s). Each answer comes after
    its request's deadline, and is forgiven when it comes (rev14a); but an expired
    request no longer counts as open, so the node asks the peer two more requests each
    expiry sweep, faster than the link can answer them: the answers still on their way
    grow without bound, each 10.24 points until it lands, and the peer is banned within
    seconds for txs it was delivering. What an operator sees: an honest peer on a slow
    link banned for "announced txs not delivered" though every answer arrived. Fix
    direction: a request that expired unanswered still holds its place (its answer's
    reserve) until answered or kept no longer (EXPIRED_KEPT), so the node asks a slow
    peer no faster than it answers; or score only what is never answered."""

    async def scenario() -> None:
        timeout, per_answer = 0.3, 1.0
        network, host = await _node(tx_fetch_timeout=timeout)
        txs = [b"narrow-link-%05d " % i * 4 for i in range(14 * MAX_TXS_PER_FETCH)]
        pool = {sha256(tx): tx for tx in txs}
        ids = list(pool)
        tasks: set[asyncio.Task[None]] = set()
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as slow:
                for start in range(0, len(ids), 4096):
                    await slow.send(TxIds(b"".join(ids[start : start + 4096])))
                asked: asyncio.Queue[GetTxs] = asyncio.Queue()

                async def read() -> None:
                    with contextlib.suppress(Exception):  # the link closing at the end
                        while True:
                            asked.put_nowait(await slow.receive_kind(GetTxs, timeout=30.0))

                async def answer_in_turn() -> None:
                    with contextlib.suppress(Exception):
                        while True:
                            request = await asked.get()
                            await asyncio.sleep(per_answer)  # the link carrying the last one
                            bodies = tuple(pool[t] for t in request.ids() if t in pool)
                            await slow.send(TxBodies(request.request_id, bodies))

                for work in (read, answer_in_turn):
                    _spawn(tasks, work())
                # Six answers' time: on wt/integ14 it is banned within three.
                with contextlib.suppress(AssertionError):
                    await wait_until_async(
                        lambda: slow.id not in _peer_ids(network),
                        timeout=6 * per_answer,
                        what="the slow peer dropped",
                    )
                delivered = sum(tx_id in host.pool for tx_id in ids)
                assert slow.id in _peer_ids(network), (
                    f"the peer answering each request in turn was banned after delivering "
                    f"{delivered} of its {len(ids)} txs ({asked.qsize()} requests still "
                    "waiting at its end)"
                )
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await network.stop()

    run(scenario)
