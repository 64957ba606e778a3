"""fix24w2 (review rev24w 1, 3): `Engine.keeps_next` says which proposals of the next
height the engine keeps (what a node in its commit wait may relay): the first of a round
and signer from that round's proposer, in round 0 or 1 or a round a buffered vote names.
It agrees with what the buffer and the next height's start then do."""

from __future__ import annotations

from consensus.engine import Engine
from consensus.events import NewHeight, ProposalReceived, Replayed, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.votes import Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, block_hash, keys, validator_set

SIGNERS = keys(4, b"fix24w2-keeps-next")
VALIDATORS = validator_set(SIGNERS)
HEIGHT = 7  # not an epoch's first block: the host knows the next set


def _proposal(round_: int, label: str, pol_round: int = -1) -> Proposal:
    key = next(k for k in SIGNERS if k.public_key == proposer(VALIDATORS, HEIGHT + 1, round_))
    return Proposal.create(key, CHAIN_ID, HEIGHT + 1, round_, pol_round, block_hash(label))


def test_keeps_next_is_what_the_buffer_and_the_next_height_keep() -> None:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(HEIGHT, VALIDATORS, None, VALIDATORS))
    far = 40
    backed = next(r for r in range(far + 1, far + 20) if r % 4 != far % 4)
    voter = next(k for k in SIGNERS if k.public_key != proposer(VALIDATORS, HEIGHT + 1, backed))
    engine.step(
        VoteReceived(
            Vote.create(voter, CHAIN_ID, VoteType.PREVOTE, HEIGHT + 1, backed, block_hash("b"))
        )
    )
    outsider = next(k for k in SIGNERS if k.public_key != proposer(VALIDATORS, HEIGHT + 1, 0))
    cases = [
        (_proposal(0, "first"), True),
        (_proposal(0, "second"), False),  # the same round and signer: ignored
        (Proposal.create(outsider, CHAIN_ID, HEIGHT + 1, 0, -1, block_hash("x")), False),
        (_proposal(1, "next round"), True),
        (_proposal(far, "far", pol_round=0), False),  # refused once the height starts
        (_proposal(backed, "backed"), True),  # a buffered vote names its round
    ]
    for p, kept in cases:
        assert engine.keeps_next(p) is kept, (p.round, kept)
        engine.step(ProposalReceived(p, b"block " + p.block_hash))
    outputs = engine.step(NewHeight(HEIGHT + 1, VALIDATORS, None, VALIDATORS))
    replayed = [
        o.input.proposal
        for o in outputs
        if isinstance(o, Replayed) and isinstance(o.input, ProposalReceived)
    ]
    assert replayed == [p for p, kept in cases if kept]
