"""The only holder of many large txs delivers them all, whatever its send queue
(review rev17a 2, issue 22).

Attack (an honest operator, no attacker needed): fix17 caps a TX_BODIES answer by the
bulk share of the sender's send queue (`answer_bytes`). The asker tells an answer cut for
size from one that lacks txs by comparing its size with half of its OWN `answer_bytes`
(`TxFetcher.on_answer`). A sender with `send_queue_bytes` at 5 MiB cuts its answers at
~3.7 MiB, under half of a default asker's ~8 MiB: the asker takes the cut tail for
misses and gives those ids to the next announcer; the only holder is never asked again
and the txs are never fetched (the sender does not announce them again). What a user
sees: txs relayed through a node with a smaller send queue stop there. Fix direction:
judge a cut by a protocol-wide floor every valid config answers above (or floor
`send_queue_bytes` in Limits so that `answer_bytes` stays above half the default), or
have the sender mark a cut answer."""

from __future__ import annotations

import pytest

from p2p.messages import MiB
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import _limits, fetched_by_id

pytestmark = pytest.mark.filterwarnings("error")

SEND_QUEUE = 5 * MiB
TXS = [bytes([i]) * (128 * 1024) for i in range(56)]  # 7 MiB: two answers of the sender


def test_rev17a_a_sender_with_a_5_mib_send_queue_delivers_every_tx_it_alone_holds() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            # The only holder: its 5 MiB send queue cuts its answers.
            sender_limits = _limits(send_queue_bytes=SEND_QUEUE)
            await fetched_by_id(nodes, TXS, sender_limits, asker_limits=_limits())

    run(scenario)
