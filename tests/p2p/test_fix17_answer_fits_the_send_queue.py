"""A TX_BODIES answer fits the bulk share of its sender's send queue (fix17 2, issue 22).

`answer_bytes`, the most tx bytes one answer holds, was capped by the bulk share of the
byte budget only. An operator who lowers `send_queue_bytes` to 8 MiB leaves bulk frames
6 MiB of the queue (the rest is kept for consensus frames), and an answer of up to 8 MiB
never fits: it stays parked, rebuilt at each flush, and the asker never gets the txs
(and scores the silence). The cap now takes the bulk share of the send queue too."""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import sha256
from p2p.limits import Limits
from p2p.messages import MiB
from p2p.tx_fetch import ANSWER_OVERHEAD, answer_bytes
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import PoolHost, _limits, _link, _pool
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

SEND_QUEUE = 8 * MiB
TXS = [bytes([i]) * (128 * 1024) for i in range(56)]  # 7 MiB: one answer's worth on main


def test_fix17_an_answer_is_capped_by_the_bulk_share_of_the_send_queue() -> None:
    limits = Limits(send_queue_bytes=SEND_QUEUE)
    bulk_room = SEND_QUEUE - int(SEND_QUEUE * (1 - limits.bulk_share))
    assert answer_bytes(limits) + ANSWER_OVERHEAD <= bulk_room


def test_fix17_a_node_with_a_small_send_queue_still_serves_large_answers() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            sender_host, asker_host = PoolHost(), PoolHost()
            sender = await nodes.add(
                host=sender_host, tx_pool=sender_host, limits=_limits(send_queue_bytes=SEND_QUEUE)
            )
            asker = await nodes.add(host=asker_host, tx_pool=asker_host, limits=_limits())
            await _link([(sender, asker)])
            ids = [sha256(tx) for tx in TXS]
            for tx_id, tx in zip(ids, TXS, strict=True):
                sender_host.pool[tx_id] = tx
            sender.network.announce_txs(ids, None)
            await wait_until_async(
                lambda: all(tx_id in _pool(asker) for tx_id in ids),
                what="the asker fetched every tx from a sender with an 8 MiB send queue",
                timeout=10.0,
            )

    run(scenario)
