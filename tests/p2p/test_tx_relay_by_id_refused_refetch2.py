"""The refetch of refused txs after rev15a's review (fix15b): Sybils in every inbound slot
do not keep a refused tx from its honest holder, and a tx refused again and again backs
off no further than `tx_refused_cooldown_max`."""

from __future__ import annotations

import asyncio

import pytest

from p2p.limits import Limits
from tests.p2p.harness import run
from tests.p2p.test_tx_relay_by_id import IDS, TXS
from tests.p2p.test_tx_relay_by_id_refused_refetch import (
    COOLDOWN,
    _admitted,
    _full_node,
    _Holder,
    _refused,
    refetch_past_sybils,
)
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_sybils_in_every_inbound_slot_do_not_keep_a_refused_tx_from_its_honest_holder() -> None:
    """Sybil keys take every inbound slot left beside the deliverer and the honest holder
    (38 of 40), announce a refused tx at once during its cool-down and answer "not held";
    the holder announces it after them, once. Room frees: the tx gets in from the holder,
    each Sybil asked for it once at most, one a batching window (`tx_announce_wait`), as
    each misses (on wt/rev15a: the first eight were kept, and the holder never asked)."""

    sybils = Limits().max_inbound - 2
    run(lambda: refetch_past_sybils(sybils), COOLDOWN + 60.0, clock=True)


def test_a_tx_refused_again_and_again_waits_no_longer_than_the_cool_down_cap() -> None:
    """Five holders announce a refused tx; while the mempool stays full it is refetched
    from one after the other, and refused each time, its cool-down doubling up to
    `tx_refused_cooldown_max`. After four more refusals room frees: the tx gets in within
    the cap (uncapped, the fifth refusal alone would come 6 s after the first, not 2.8)."""

    async def scenario() -> None:
        limits: dict[str, object] = {"tx_refused_cooldown": 0.4, "tx_refused_cooldown_max": 0.8}
        loop = asyncio.get_running_loop()
        async with _full_node(6, **limits) as (host, network, peers, stack):
            deliverer, *holding = peers
            refused_at = await _refused(host, network, deliverer)
            holders = [
                await stack.enter_async_context(_Holder(p, {IDS[0]: TXS[0]})) for p in holding
            ]
            await asyncio.gather(
                *(h.announce(IDS[0], b"again-%d" % i) for i, h in enumerate(holders))
            )
            assert loop.time() - refused_at < 0.4, "announced after the cool-down"
            await wait_until_async(
                lambda: host.checked >= 5, timeout=4.5, what="four refusals of the refetched tx"
            )
            host.room = True
            await _admitted(host, IDS[0], 0.8 + 1.0, "the tx fetched after the capped cool-down")

    run(scenario)
