"""Defences of fix16a's refetch changes that held in review rev16a: the kept counts of
refusals stay bounded by `seen_cache_size` under a churn of refusals and holders that
leave, and refetches an announcement found no room for under REFETCH_PER_FLUSH are
started by later flushes, none lost."""

from __future__ import annotations

import pytest

import p2p.tx_fetch
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from p2p.messages import Gossip, Kind, TxIds
from tests.p2p.harness import run
from tests.p2p.test_tx_relay_by_id_refetch_leftovers import refetch_request_sizes
from tests.p2p.test_tx_relay_by_id_refused_refetch import COOLDOWN, _checked, _full_node, _Holder
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _peer_from
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

BOUND = 4  # seen_cache_size in the churn test
ROUNDS = 3


def test_kept_refusal_counts_stay_bounded_under_churn() -> None:
    """Three rounds: a pusher has BOUND fresh txs refused; a holder of a fresh key
    announces them during the cool-down and leaves, so each record ends with nobody to
    ask and leaves its count (`_remember_refusals`). The kept counts never exceed
    `seen_cache_size`, the newest kept."""

    # A cool-down long enough for a loaded machine to connect and announce in it, ended
    # by the test (ClockLoop); no heartbeat falls due in the skips.
    cooldown = 30.0

    async def scenario() -> None:
        loop = clock_loop()
        limits: dict[str, object] = {
            "tx_refused_cooldown": cooldown,
            "seen_cache_size": BOUND,
            "heartbeat": 3600.0,
        }
        async with _full_node(1, **limits) as (host, network, peers, _stack):
            (pusher,) = peers
            fetcher = network._tx_fetch
            sizes: list[int] = []
            for round_ in range(ROUNDS):
                txs = [b"rev16a-%d-%d " % (round_, i) * 40 for i in range(BOUND)]
                ids = [sha256(tx) for tx in txs]
                await pusher.send(Gossip(Kind.TXS, pack(txs)))
                await _checked(host, (round_ + 1) * BOUND)
                async with (
                    _peer_from(network, "127.0.0.1", SigningKey.generate()) as link,
                    _Holder(link, {}) as holder,
                ):
                    await link.send(TxIds(b"".join(ids[:-1])))
                    await holder.announce(ids[-1], b"round-%d" % round_)
                # A fetch still open when the clock skips would time out: none is.
                await wait_until_async(lambda: fetcher.fetching() == 0, what="the fetches over")
                until = fetcher._refused[ids[-1]].until  # one refusal: the round's end
                assert loop.time() < until, "announced after the cool-down"
                loop.skip_to(until)
                await wait_until_async(
                    lambda ids=ids: all(i in fetcher._refusals_before for i in ids),  # type: ignore[misc]
                    what="the counts of the records that ended kept",
                )
                sizes.append(len(fetcher._refusals_before))
            assert max(sizes) <= BOUND, f"kept counts after each round: {sizes}"

    run(scenario, ROUNDS * cooldown + 30.0, clock=True)


def test_refetches_past_the_flush_cap_from_announcements_are_all_started_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five refused txs announced in one frame after their cool-down, one id a flush
    (REFETCH_PER_FLUSH 1). Each over the cap stays due and a later flush starts it: all
    five are asked, one a request, and get in."""
    monkeypatch.setattr(p2p.tx_fetch, "REFETCH_PER_FLUSH", 1, raising=False)

    async def scenario() -> None:
        sizes = await refetch_request_sizes(5)
        assert max(sizes) == 1, f"ids asked by each request: {sizes}"

    run(scenario, COOLDOWN + 20.0, clock=True)
