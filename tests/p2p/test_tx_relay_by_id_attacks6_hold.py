"""Defences of the refetch of refused txs checked in rev15a's review that held: the
refused records, their announcer lists and the refetch timer heap stay bounded under a
churn of refusals, re-pushes and announcers connecting and leaving; and up to
REFUSED_ANNOUNCERS - 1 Sybils answering "not held" are each asked once and do not keep a
refused tx from its honest holder."""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from p2p.messages import Gossip, Kind, TxIds
from tests.p2p.harness import run
from tests.p2p.test_tx_relay_by_id import TXS
from tests.p2p.test_tx_relay_by_id_attacks6 import REFUSED_ANNOUNCERS
from tests.p2p.test_tx_relay_by_id_refused_refetch import (
    COOLDOWN,
    _checked,
    _full_node,
    refetch_past_sybils,
)
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _peer_from

pytestmark = pytest.mark.filterwarnings("error")

BOUND = 4  # seen_cache_size and tx_fetch_announcers in the churn test: the bounds
CHURN = [b"churn-%d " % i * 40 for i in range(30)]


def test_refused_records_announcers_and_timers_stay_bounded_under_churn() -> None:
    """A pusher has 30 txs refused, three times over (each push a refusal anew, leaving
    stale timers); between pushes announcers of fresh keys connect, announce all 30 during
    the cool-downs, and leave. The refused records never exceed `seen_cache_size`, the
    refetch heap twice it, and each record's announcers `tx_fetch_announcers` (nine
    announcers pass through, the gone ones making room)."""

    async def scenario() -> None:
        ids = [sha256(tx) for tx in CHURN]
        async with _full_node(
            1,
            tx_refused_cooldown=30.0,
            seen_cache_size=BOUND,
            tx_fetch_timeout=0.2,
            tx_fetch_announcers=BOUND,
        ) as (host, network, peers, _stack):
            (pusher,) = peers
            fetcher = network._tx_fetch
            sizes: list[tuple[int, int, int]] = []
            for round_ in range(3):
                for start in range(0, len(CHURN), 3):
                    await pusher.send(
                        Gossip(Kind.TXS, pack([*CHURN[start : start + 3], TXS[round_]]))
                    )
                await _checked(host, (round_ + 1) * (len(CHURN) + 10))  # the pushes refused
                for _ in range(3):
                    async with _peer_from(network, "127.0.0.1", SigningKey.generate()) as peer:
                        await peer.send(TxIds(b"".join(ids)))
                        await peer.send(TxIds(b"".join(ids[:BOUND])))
                    sizes.append(
                        (
                            len(fetcher._refused),
                            len(fetcher._refetch),
                            max((len(r.announcers) for r in fetcher._refused.values()), default=0),
                        )
                    )
            assert all(
                refused <= BOUND and heap <= 2 * BOUND and most <= BOUND
                for refused, heap, most in sizes
            ), f"(records, heap, most announcers) over time: {sizes}"

    run(scenario, timeout=30.0)


def test_sybils_one_short_of_the_list_are_each_asked_once_and_the_holder_gets_it_in() -> None:
    """REFUSED_ANNOUNCERS - 1 Sybils announce a refused tx at once during its cool-down and
    answer "not held"; its honest holder announces it after them, once. Room frees: the tx
    gets in from the holder after the cool-down, each Sybil asked for it once."""

    run(lambda: refetch_past_sybils(REFUSED_ANNOUNCERS - 1), COOLDOWN + 20.0, clock=True)
