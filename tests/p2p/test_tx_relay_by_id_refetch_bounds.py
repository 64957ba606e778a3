"""Bounds on the refetch of refused txs (fix15d, from rev15c's review): refetches count
against `max_tx_fetching`, and one flush starts at most REFETCH_PER_FLUSH of them. Each
test fails on wt/rev15c."""

from __future__ import annotations

import pytest

import p2p.tx_fetch
from fluxchain.core.crypto import sha256
from p2p.messages import GetTxs, TxBodies, TxIds
from tests.p2p.harness import run
from tests.p2p.test_tx_relay_by_id import IDS, TXS
from tests.p2p.test_tx_relay_by_id_refused_refetch import (
    _admitted,
    _end_cool_down,
    _full_node,
    _Holder,
    _refused,
)
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_a_refetch_waits_for_room_under_max_tx_fetching() -> None:
    """A refused tx's holder announces it during its cool-down; at its end the node's
    fetches fill `max_tx_fetching` (two silent announcers). The refetch must wait for room
    (on wt/rev15c: asked at once, past the bound), then get the tx in."""

    # A cool-down long enough for a loaded machine to set the scene on the real clock,
    # ended by the test (ClockLoop); the silent announcers' requests outlast it, so the
    # bound is still full when it ends. No heartbeat falls due in the skips.
    cooldown, silence = 30.0, 60.0

    async def scenario() -> None:
        loop = clock_loop()
        limits: dict[str, object] = {
            "tx_refused_cooldown": cooldown,
            "max_tx_fetching": 2,
            "tx_fetch_timeout": silence,
            "heartbeat": 3600.0,
        }
        async with _full_node(4, **limits) as (host, network, peers, stack):
            deliverer, holding, *silent = peers
            await _refused(host, network, deliverer)
            holder = await stack.enter_async_context(_Holder(holding, {IDS[0]: TXS[0]}))
            await holder.announce(IDS[0], b"holder")
            for index, peer in enumerate(silent):  # announce, never answer
                await peer.send(TxIds(sha256(b"silent-%d" % index)))
            fetcher = network._tx_fetch
            await wait_until_async(lambda: fetcher.fetching() == 2, what="the bound full")
            host.room = True
            await _end_cool_down(network, IDS[0])
            assert fetcher.fetching() <= 2 and IDS[0] not in holder.asked, (
                f"refetched while {fetcher.fetching()} fetches of 2 were open, or asked at once"
            )
            loop.skip(silence)  # the silent announcers' requests time out: room frees
            await _admitted(host, IDS[0], 5.0, "the refused tx refetched once room freed")
            assert holder.sent == 1

    run(scenario, cooldown + silence + 20.0, clock=True)


def test_one_flush_starts_at_most_refetch_per_flush_refetches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three txs refused at once, held by one peer that announced them during their
    cool-down, with REFETCH_PER_FLUSH 2: the flush at the cool-down's end starts two
    refetches, the next one the third (on wt/rev15c: all due refetches in one flush), and
    all three get in."""
    monkeypatch.setattr(p2p.tx_fetch, "REFETCH_PER_FLUSH", 2, raising=False)

    # A cool-down long enough for a loaded machine to announce all three in it, ended by
    # the test (ClockLoop); no heartbeat falls due in the skip.
    cooldown = 30.0

    async def scenario() -> None:
        loop = clock_loop()
        txs, ids = TXS[:3], IDS[:3]
        limits: dict[str, object] = {"tx_refused_cooldown": cooldown, "heartbeat": 3600.0}
        async with _full_node(2, **limits) as (host, network, peers, stack):
            deliverer, holding = peers
            await deliverer.send(TxIds(b"".join(ids)))
            request = await deliverer.receive_kind(GetTxs)
            await deliverer.send(TxBodies(request.request_id, tuple(txs)))
            await wait_until_async(lambda: host.checked == 3, what="three txs refused")
            fetcher = network._tx_fetch
            holder = await stack.enter_async_context(
                _Holder(holding, dict(zip(ids, txs, strict=True)))
            )
            for index, tx_id in enumerate(ids):
                await holder.announce(tx_id, b"holder-%d" % index)
            host.room = True
            started: list[int] = []
            refetch = fetcher._refetch_refused

            def counted(now: float) -> None:
                before = fetcher.fetching()
                refetch(now)
                started.append(fetcher.fetching() - before)

            fetcher._refetch_refused = counted  # type: ignore[method-assign]
            # A fetch still open when the clock skips would time out: none is.
            await wait_until_async(
                lambda: fetcher.fetching() == 0, what="the markers' fetches over"
            )
            until = fetcher._refused[ids[0]].until  # one refusal: the three's end
            assert loop.time() < until, "announced after the cool-down"
            loop.skip_to(until)
            await wait_until_async(
                lambda: all(tx_id in host.pool for tx_id in ids), what="all three refetched"
            )
            assert max(started) == 2, f"refetches started by each flush: {started}"

    run(scenario, cooldown + 20.0, clock=True)
