"""Review rev13b of wan23v (consensus frames per height): p2p defences that held."""

from __future__ import annotations

from consensus.messages import Step
from fluxchain.node.node import RESEND_AFTER_MS
from p2p.consensus_gossip import ConsensusGossip, committed_announcement
from p2p.messages import RoundState

PEER = "peer"


def test_an_honest_node_through_commit_waits_and_block_sync_never_announces_backwards() -> None:
    """A ROUND_STATE that goes back within a connection costs its sender 20 points
    (`bad_round_state`); the commit-wait announcement must never make an honest node look
    like that. Its positions: in consensus at 7 (round 2), the commit wait after 7 (8,
    round 0), height 8 started (round 0, then 1), block sync importing 8..12 while its
    engine waits (13, round 0), then height 13 started."""
    sequence = [
        RoundState(7, 2, int(Step.PRECOMMIT), b"", ()),
        committed_announcement(7),
        RoundState(8, 0, int(Step.PREVOTE), b"\x01" * 32, ()),
        RoundState(8, 1, int(Step.PROPOSE), b"", ()),
        committed_announcement(8),
        committed_announcement(12),
        RoundState(13, 0, int(Step.PROPOSE), b"", ()),
    ]
    gossip = ConsensusGossip(RESEND_AFTER_MS)
    for state in sequence:
        problem = gossip.on_round_state(PEER, state)
        assert problem is None, f"{state} judged junk after the one before: {problem}"
    assert gossip.peer(PEER).height == 13
