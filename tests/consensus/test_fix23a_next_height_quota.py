"""The engine's next-height buffer keeps what `admits` promises, whichever way a vote
comes (red23a 1), and `admits_proposal` says which proposals of its height it would drop
(red23a 2: the host must not log those)."""

from __future__ import annotations

from consensus.engine import Engine
from consensus.events import NewHeight, Refused, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from consensus.voteset import MAX_FUTURE_ROUNDS_PER_VALIDATOR
from fluxchain.core.crypto import sha256
from fluxchain.core.votes import NIL, Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)


def _engine(*, next_set_known: bool) -> Engine:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(1, VALIDATORS, None, VALIDATORS if next_set_known else None))
    return engine


def test_a_validators_next_height_votes_stepped_in_are_buffered_within_its_quota() -> None:
    engine = _engine(next_set_known=True)
    refused = []
    for round_ in range(20):
        vote = Vote.create(SIGNERS[1], CHAIN_ID, VoteType.PREVOTE, 2, round_, NIL)
        out = engine.step(VoteReceived(vote))
        refused += [o.message for o in out if isinstance(o, Refused)]
    kept = engine.buffered()[1]
    assert {v.round for v in kept} == set(range(MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1))
    assert len(refused) == 20 - len(kept)  # refused, not dropped: they may come again
    # Another validator's vote still fits, and is what `admits` promised.
    honest = Vote.create(SIGNERS[2], CHAIN_ID, VoteType.PREVOTE, 2, 0, b"\x07" * 32)
    assert engine.admits(honest)
    engine.step(VoteReceived(honest))
    assert honest in engine.buffered()[1]


def test_keys_outside_a_known_next_set_are_not_buffered_and_an_unknown_set_checks_later() -> None:
    outsider = keys(1, b"red23a outsider")[0]
    vote = Vote.create(outsider, CHAIN_ID, VoteType.PREVOTE, 2, 0, NIL)
    known = _engine(next_set_known=True)
    assert not known.admits(vote)
    known.step(VoteReceived(vote))
    assert known.buffered()[1] == []
    # At an epoch's first block the next set is not known: kept, checked at `NewHeight`.
    unknown = _engine(next_set_known=False)
    assert unknown.admits(vote)
    unknown.step(VoteReceived(vote))
    assert unknown.buffered()[1] == [vote]
    unknown.step(NewHeight(2, VALIDATORS, None, VALIDATORS))
    assert not unknown.votes.holds(vote)


def test_admits_proposal_is_the_rounds_proposer_at_the_engines_height_before_the_decision() -> None:
    engine = _engine(next_set_known=True)
    block = sha256(b"a block")
    chosen = proposer(VALIDATORS, 1, 3)
    real = next(k for k in SIGNERS if k.public_key == chosen)
    other = next(k for k in SIGNERS if k.public_key != chosen)
    assert engine.admits_proposal(Proposal.create(real, CHAIN_ID, 1, 3, -1, block))
    assert engine.admits_proposal(Proposal.create(real, CHAIN_ID, 1, 3, 1, block))  # pol round
    assert not engine.admits_proposal(Proposal.create(other, CHAIN_ID, 1, 3, -1, block))
    assert not engine.admits_proposal(Proposal.create(real, CHAIN_ID, 2, 3, -1, block))
    engine.decided = block
    assert not engine.admits_proposal(Proposal.create(real, CHAIN_ID, 1, 3, -1, block))
