"""Review of the refetch of refused txs (rev15a, of fix15a/rev14c): attacks on the records
of txs refused for a full mempool. Each test fails on wt/integ15."""

from __future__ import annotations

import asyncio

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from p2p.messages import GetTxs, TxBodies, TxIds
from tests.p2p.harness import run
from tests.p2p.test_tx_relay_by_id import IDS, TXS
from tests.p2p.test_tx_relay_by_id_refused_refetch import (
    COOLDOWN,
    COOLED,
    _admitted,
    _cool_downs_until,
    _end_cool_down,
    _full_node,
    _Holder,
    _refused,
    refetch_past_sybils,
)
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _peer_from
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

# rev14c's REFUSED_ANNOUNCERS: the announcers a refused tx kept, first come.
REFUSED_ANNOUNCERS = 8


def test_eight_sybils_announcing_a_refused_tx_first_still_keep_it_from_its_honest_holder() -> None:
    """Attack: rev14c's, with REFUSED_ANNOUNCERS Sybil keys instead of three. They announce
    a refused tx at once during its cool-down (they saw it refused: one of their keys
    delivered it), stay connected, and answer "not held" (free) when asked. The honest
    holder announces it after them, once, as honest holders do. What a user sees: room
    frees, yet the tx never gets in at this node (only its origin's re-push, every
    REGOSSIP_BLOCKS and only to the origin's own peers, brings it back): eight keys, a
    fifth of the inbound slots, censor any tx the mempool once refused. Fix direction: a
    full list must not turn a holder away while its entries are first-come; e.g. keep one
    entry per peer slot (`tx_fetch_announcers`, every peer a node may have), or let a new
    announcer replace one that is late, scored or of the same IP group/subnet, or fall
    back to the fetch path's own next-announcer list rather than dropping it."""

    run(lambda: refetch_past_sybils(REFUSED_ANNOUNCERS), COOLDOWN + 20.0, clock=True)


def test_a_refused_tx_is_not_downloaded_and_checked_again_every_cool_down_while_full() -> None:
    """Attack (a busy honest network, or anyone keeping the mempool full): a tx below the
    full mempool's floor, held by REFUSED_ANNOUNCERS honest peers that each announce it
    once during its cool-down. While the mempool stays full, every cool-down ends in a
    refetch from the next holder, the same check and the same refusal (a re-refusal keeps
    the others, rev14c): nine downloads and signature checks of one tx in 27 s, for every
    tx just under the floor, at every full node. What a user sees: at load (the only time
    mempools are full) nodes spend most of their tx CPU and bandwidth re-checking txs they
    refused. Fix direction: back off a tx refused again (double its cool-down each time,
    or remember its refusal count), so that it is checked a few times while full and
    still fetched once room frees."""

    # Cool-downs long enough for a loaded machine to set the scene on the real clock;
    # the test ends each one (ClockLoop), and no heartbeat falls due in the skips.
    cooldown = 30.0
    window = REFUSED_ANNOUNCERS * cooldown  # with no back-off, a refetch from each holder

    async def scenario() -> None:
        loop = clock_loop()
        count = 1 + REFUSED_ANNOUNCERS
        limits: dict[str, object] = {
            "tx_refused_cooldown": cooldown,
            "tx_refused_cooldown_max": 20 * cooldown,  # as 3 s and 60 s in production
            "heartbeat": 3600.0,
        }
        async with _full_node(count, **limits) as (host, network, peers, stack):
            deliverer, *holding = peers
            refused_at = await _refused(host, network, deliverer)
            holders = [
                await stack.enter_async_context(_Holder(p, {IDS[0]: TXS[0]})) for p in holding
            ]
            await asyncio.gather(
                *(h.announce(IDS[0], b"holder-%d" % i) for i, h in enumerate(holders))
            )
            assert loop.time() - refused_at < cooldown, "announced after the cool-down"
            await _cool_downs_until(network, IDS[0], refused_at + window)
            downloads = sum(h.sent for h in holders)
            assert host.checked <= 4, (
                f"one refused tx checked {host.checked} times ({downloads} refetches) in "
                f"{window:.0f} s of a full mempool, cool-down {cooldown:.0f} s"
            )

    run(scenario, window + 60.0, clock=True)


BACKLOG = 8  # known_txs_per_peer in the backlog test: the backlog's bound
KEPT = [b"kept6-%d " % i * 40 for i in range(BACKLOG + 1)]


def test_a_refetch_put_first_in_a_backlog_is_not_pushed_out_by_the_next_announcement() -> None:
    """Attack (a busy honest network): the holder of a refused tx has its share of
    `max_tx_fetching` taken and its backlog one short of full when the cool-down ends, so
    the refetch goes first in its backlog (`_refetch_from`, `appendleft`). The holder then
    announces one more tx, as busy holders do: the backlog's `deque(maxlen=...)` drops
    its leftmost id, the refetch itself (the refused record is gone already). What a user
    sees: room frees, every other tx the holder announced gets in, the refused tx never
    does. Fix direction: keep refetches out of the bounded FIFO (a small per-peer queue
    asked first when its share frees, or a fetch with all its sources assigned at once,
    as the no-room case does), or drop the newest id of a full backlog, not the oldest."""

    # A cool-down long enough for a loaded machine to set the scene on the real clock,
    # ended by the test (ClockLoop); the peer's first request outlasts it. No heartbeat
    # falls due in the skip.
    cooldown = 30.0

    async def scenario() -> None:
        limits: dict[str, object] = {
            "tx_refused_cooldown": cooldown,
            "max_tx_fetching": 40,  # over 40 peer slots: a share of one id
            "known_txs_per_peer": BACKLOG,
            "tx_fetch_timeout": 2 * cooldown,
            "heartbeat": 3600.0,
        }
        kept_ids = [sha256(tx) for tx in KEPT]
        async with _full_node(2, **limits) as (host, network, peers, stack):
            deliverer, peer = peers
            await _refused(host, network, deliverer)
            host.room = True  # its cool-down still holds the refused tx back
            await peer.send(TxIds(IDS[0]))
            await peer.send(TxIds(kept_ids[0]))
            first = await peer.receive_kind(GetTxs)
            assert first.ids() == [kept_ids[0]]
            await peer.send(TxIds(b"".join(kept_ids[1:BACKLOG])))  # one short of full
            await wait_until_async(
                lambda: len(network._tx_fetch._state[peer.id].backlog) == BACKLOG - 1,
                what="its backlog one short of full",
            )
            await _end_cool_down(network, IDS[0])
            await peer.send(TxIds(kept_ids[BACKLOG]))  # one more, as a busy holder does
            await peer.send(TxBodies(first.request_id, (KEPT[0],)))
            held = {sha256(tx): tx for tx in [TXS[0], *KEPT]}
            await stack.enter_async_context(_Holder(peer, held))
            await wait_until_async(
                lambda: all(tx_id in host.pool for tx_id in kept_ids[1:]),
                timeout=5.0,
                what="every other tx the holder announced fetched",
            )
            await _admitted(host, IDS[0], 3.0, "the refused tx fetched from its holder")

    run(scenario, cooldown + 20.0, clock=True)


def test_a_holder_that_reconnected_during_the_cool_down_is_still_asked() -> None:
    """Attack (churn, no attacker needed; or an attacker resetting a victim's link): the
    only other holder of a refused tx announces it once during the cool-down, then its
    link drops and it reconnects (same node key) before the cool-down ends. It holds the
    tx still, but honest holders announce a tx once, so it will not announce it again;
    no tx was admitted meanwhile, so the fetcher has no per-peer state for the new link,
    and `_ranked` (like `_connected`) skips a connected peer without state. What a user
    sees: room frees, a connected peer holds the tx, and it never gets in. Fix direction:
    rank (and keep) a remembered announcer by the peer being connected, creating its
    state (`_peer_state`) when asked, not by the fetcher having seen a frame of it."""

    async def scenario() -> None:
        key = SigningKey.generate()
        async with _full_node(1, **COOLED) as (host, network, peers, stack):
            (deliverer,) = peers
            await _refused(host, network, deliverer)
            async with (
                _peer_from(network, "127.0.0.1", key) as link,
                _Holder(link, {IDS[0]: TXS[0]}) as first,
            ):
                await first.announce(IDS[0], b"holder")  # then its link drops
            again = await stack.enter_async_context(_peer_from(network, "127.0.0.1", key))
            holder = await stack.enter_async_context(_Holder(again, {IDS[0]: TXS[0]}))
            host.room = True
            # A fetch still open when the clock skips would time out: none is.
            fetcher = network._tx_fetch
            await wait_until_async(lambda: fetcher.fetching() == 0, what="the fetches over")
            await _end_cool_down(network, IDS[0])  # the scene set before it ends
            await _admitted(host, IDS[0], 3.0, "the refused tx fetched from its reconnected holder")
            assert holder.sent == 1

    run(scenario, COOLDOWN + 20.0, clock=True)
