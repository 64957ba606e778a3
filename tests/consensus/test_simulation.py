"""The seeded network simulation: 200 seeds x 50 heights, every invariant after every step.

A failing seed prints a one-line command that replays it exactly, and the shortest failing
schedule it can find by dropping faults one at a time.
"""

from __future__ import annotations

from collections import Counter

import pytest

from fluxchain.core.votes import Commit
from tests.consensus.sim import (
    DELTA_MS,
    HOSTILE_BLOCKS,
    Host,
    InvariantError,
    Scenario,
    Simulation,
    one_byzantine,
    run_seed,
    run_shrinking,
    shrink,
)

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


def _stormy_scenario() -> Scenario:
    """The first CI seed with two crashes, a partition and a byzantine validator."""
    for seed in CI_SEEDS:
        scenario = Scenario.from_seed(seed, HEIGHTS)
        if len(scenario.crashes) == 2 and scenario.partitions and scenario.byzantine:
            return scenario
    raise AssertionError("no CI seed has that many faults")


def test_a_failing_schedule_shrinks_to_the_fault_that_matters() -> None:
    """Delta debugging over the fault schedule: what is left is what makes it fail."""
    scenario = _stormy_scenario()
    culprit = scenario.crashes[1]

    def fails(candidate: Scenario) -> bool:
        return culprit in candidate.crashes and candidate.heights >= 3

    smallest = shrink(scenario, fails, runs=1_000)
    assert smallest.crashes == [culprit]
    assert (smallest.partitions, smallest.byzantine, smallest.heights) == ([], {}, 3)
    assert (smallest.drop, smallest.duplicate, smallest.max_delay_ms) == (0.0, 0.0, DELTA_MS)


class _RestartsAreForbidden(Simulation):
    """A simulation with a deliberately wrong invariant: no block after a crash."""

    def check_commit(self, host: Host, height: int, block_bytes: bytes, commit: Commit) -> None:
        super().check_commit(host, height, block_bytes, commit)
        if self.scenario.crashes and height >= 2:
            self.fail("test invariant: a block committed in a run with a crash")


def test_a_failing_seed_prints_its_shortest_schedule_and_how_to_replay_it() -> None:
    scenario = _stormy_scenario()
    with pytest.raises(InvariantError) as failed:
        run_shrinking(_RestartsAreForbidden, scenario)
    message = str(failed.value)
    assert "shortest failing schedule found" in message
    literal = message.split("replay it: _RestartsAreForbidden(", 1)[1].rsplit(").run()", 1)[0]
    smallest = eval(literal, {"Scenario": Scenario})  # the printed literal replays the run
    assert len(smallest.crashes) == 1 and smallest.partitions == [] and smallest.heights == 2
    with pytest.raises(InvariantError):
        _RestartsAreForbidden(smallest).run()
