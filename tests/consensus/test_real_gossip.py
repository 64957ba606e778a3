"""The consensus simulation with the node's real gossip (tests/consensus/sim.py).

Flood, relay, seen-cache, last-vote re-gossip and the watchdog as the node runs them, plus
per-peer consensus gossip (p2p/consensus_gossip.py): with message loss, duplication,
reordering, partitions, crashes and byzantine validators before GST, every seed must keep
agreement and decide every height once messages flow again. A failure prints the seed, its
fault schedule and the command that replays it:

    FLUX_SIM_SEED=<seed> FLUX_SIM_HEIGHTS=<heights> pytest tests/consensus -k replay_real_gossip
"""

from __future__ import annotations

import os

import pytest

from consensus.messages import Step
from consensus.proposer import proposer
from fluxchain.core.votes import NIL, Vote, VoteType
from p2p.messages import RoundState
from tests.consensus.sim import (
    DELTA_MS,
    TIMEOUTS,
    InvariantError,
    RealGossipHost,
    RealGossipSimulation,
    Scenario,
    Simulation,
    one_byzantine,
    run_real_gossip_seed,
)

CI_SEEDS = range(200)
HEIGHTS = 20
LOSS_ENDS_MS = 3_000


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_real_gossip_seed(seed: int) -> None:
    result = run_real_gossip_seed(seed, HEIGHTS)
    assert result.events > 0


def lost_prevotes_world(*, with_reactor: bool) -> RealGossipSimulation:
    """Issue 25 #2: four honest validators; two round-0 prevotes never reach P and Q.

    R and S (the proposers of rounds 0 and 1) see every prevote for the round-0 block w,
    lock on it and precommit it; P and Q see only their own two prevotes for w, and every
    copy of R's and S's prevote for w that is sent to them is lost until LOSS_ENDS_MS.
    From round 1 on, R and S re-propose w with proof-of-lock round 0, which P and Q can
    accept only once they hold those lost prevotes.
    """
    scenario = Scenario(
        seed=25_02,
        heights=3,
        powers=[1, 1, 1, 1],
        byzantine={},
        gst_ms=LOSS_ENDS_MS,
        drop=0.0,
        duplicate=0.0,
        max_delay_ms=DELTA_MS,
        partitions=[],
        crashes=[],
    )
    probe = Simulation(scenario)
    validators = probe.validators
    r_key, s_key = proposer(validators, 1, 0), proposer(validators, 1, 1)
    assert r_key != s_key
    p_and_q = {i for i, host in enumerate(probe.hosts) if host.key.public_key not in (r_key, s_key)}

    def lose(_sim: Simulation, _src: int, dst: int, message: Vote | object) -> bool:
        return (
            isinstance(message, Vote)
            and message.type is VoteType.PREVOTE
            and message.height == 1
            and message.round == 0
            and message.block_hash != NIL
            and message.validator in (r_key, s_key)
            and dst in p_and_q
        )

    return RealGossipSimulation(scenario, with_reactor=with_reactor, lose=lose)


def test_lost_prevotes_do_not_stall_for_good() -> None:
    """Once messages flow again, P and Q get the lost prevotes from their peers and decide."""
    sim = lost_prevotes_world(with_reactor=True)
    result = sim.run()
    assert result.faults["messages_lost_by_rule"] > 0  # the loss really happened
    assert result.faults["reactor_sends"] > 0
    assert all(host.height > 3 for host in sim.hosts)
    # Nothing was decided while the prevotes were lost; three heights were soon after.
    assert LOSS_ENDS_MS < result.sim_time_ms < LOSS_ENDS_MS + 10_000


def test_without_consensus_gossip_lost_prevotes_stall() -> None:
    """The same world with the node's old gossip (flood, seen-cache, last-vote re-gossip,
    watchdog) never decides height 1: the reproduction of issue 25 #2."""
    sim = lost_prevotes_world(with_reactor=False)
    with pytest.raises(InvariantError, match="liveness"):
        sim.run()
    assert all(host.height == 1 for host in sim.hosts)
    assert sim.result.max_round >= 10


def test_honest_round_states_are_never_judged_junk() -> None:
    """Announcements of honest hosts, reordered by the network, pass the reactor's checks
    (RealGossipHost.on_round_state fails the run otherwise) and carry real state."""
    sim = RealGossipSimulation(Scenario.from_seed(7, 5))
    sim.run()
    for host in sim.hosts:
        assert isinstance(host, RealGossipHost)
        if host.honest:
            assert isinstance(host.announced, RoundState)
            assert host.announced.height == host.engine.height


def test_hostile_proposals_junk_votes_and_split_equivocation_with_real_gossip() -> None:
    """Issue 17 with the node's gossip: a hostile proposer that also sends junk votes (not
    relayed: not from the set), then a validator that splits its peers with conflicting
    twins (relayed, so honest nodes see both and report it): agreement, every height."""
    hostile = RealGossipSimulation(one_byzantine("hostile", 30, 17_03))
    result = hostile.run()
    assert result.faults["hostile_proposals"] > 0 and result.faults["junk_votes"] > 0
    assert all(host.height > 30 for host in hostile.hosts if host.honest)
    split = RealGossipSimulation(one_byzantine("split", 20, 17_04))
    result = split.run()
    assert result.faults["split_equivocations"] > 0
    assert result.faults["evidence_reported"] > 0


if "FLUX_SIM_SEED" in os.environ:

    def test_replay_real_gossip() -> None:
        seed = int(os.environ["FLUX_SIM_SEED"])
        heights = int(os.environ.get("FLUX_SIM_HEIGHTS", str(HEIGHTS)))
        result = run_real_gossip_seed(seed, heights)
        print(f"seed {seed}: {result.events} events, faults {dict(result.faults)}")


def test_on_a_line_votes_cross_the_middle_validator_within_a_bounded_time() -> None:
    """Votes are not relayed (issue 22, wan23v): a host passes on a vote only through its
    consensus gossip, to the peers whose announcements lack it once its hold passed. On a
    line of three equal validators A - B - C (A and C never exchange a frame), A and C
    prevote and precommit only with the other end's votes, which only B's consensus gossip
    carries; every height must still be decided, within a bound per height (each of its
    two vote steps waits a hold and a gossip tick at B, not a timeout)."""
    ends = {0, 2}
    heights = 6
    scenario = Scenario(
        seed=23,
        heights=heights,
        powers=[1, 1, 1],
        byzantine={},
        gst_ms=10**9,  # the ends are never linked: the line holds for the whole run
        drop=0.0,
        duplicate=0.0,
        max_delay_ms=DELTA_MS,
        partitions=[],
        crashes=[],
    )

    def not_linked(_sim: Simulation, src: int, dst: int, _message: object) -> bool:
        return {src, dst} == ends

    sim = RealGossipSimulation(scenario, lose=not_linked)
    per_height_ms = 3 * TIMEOUTS.timeout_ms(Step.PROPOSE, 0)
    sim.deadline = heights * per_height_ms  # check_liveness fails the run past it
    result = sim.run()
    assert result.faults["messages_lost_by_rule"] > 0  # the ends really are apart
    assert result.faults["reactor_sends"] > 0
    assert all(host.height > heights for host in sim.hosts)
    assert result.max_round == 0, "a height needed a timeout: votes crossed the line too late"
