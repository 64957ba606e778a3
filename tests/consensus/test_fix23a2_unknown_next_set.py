"""Where the next set is unknown (an epoch's first height), keys outside the current set
share a bounded part of the next-height vote buffer, and throw-away keys' proposals rank
after the current set's choice of proposer (rev23a 7-8)."""

from __future__ import annotations

from consensus.engine import (
    MAX_BUFFERED_PROPOSALS,
    MAX_BUFFERED_STRANGER_VOTES,
    Engine,
    Fate,
)
from consensus.events import NewHeight, NextSetKnown, ProposalReceived, Refused, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from consensus.voteset import MAX_FUTURE_ROUNDS_PER_VALIDATOR
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, block_hash, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)


def _unknown_next_set() -> Engine:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(1, VALIDATORS, None, None))
    assert engine.next_validators is None
    return engine


def test_strangers_share_a_bounded_part_of_the_vote_buffer_and_validators_still_fit() -> None:
    engine = _unknown_next_set()
    refused: list[Vote] = []
    n = 0
    while not refused:  # fresh keys, each as many rounds as its quota takes
        key = SigningKey(sha256(b"fix23a2 stranger %d" % n))
        n += 1
        for round_ in range(MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1):
            vote = Vote.create(key, CHAIN_ID, VoteType.PREVOTE, 2, round_, NIL)
            out = engine.step(VoteReceived(vote))
            refused += [
                o.message for o in out if isinstance(o, Refused) and isinstance(o.message, Vote)
            ]
    assert len(engine.buffered()[1]) == MAX_BUFFERED_STRANGER_VOTES
    honest = Vote.create(SIGNERS[1], CHAIN_ID, VoteType.PREVOTE, 2, 0, sha256(b"block 2"))
    assert engine.admits(honest)
    engine.step(VoteReceived(honest))
    assert honest in engine.buffered()[1]
    # The share is per height: the replay empties it, and strangers fit again.
    engine.step(NewHeight(2, VALIDATORS, None, None))
    assert engine.buffered()[1] == []
    stranger = Vote.create(
        SigningKey(sha256(b"fix23a2 later")), CHAIN_ID, VoteType.PREVOTE, 3, 0, NIL
    )
    assert engine.admits(stranger)


def test_the_current_sets_proposer_displaces_a_throwaway_keys_proposal_of_its_round() -> None:
    engine = _unknown_next_set()
    block = block_hash("fix23a2 next block")
    for n in range(MAX_BUFFERED_PROPOSALS):
        thief = SigningKey(sha256(b"fix23a2 thief %d" % n))
        engine.step(ProposalReceived(Proposal.create(thief, CHAIN_ID, 2, 0, -1, block), b"b"))
    assert len(engine.buffered()[0]) == MAX_BUFFERED_PROPOSALS
    chosen = proposer(VALIDATORS, 2, 0)
    signer = next(k for k in SIGNERS if k.public_key == chosen)
    real = Proposal.create(signer, CHAIN_ID, 2, 0, -1, block)
    out = engine.step(ProposalReceived(real, b"b"))
    assert real in engine.buffered()[0]
    evicted = [o.message for o in out if isinstance(o, Refused)]
    assert len(evicted) == 1 and isinstance(evicted[0], Proposal)
    assert evicted[0].proposer != chosen  # refused: may come again
    # A further throw-away key's of round 0 ranks last: refused itself.
    late = Proposal.create(SigningKey(sha256(b"fix23a2 late")), CHAIN_ID, 2, 0, -1, block)
    out = engine.step(ProposalReceived(late, b"b"))
    assert [o.message for o in out if isinstance(o, Refused)] == [late]


def test_proposal_fate_refuses_far_rounds_and_drops_an_equivocation_and_copies() -> None:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(1, VALIDATORS, None, VALIDATORS))
    far = next(r for r in range(10, 100) if proposer(VALIDATORS, 1, r) == SIGNERS[1].public_key)
    assert engine.proposal_fate(Proposal.create(SIGNERS[1], CHAIN_ID, 1, far, 0, b"\x01" * 32)) is (
        Fate.REFUSE
    )
    round_ = engine.round
    chosen = next(k for k in SIGNERS if k.public_key == proposer(VALIDATORS, 1, round_))
    first = Proposal.create(chosen, CHAIN_ID, 1, round_, -1, block_hash("first"))
    assert engine.proposal_fate(first) is Fate.KEEP
    engine.step(ProposalReceived(first, b"first"))
    assert engine.proposal_fate(first) is Fate.DROP  # a copy
    second = Proposal.create(chosen, CHAIN_ID, 1, round_, -1, block_hash("second"))
    assert engine.proposal_fate(second) is Fate.DROP  # equivocation, no vote for it


def test_the_next_set_known_at_commit_screens_the_buffer_and_then_admits_its_members() -> None:
    """p2p24 1: at an epoch's first height the host learns the next set when it commits
    (`NextSetKnown`): the buffered votes and proposals of keys outside it go then, not at
    the replay, and from then on the set's members fit whatever strangers came before."""
    engine = _unknown_next_set()
    newcomer = SigningKey(sha256(b"p2p24 newcomer"))
    next_set = validator_set(sorted([*SIGNERS[1:], newcomer], key=lambda k: k.public_key))
    n = 0
    while engine.admits(
        Vote.create(SigningKey(sha256(b"p2p24 s %d" % n)), CHAIN_ID, VoteType.PREVOTE, 2, 0, NIL)
    ):
        key = SigningKey(sha256(b"p2p24 s %d" % n))
        n += 1
        for round_ in range(MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1):
            engine.step(VoteReceived(Vote.create(key, CHAIN_ID, VoteType.PREVOTE, 2, round_, NIL)))
    kept = [Vote.create(k, CHAIN_ID, VoteType.PREVOTE, 2, 0, NIL) for k in SIGNERS]
    for vote in kept:
        engine.step(VoteReceived(vote))
    late = Vote.create(newcomer, CHAIN_ID, VoteType.PREVOTE, 2, 0, NIL)
    assert not engine.admits(late)  # the strangers' share is full
    block = block_hash("p2p24 next block")
    thief = Proposal.create(SigningKey(sha256(b"p2p24 thief")), CHAIN_ID, 2, 0, -1, block)
    engine.step(ProposalReceived(thief, b"b"))
    assert engine.buffered()[0] == [thief]

    assert engine.step(NextSetKnown(2, next_set)) == []
    assert engine.next_validators == next_set
    assert engine.buffered() == ([], kept[1:])  # SIGNERS[0] left the set
    assert engine.admits(late)
    engine.step(VoteReceived(late))
    assert late in engine.buffered()[1]
    assert not engine.admits(
        Vote.create(SigningKey(sha256(b"p2p24 later")), CHAIN_ID, VoteType.PREVOTE, 2, 0, NIL)
    )
