"""rev24w3: `Engine.keeps_next` lets one far-round proposal of the next height be relayed
that the next height then refuses.

Attack (a byzantine validator V, during honest nodes' commit wait): V signs one vote of
the next height in each of four rounds it proposes beyond round 1. The next-height vote
buffer keeps a validator's votes in up to MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1 = 4 rounds
(`_admits_next`: `len(rounds) <= MAX_FUTURE_ROUNDS_PER_VALIDATOR`), so all four are
buffered, and `keeps_next` says yes to V's proposal of the fourth round ("a round a
buffered vote names"): every honest node relays it, a block of up to max_block_bytes.
When the height starts at round 0 the vote set takes only three future rounds of V
(`HeightVoteSet.add`: TOO_FAR_AHEAD), the fourth round's vote is refused, and with it the
proposal (a round past the next with no vote of it). What happens now: relayed by every
node, then refused by every node. What should happen: `keeps_next` agrees with what the
next height keeps (its docstring), so the proposal is not relayed.
"""

from __future__ import annotations

from consensus.engine import Engine
from consensus.events import NewHeight, ProposalReceived, Replayed, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.votes import NIL, Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, block_hash, keys, validator_set

SIGNERS = keys(4, b"rev24w3-keeps-next-quota")
VALIDATORS = validator_set(SIGNERS)
HEIGHT = 7  # not an epoch's first block: the host knows the next set


def test_keeps_next_refuses_a_round_whose_buffered_vote_the_next_height_refuses() -> None:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(HEIGHT, VALIDATORS, None, VALIDATORS))
    byzantine = SIGNERS[0]
    rounds = [
        r for r in range(2, 60) if proposer(VALIDATORS, HEIGHT + 1, r) == byzantine.public_key
    ][:4]
    assert len(rounds) == 4
    for round_ in rounds:
        vote = Vote.create(byzantine, CHAIN_ID, VoteType.PREVOTE, HEIGHT + 1, round_, NIL)
        engine.step(VoteReceived(vote))
    buffered_votes = engine.buffered()[1]
    assert sorted(v.round for v in buffered_votes) == rounds, "all four votes buffered"
    last = Proposal.create(byzantine, CHAIN_ID, HEIGHT + 1, rounds[-1], -1, block_hash("far"))
    relayed = engine.keeps_next(last)
    engine.step(ProposalReceived(last, b"block " + last.block_hash))
    outputs = engine.step(NewHeight(HEIGHT + 1, VALIDATORS, None, VALIDATORS))
    kept = [
        o.input.proposal
        for o in outputs
        if isinstance(o, Replayed) and isinstance(o.input, ProposalReceived)
    ]
    print(f"rounds={rounds} relayed={relayed} kept={len(kept)} round={engine.round}")
    assert kept == [], "the next height refuses the fourth round's proposal"
    assert relayed is False, (
        f"keeps_next said the next height keeps V's proposal of round {rounds[-1]} "
        "(so every node relays it), which that height refuses"
    )
