"""A TX_BODIES answer fits the bulk share of its sender's send queue (fix17 2, issue 22).

`answer_bytes`, the most tx bytes one answer holds, was capped by the bulk share of the
byte budget only. An operator who lowers `send_queue_bytes` to 8 MiB leaves bulk frames
6 MiB of the queue (the rest is kept for consensus frames), and an answer of up to 8 MiB
never fits: it stays parked, rebuilt at each flush, and the asker never gets the txs
(and scores the silence). The cap now takes the bulk share of the send queue too."""

from __future__ import annotations

import pytest

from p2p.limits import Limits
from p2p.messages import MiB
from p2p.tx_fetch import ANSWER_OVERHEAD, answer_bytes
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import _limits, fetched_by_id

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
            sender_limits = _limits(send_queue_bytes=SEND_QUEUE)
            await fetched_by_id(nodes, TXS, sender_limits, asker_limits=_limits())

    run(scenario)
