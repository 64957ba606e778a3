"""The seeded network simulation: 200 seeds x 50 heights, every invariant after every step.

A failing seed prints a one-line command that replays it exactly.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.consensus.sim import Scenario, run_seed

CI_SEEDS = range(200)
HEIGHTS = 50


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_seed(seed: int) -> None:
    result = run_seed(seed, HEIGHTS)
    assert result.events > 0


def test_same_seed_same_run() -> None:
    """Determinism: the replay command reproduces a run event for event."""
    first, again = run_seed(3, 10), run_seed(3, 10)
    assert (first.events, first.sim_time_ms, first.faults) == (
        again.events,
        again.sim_time_ms,
        again.faults,
    )


def test_faults_are_really_injected() -> None:
    """The seeds above cover every kind of fault (a guard against a toothless simulator)."""
    kinds: set[str] = set()
    for seed in range(40):
        scenario = Scenario.from_seed(seed, HEIGHTS)
        kinds.update(scenario.byzantine.values())
        if scenario.partitions:
            kinds.add("partition")
        if scenario.crashes:
            kinds.add("crash")
        if scenario.drop:
            kinds.add("drop")
        if scenario.duplicate:
            kinds.add("duplicate")
    assert kinds >= {"silent", "equivocate", "invalid", "partition", "crash", "drop", "duplicate"}


def test_restarts_go_through_the_nodes_restart_path() -> None:
    """The seeds with crashes really resume heights mid-way (signer record and WAL, with
    its timeouts), and their power cuts really tear the WAL: a guard against a simulator
    whose restarts would only ever start fresh heights."""
    totals: Counter[str] = Counter()
    with_crashes = [s for s in range(40) if Scenario.from_seed(s, 10).crashes][:8]
    for seed in with_crashes:
        totals.update(run_seed(seed, 10).faults)
    assert totals["restarts"] >= 8
    assert totals["restarts_resumed_mid_height"] > 0
    assert totals["restarts_resumed_above_round_0"] > 0
    assert totals["wal_timeouts_replayed"] > 0
    assert totals["wal_bytes_torn"] > 0
