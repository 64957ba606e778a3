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

from fluxchain.core.crypto import sha256
from p2p.messages import MiB
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import PoolHost, _limits, _link, _pool
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

SEND_QUEUE = 5 * MiB
TXS = [bytes([i]) * (128 * 1024) for i in range(56)]  # 7 MiB: two answers of the sender


def test_rev17a_a_sender_with_a_5_mib_send_queue_delivers_every_tx_it_alone_holds() -> None:
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
            try:
                await wait_until_async(
                    lambda: all(tx_id in _pool(asker) for tx_id in ids),
                    what="the asker fetched every tx from the only holder, whose 5 MiB send "
                    "queue cuts its answers",
                    timeout=10.0,
                )
            except AssertionError as exc:
                got = sum(tx_id in _pool(asker) for tx_id in ids)
                raise AssertionError(f"{exc}: got {got} of {len(ids)}") from None

    run(scenario)
