"""Review of the refetch of refused txs (rev15c, of fix15b/rev15a): attacks on the end of
a refused tx's cool-down. Each test fails on wt/integ15."""

from __future__ import annotations

import asyncio

import pytest

from fluxchain.core.crypto import sha256
from p2p.messages import GetTxs, TxBodies, TxIds
from tests.p2p.harness import RawPeer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS
from tests.p2p.test_tx_relay_by_id_refused_refetch import (
    COOLDOWN,
    COOLED,
    _admitted,
    _full_node,
    _Holder,
    _refused,
)
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_a_holder_announcing_after_each_cool_down_does_not_reset_the_back_off() -> None:
    """Attack (a busy honest network: a tx's holders hear of it at different times, hops
    and trickles apart; or two keys taking turns): a tx under a full mempool's floor is
    announced by one more holder just after each cool-down ends, never during one. Past
    its cool-down a refused record is dropped by the first announcement (`_refused_for`)
    and the new fetch starts at `refusals` 0, so each refusal is a first one again: the
    tx is downloaded and checked every `tx_refused_cooldown`, rev15a's back-off (and the
    docs' "each refusal in a row doubles the cool-down") never applies. What a user sees:
    at load, nodes re-check txs they refused as often as before rev15a. Fix direction:
    an announcement past the cool-down carries the record's count (and its announcers)
    into the fetch it starts, as `_refetch_from` does, instead of deleting the record."""

    # A cool-down long enough for a loaded machine to set the scene on the real clock;
    # the test moves the clock on to each holder's turn (ClockLoop), no fetch open across
    # a skip, and no heartbeat falls due in one.
    cooldown, spacing, holders_count = 30.0, 60.0, 7

    async def scenario() -> None:
        loop = clock_loop()
        limits: dict[str, object] = {
            "tx_refused_cooldown": cooldown,
            "tx_refused_cooldown_max": 1000.0,
            "heartbeat": 3600.0,
        }
        async with _full_node(1 + holders_count, **limits) as (host, network, peers, stack):
            deliverer, *holding = peers
            refused_at = await _refused(host, network, deliverer)
            holders = [
                await stack.enter_async_context(_Holder(p, {IDS[0]: TXS[0]})) for p in holding
            ]
            fetcher = network._tx_fetch
            for index, holder in enumerate(holders, start=1):
                # A deadline for a loaded machine: how soon a fetch ends is not checked.
                await wait_until_async(
                    lambda: fetcher.fetching() == 0, timeout=30.0, what="the fetches over"
                )
                loop.skip_to(max(loop.time(), refused_at + index * spacing))
                await holder.announce(IDS[0], b"straggler-%d" % index)
            await wait_until_async(
                lambda: fetcher.fetching() == 0, timeout=30.0, what="the last refetch over"
            )
            window = loop.time() - refused_at
            downloads = sum(h.sent for h in holders)
            # Doubling from 30 s: four refusals in the 420 s (at about 0, 60, 180 and 360
            # s: a cool-down ending in a skip is refetched then); without it, one at each
            # announcement (8).
            assert host.checked <= 5, (
                f"one refused tx checked {host.checked} times ({downloads} downloads) in "
                f"{window:.0f} s of a full mempool, cool-down {cooldown:.0f} s doubling"
            )

    run(scenario, holders_count * spacing + 60.0, clock=True)


def test_an_announcement_read_just_after_the_cool_down_does_not_drop_the_holders() -> None:
    """Attack: a Sybil re-announces a refused tx all through its cool-down (free: the
    announcements are noted, nothing is fetched), its honest holder having announced it
    once. On a loaded node (here a callback that runs 50 ms, e.g. the host checking a
    frame of txs) the Sybil's announcement is read after the cool-down has ended but
    before the refetch timer runs: `_refused_for` sees the cool-down over, deletes the
    record with its announcers, and fetches the tx from the Sybil alone, which answers
    "not held". The refetch timer then finds no record. What a user sees: room frees, a
    connected peer holds the tx, and it never gets in at this node (honest holders
    announce once). Fix direction: a cool-down's end is the timer's business: an
    announcement past `until` notes its announcer like one during it (or starts the
    refetch itself, from the record's announcers plus it, carrying `refusals`), never
    throwing the record's announcers away."""

    # A cool-down long enough for a loaded machine to set the scene on the real clock,
    # ended by the test (ClockLoop); no heartbeat falls due in the skip.
    cooldown = 30.0

    async def scenario() -> None:
        loop = clock_loop()
        limits: dict[str, object] = {"tx_refused_cooldown": cooldown, "heartbeat": 3600.0}
        async with _full_node(3, **limits) as (host, network, peers, stack):
            deliverer, sybil_link, holding = peers
            await _refused(host, network, deliverer)
            holder = await stack.enter_async_context(_Holder(holding, {IDS[0]: TXS[0]}))
            sybil = await stack.enter_async_context(_Holder(sybil_link, {}))
            await holder.announce(IDS[0], b"holder")
            await sybil.announce(IDS[0], b"sybil")
            until = network._tx_fetch._refused[IDS[0]].until
            # A fetch still open when the clock skips would time out: none is.
            await wait_until_async(
                lambda: network._tx_fetch.fetching() == 0, what="the markers' fetches over"
            )
            loop.hold()
            assert loop.time() < until - 0.03, "announced after the cool-down"
            loop.skip_to(until - 0.03)  # the clock stands 30 ms before the cool-down's end
            await sybil.peer.send(TxIds(IDS[0]))  # once more, as it does all along
            await asyncio.sleep(0)  # the node reads it in this turn of the loop
            # A loaded node: one callback runs across the cool-down's end, the Sybil's
            # announcement is handled right after it, before the refetch timer.
            loop.call_soon(loop.release, 0.06)
            host.room = True
            await _admitted(
                host, IDS[0], 3.0, "the refused tx fetched from its honest holder after all"
            )
            assert holder.sent == 1

    run(scenario, timeout=cooldown + 20.0, clock=True)


async def _announce_then_go_silent(peer: RawPeer, tx_id: bytes) -> None:
    """`peer` announces `tx_id` and a marker, answers the marker's request in time ("not
    held": it is not late), and answers nothing after that."""
    marker = sha256(b"silent")
    await peer.send(TxIds(tx_id))
    await peer.send(TxIds(marker))
    request = await peer.receive_kind(GetTxs)
    assert marker in request.ids()
    await peer.send(TxBodies(request.request_id, ()))


def test_a_silent_sybil_announcing_first_holds_each_refetch_a_whole_fetch_timeout() -> None:
    """Attack: a fresh Sybil key (score 0, not late) announces a refused tx first during
    its cool-down, then answers nothing; its honest holder announces it after. The refetch
    ranks the Sybil first and asks it in a first request, not a retry, so the holder is
    asked only after a whole `tx_fetch_timeout` and the next expiry sweep (~1.25 s),
    not `tx_fetch_retry_after` (0.25 s), though the tx was delivered and checked once
    already; the Sybil pays 0.01 point an id, and one timely "not held" to anything
    clears its lateness for the next batch. What a user sees: every refetched tx of a
    node with one such peer gets in over a second late. Fix direction: a refetch is a
    retry (hedged after `tx_fetch_retry_after`, `_is_retry`), e.g. the deliverer counted
    in `tried`, or its first request asked of the holder most likely to answer."""

    # The cool-down is long enough for a loaded machine to set the scene on the real
    # clock, ended by the test (ClockLoop); no heartbeat falls due in the skip. The
    # Sybil's silence holds a request a whole fetch timeout: ten times the hedge of a
    # retry (`tx_fetch_retry_after`), so that the tx must get in well before it ends
    # however slow the machine, and cannot once it ends.
    fetch_timeout = 10.0

    async def scenario() -> None:
        loop = clock_loop()
        limits = {**COOLED, "tx_fetch_timeout": fetch_timeout}
        async with _full_node(3, **limits) as (host, network, peers, stack):
            deliverer, sybil_link, holding = peers
            await _refused(host, network, deliverer)
            holder = await stack.enter_async_context(_Holder(holding, {IDS[0]: TXS[0]}))
            await _announce_then_go_silent(sybil_link, IDS[0])
            await holder.announce(IDS[0], b"honest")
            host.room = True
            # A fetch still open when the clock skips would time out: none is.
            fetcher = network._tx_fetch
            await wait_until_async(lambda: fetcher.fetching() == 0, what="the fetches over")
            until = fetcher._refused[IDS[0]].until
            assert loop.time() < until, "announced after the cool-down"
            loop.skip_to(until)
            await _admitted(
                host,
                IDS[0],
                fetch_timeout / 2,
                "the refused tx fetched from its honest holder before the silent Sybil's "
                "request timed out",
            )

    run(scenario, COOLDOWN + 20.0, clock=True)


async def _at(when: float) -> None:
    """Return once the loop's clock reaches `when`."""
    loop = asyncio.get_running_loop()
    await wait_until_async(
        lambda: loop.time() >= when, timeout=when - loop.time() + 5.0, what="a time"
    )
