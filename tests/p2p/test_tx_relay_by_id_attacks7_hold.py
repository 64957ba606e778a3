"""Defences of the refetch of refused txs checked in rev15c's review that held: keys
re-announcing a refused tx during its cool-down get nothing fetched or checked, each is
asked once when it ends; and a refetch past its holder's share stays within the
per-peer bounds of `_assign`, however many refused ids one Sybil announces."""

from __future__ import annotations

import asyncio

import pytest

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack
from p2p.messages import Gossip, Kind, TxIds
from tests.p2p.harness import run
from tests.p2p.test_tx_relay_by_id import IDS, TXS
from tests.p2p.test_tx_relay_by_id_refused_refetch import (
    COOLDOWN,
    COOLED,
    _admitted,
    _checked,
    _full_node,
    _Holder,
    _refused,
)
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_keys_re_announcing_a_refused_tx_during_its_cool_down_get_nothing_checked() -> None:
    """Four Sybil keys announce a refused tx five times each during its cool-down and
    answer "not held"; its holder announces it once. Nothing is fetched or checked until
    the cool-down ends; then each Sybil is asked once at most and the tx gets in from
    its holder."""

    async def scenario() -> None:
        loop = clock_loop()
        async with _full_node(6, **COOLED) as (host, network, peers, stack):
            deliverer, *sybil_links, holding = peers
            await _refused(host, network, deliverer)
            sybils = [await stack.enter_async_context(_Holder(p, {})) for p in sybil_links]
            holder = await stack.enter_async_context(_Holder(holding, {IDS[0]: TXS[0]}))
            for round_ in range(5):
                await asyncio.gather(
                    *(
                        s.announce(IDS[0], b"again-%d-%d" % (round_, i))
                        for i, s in enumerate(sybils)
                    )
                )
            await holder.announce(IDS[0], b"holder")
            # A fetch still open when the clock skips would time out: none is.
            fetcher = network._tx_fetch
            await wait_until_async(lambda: fetcher.fetching() == 0, what="the fetches over")
            until = fetcher._refused[IDS[0]].until
            assert loop.time() < until, "announced after the cool-down"
            assert host.checked == 1 and all(IDS[0] not in s.asked for s in sybils)
            host.room = True
            loop.skip_to(until)
            await _admitted(host, IDS[0], 5.0, "the refused tx fetched from its holder")
            assert holder.sent == 1
            assert max(s.asked.count(IDS[0]) for s in sybils) <= 1

    run(scenario, COOLDOWN + 20.0, clock=True)


REFUSED = [b"refused-%d " % i * 40 for i in range(12)]


def test_refetches_past_a_sybils_share_stay_within_its_per_peer_bounds() -> None:
    """Twelve txs are pushed and refused; a Sybil, their only other announcer, announces
    them all during the cool-down and answers nothing. When it ends they are asked of it
    past its share (one id), but no more than `max_tx_fetch_inflight` at once and
    `known_txs_per_peer` waiting: the rest are not fetched (a later announcement is)."""

    async def scenario() -> None:
        inflight, waiting = 2, 3
        limits: dict[str, object] = {
            **COOLED,
            "max_tx_fetching": 40,  # over 40 peer slots: a share of one id
            "max_tx_fetch_inflight": inflight,
            "known_txs_per_peer": waiting,
            "tx_fetch_timeout": 2 * COOLDOWN,  # the Sybil's requests stay open
        }
        ids = [sha256(tx) for tx in REFUSED]
        loop = clock_loop()
        async with _full_node(2, **limits) as (host, network, peers, _stack):
            pusher, sybil = peers
            fetcher = network._tx_fetch
            await pusher.send(Gossip(Kind.TXS, pack(REFUSED)))
            await _checked(host, len(REFUSED))
            await sybil.send(TxIds(b"".join(ids)))
            await wait_until_async(
                lambda: all(fetcher._refused[i].announcers for i in ids), what="noted"
            )
            assert fetcher.fetching() == 0  # none open to time out in the skip
            until = max(fetcher._refused[i].until for i in ids)
            assert loop.time() < until, "announced after the cool-down"
            loop.skip_to(until)
            # Every refetch due handled (started, or dropped with no room at the Sybil).
            await wait_until_async(lambda: not fetcher._refetch, what="the refetches handled")
            state = fetcher._state[sybil.id]
            assert state.inflight + len(state.waiting) > 1, "not asked past its share"
            assert state.inflight <= inflight and len(state.waiting) <= waiting
            assert fetcher.fetching() <= inflight + waiting

    run(scenario, COOLDOWN + 20.0, clock=True)
