"""`make soak`: the differential history test of test_history_differential.py over at
least FLUX_SOAK_HISTORY_BLOCKS blocks (10,000 by default).

Not collected by `make test` (the name does not start with test_); `make soak` names this
file and passes `--hypothesis-seed`, which it prints first, so a failure can be replayed
with the same seed; hypothesis then prints the shrunk history and its reproduce blob.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from tests.property.test_history_differential import BLOCKS_RUN, SETTINGS, History

BLOCKS_PER_HISTORY = 40  # fewer than a history of 100 steps commits (measured: ~52)


def test_history_soak() -> None:
    target = int(os.environ.get("FLUX_SOAK_HISTORY_BLOCKS", "10000"))
    start = BLOCKS_RUN[0]
    run_state_machine_as_test(
        History,
        settings=settings(
            max_examples=target // BLOCKS_PER_HISTORY, stateful_step_count=100, **SETTINGS
        ),
    )
    ran = BLOCKS_RUN[0] - start
    print(f"history soak: {ran} blocks")
    assert ran >= target, f"only {ran} blocks ran: raise BLOCKS_PER_HISTORY's estimate"
