"""Defences of fix16d that held review rev16c."""

from __future__ import annotations

import pytest

from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import _limits, fetched_by_id

pytestmark = pytest.mark.filterwarnings("error")

BURST = 256 * 1024
TXS = [bytes([i]) * (22 * 1024) for i in range(16)]  # two answers' worth (176 KiB each)


def test_rev16c_an_answer_parked_for_the_budget_is_delivered_and_not_scored() -> None:
    """A request parked until the sender's budget keeps the consensus reserve is not
    parked for ever: every tx arrives, and the asker does not score the sender."""

    async def scenario() -> None:
        async with cluster() as nodes:
            limits = _limits(bytes_per_second=128 * 1024.0, bytes_burst=float(BURST))
            sender, asker = await fetched_by_id(nodes, TXS, limits)
            assert sender.network.frame_counts()["sent"].get("TX_BODIES", 0) >= 2
            view = asker.peer(sender.id)
            assert view is not None and view.score == 0, view

    run(scenario)
