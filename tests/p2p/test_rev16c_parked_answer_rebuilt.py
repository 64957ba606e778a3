"""A TX_BODIES answer waiting for the byte budget is rebuilt at every flush (review rev16c 1).

Attack (a peer asking as fast as its budget lets it, or a busy honest asker): since
fix16d an answer that would take the consensus reserve is parked, and `_serve_parked`
retries it at every flush (`tx_announce_wait`, 100 ms) by reading every tx from the pool
and encoding the whole frame (up to 8 MiB), only for `Links.send_answer` to refuse it
until the budget has refilled (0.5 s for an 8 MiB answer at the default 16 MiB/s). What
a user sees: each answer to such a peer costs the node about five pool reads and
frame builds instead of one, on the event loop, per asking peer. Fix direction: check
the budget against the answer's size (or the cap, `answer_bytes`) before building it,
or retry when the budget will hold it (`out_bytes` refill time), not every flush."""

from __future__ import annotations

import pytest

from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import PoolHost, _limits, fetched_by_id

pytestmark = pytest.mark.filterwarnings("error")

BURST = 256 * 1024
TXS = [bytes([i]) * (22 * 1024) for i in range(16)]  # two answers' worth (176 KiB each)


class CountingPool(PoolHost):
    """A pool that counts the answers built from it (one `tx_bodies` call each)."""

    def __init__(self) -> None:
        super().__init__()
        self.builds = 0

    def tx_bodies(self, tx_ids: list[bytes]) -> list[bytes | None]:
        self.builds += 1
        return super().tx_bodies(tx_ids)


def test_rev16c_an_answer_waiting_for_the_budget_is_built_once_or_twice() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            limits = _limits(bytes_per_second=128 * 1024.0, bytes_burst=float(BURST))
            sender_host = CountingPool()
            sender, _ = await fetched_by_id(nodes, TXS, limits, sender_host)
            answers = sender.network.frame_counts()["sent"].get("TX_BODIES", 0)
            assert answers >= 1
            assert sender_host.builds <= 2 * answers, (
                f"{sender_host.builds} answers built from the pool for {answers} sent: a "
                "parked answer is rebuilt at every flush while the budget refills"
            )

    run(scenario)
