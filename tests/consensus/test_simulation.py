"""The seeded network simulation: 200 seeds x 50 heights, every invariant after every step.

A failing seed prints a one-line command that replays it exactly.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.consensus.sim import HOSTILE_BLOCKS, Scenario, Simulation, one_byzantine, run_seed

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


def test_byzantine_roles_of_issue_17_are_injected() -> None:
    """The CI seeds give validators the hostile and the splitting roles too."""
    roles = {
        role for seed in range(40) for role in Scenario.from_seed(seed, HEIGHTS).byzantine.values()
    }
    assert roles >= {"hostile", "split"}


def test_hostile_proposals_and_junk_votes_neither_stall_nor_fork() -> None:
    """Issue 17 in the simulation: a validator proposes every kind of hostile block
    (garbage, another height, another proposer, far-future times, a body that does not
    hash to the proposal) and sends votes from keys outside the set; the honest three
    refuse them all (the validity invariant: none is committed) and decide every height."""
    sim = Simulation(one_byzantine("hostile", 40, 17_01))
    result = sim.run()
    for kind in HOSTILE_BLOCKS:
        assert result.faults[f"hostile_{kind}"] > 0, (kind, result.faults)
    assert result.faults["junk_votes"] > 0
    assert all(host.height > 40 for host in sim.hosts if host.honest)


def test_equivocation_that_splits_the_peers_is_reported_and_survived() -> None:
    """A validator that sends every vote and proposal to half its peers and a conflicting
    twin to the other half: it is reported (evidence naming it, checked by the run) and
    the honest three agree on every height."""
    sim = Simulation(one_byzantine("split", 30, 17_02))
    result = sim.run()
    assert result.faults["split_equivocations"] > 0
    assert result.faults["evidence_reported"] > 0


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
