"""Defences of fix16d that held review rev16c."""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import sha256
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import PoolHost, _limits, _link, _pool
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

BURST = 256 * 1024
TXS = [bytes([i]) * (22 * 1024) for i in range(16)]  # two answers' worth (176 KiB each)


def test_rev16c_an_answer_parked_for_the_budget_is_delivered_and_not_scored() -> None:
    """A request parked until the sender's budget keeps the consensus reserve is not
    parked for ever: every tx arrives, and the asker does not score the sender."""

    async def scenario() -> None:
        async with cluster() as nodes:
            limits = _limits(bytes_per_second=128 * 1024.0, bytes_burst=float(BURST))
            sender_host, asker_host = PoolHost(), PoolHost()
            sender = await nodes.add(host=sender_host, tx_pool=sender_host, limits=limits)
            asker = await nodes.add(host=asker_host, tx_pool=asker_host, limits=limits)
            await _link([(sender, asker)])
            ids = [sha256(tx) for tx in TXS]
            for tx_id, tx in zip(ids, TXS, strict=True):
                sender_host.pool[tx_id] = tx
            sender.network.announce_txs(ids, None)
            await wait_until_async(
                lambda: all(tx_id in _pool(asker) for tx_id in ids),
                what="the asker fetched every tx",
                timeout=20.0,
            )
            assert sender.network.frame_counts()["sent"].get("TX_BODIES", 0) >= 2
            view = asker.peer(sender.id)
            assert view is not None and view.score == 0, view

    run(scenario)
