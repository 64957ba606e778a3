"""Defences of fix17 that held under review rev17a (issue 22)."""

from __future__ import annotations

import pytest

from p2p.limits import Limits
from p2p.messages import MiB
from p2p.tx_fetch import answer_bytes
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import _limits, fetched_by_id

pytestmark = pytest.mark.filterwarnings("error")

TXS = [bytes([i]) * (128 * 1024) for i in range(56)]  # 7 MiB


@pytest.mark.parametrize("queue_mib", [6, 8, 24])
def test_rev17a_a_sender_down_to_6_mib_of_send_queue_answers_above_a_default_askers_cut(
    queue_mib: int,
) -> None:
    """The documented 8 MiB queue (and 6 MiB) still cuts answers above half a default
    asker's `answer_bytes`, so the asker re-asks their tail rather than drop it."""
    assert answer_bytes(Limits(send_queue_bytes=queue_mib * MiB)) > answer_bytes(Limits()) // 2


def test_rev17a_an_asker_with_a_small_send_queue_is_served_everything_by_a_default_sender() -> None:
    """An asker whose own limits are smaller takes more answers for cut (re-asks, never
    drops): a default sender's 8 MiB answers reach it whole, nothing parked for ever."""

    async def scenario() -> None:
        async with cluster() as nodes:
            asker_limits = _limits(send_queue_bytes=5 * MiB)
            await fetched_by_id(nodes, TXS, _limits(), asker_limits=asker_limits)

    run(scenario)
