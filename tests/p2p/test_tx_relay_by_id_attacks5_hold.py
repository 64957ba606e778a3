"""Defences of tx relay by id and scoring checked in rev14b's review that held: a late
answer is forgiven once and never below zero (a second copy is unsolicited), and
LeftScores keeps its heap bounded and its highest keys under churn of throwaway keys."""

from __future__ import annotations

import random

import pytest

from p2p.limits import POINTS_UNDELIVERED_TX, POINTS_UNSOLICITED, LeftScores
from p2p.messages import GetTxs, TxBodies, TxIds
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, _node, _score
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_a_late_answer_is_forgiven_once_and_never_below_zero() -> None:
    """A peer leaves a request for one tx unanswered (0.01 points), then sends the late
    answer three times: the first takes the 0.01 back (to 0, not below), the other two
    are unsolicited (20 points each), not forgiven again."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=0.3)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as peer:
                await peer.send(TxIds(IDS[1]))
                request = await peer.receive_kind(GetTxs)
                await wait_until_async(
                    lambda: _score(network, peer) == pytest.approx(POINTS_UNDELIVERED_TX),
                    what="the request expired and scored",
                )
                for _ in range(3):
                    await peer.send(TxBodies(request.request_id, (TXS[1],)))
                await wait_until_async(
                    lambda: _score(network, peer) >= 2 * POINTS_UNSOLICITED,
                    what="the copies after the first scored",
                )
                assert _score(network, peer) == pytest.approx(2 * POINTS_UNSOLICITED)
                assert IDS[1] in host.pool
        finally:
            await network.stop()

    run(scenario)


def test_left_scores_keep_a_bounded_heap_and_their_highest_keys_under_churn() -> None:
    """A key worth 90 points, then 200,000 stores of throwaway keys (a few points each)
    and of keys given back some of their points (`take_back`): the heap never grows past twice
    the capacity, the 90-point key is never forgotten, and no key goes below zero."""
    seed = 14
    rng = random.Random(seed)
    capacity = 256
    scores = LeftScores(decay_per_second=0.0, capacity=capacity)
    scores.remember("key:victim", 90.0, 0.0)
    for step in range(200_000):
        now = step * 0.001
        key = f"key:{rng.randrange(4 * capacity)}"
        if rng.random() < 0.3:
            scores.take_back(key, rng.uniform(0, 10), now)
        else:
            scores.remember(key, rng.uniform(0.01, 5), now)  # never past 5
        assert len(scores._heap) <= 2 * capacity + 16, f"seed {seed}"
    assert scores.recall("key:victim", 200.0) == 90.0, f"seed {seed}"
    assert len(scores._points) <= capacity, f"seed {seed}"
    assert all(p > 0 for p, _, _ in scores._points.values()), f"seed {seed}"
