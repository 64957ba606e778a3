"""The vote set counts each validator's power once and turns a second vote into evidence."""

from __future__ import annotations

from consensus.voteset import MAX_FUTURE_ROUNDS_PER_VALIDATOR, AddResult, HeightVoteSet
from fluxchain.core.votes import NIL, Vote, VoteType, check_equivocation
from tests.consensus.helpers import CHAIN_ID, block_hash, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS, [1, 2, 3, 4])  # total 10: quorum needs 7, one third 4


def vote(index: int, value: bytes, round_: int = 0, kind: VoteType = VoteType.PREVOTE) -> Vote:
    return Vote.create(SIGNERS[index], CHAIN_ID, kind, 1, round_, value)


def test_power_is_counted_once_per_validator() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    value = block_hash("a")
    assert votes.add(vote(3, value), 0, ()).result is AddResult.ADDED
    for _ in range(3):
        assert votes.add(vote(3, value), 0, ()).result is AddResult.DUPLICATE
    assert votes.prevotes(0).power_for[value] == 4
    assert not votes.prevotes(0).has_quorum_for(value)
    assert votes.add(vote(2, value), 0, ()).result is AddResult.ADDED
    assert votes.prevotes(0).has_quorum_for(value)  # 7 of 10
    assert votes.prevotes(0).quorum_value() == value


def test_two_of_three_is_not_a_quorum() -> None:
    signers = keys(3)
    votes = HeightVoteSet(CHAIN_ID, 1, validator_set(signers))
    for i in range(2):
        votes.add(Vote.create(signers[i], CHAIN_ID, VoteType.PRECOMMIT, 1, 0, NIL), 0, ())
    assert not votes.precommits(0).has_quorum_any()
    votes.add(Vote.create(signers[2], CHAIN_ID, VoteType.PRECOMMIT, 1, 0, NIL), 0, ())
    assert votes.precommits(0).has_quorum_for(NIL)


def test_equivocation_is_evidence() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    first = vote(3, block_hash("a"))
    second = vote(3, block_hash("b"))
    assert votes.add(first, 0, ()).result is AddResult.ADDED
    outcome = votes.add(second, 0, ())
    assert outcome.result is AddResult.CONFLICT
    assert outcome.evidence is not None
    check_equivocation(outcome.evidence.vote_a, outcome.evidence.vote_b, CHAIN_ID)
    # "b" was never proposed: the vote cannot serve any rule and is not kept.
    assert not outcome.counted
    assert votes.prevotes(0).power == 4
    assert block_hash("b") not in votes.prevotes(0).power_for
    assert votes.add(second, 0, ()).result is AddResult.CONFLICT  # still not kept


def test_equivocator_counts_once_for_anything_and_once_per_block() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    a, b = block_hash("a"), block_hash("b")
    votes.add(vote(3, a), 0, (a, b))
    outcome = votes.add(vote(3, b), 0, (a, b))
    assert outcome.result is AddResult.CONFLICT
    assert outcome.counted  # a proposed block: others may need this vote as a proof of lock
    prevotes = votes.prevotes(0)
    assert prevotes.power == 4  # toward "anything": once
    assert prevotes.power_for == {a: 4, b: 4}
    assert votes.add(vote(3, b), 0, (a, b)).result is AddResult.DUPLICATE
    # Two tallies can never both reach a quorum while honest validators vote once:
    votes.add(vote(2, a), 0, (a, b))
    assert prevotes.quorum_value() == a
    assert not prevotes.has_quorum_for(b)


def test_prevote_and_precommit_are_separate() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    assert votes.add(vote(0, block_hash("a")), 0, ()).result is AddResult.ADDED
    precommit = vote(0, NIL, kind=VoteType.PRECOMMIT)
    assert votes.add(precommit, 0, ()).result is AddResult.ADDED  # no conflict across types


def test_rejects_strangers_and_forgeries() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    stranger = Vote.create(keys(1, b"s")[0], CHAIN_ID, VoteType.PREVOTE, 1, 0, NIL)
    assert votes.add(stranger, 0, ()).result is AddResult.NOT_A_VALIDATOR
    genuine = vote(1, NIL)
    forged = Vote(genuine.type, 1, 0, block_hash("z"), genuine.validator, genuine.signature)
    assert votes.add(forged, 0, ()).result is AddResult.BAD_SIGNATURE
    assert votes.prevotes(0).power == 0


def test_forged_conflicting_vote_is_not_evidence() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    genuine = vote(1, NIL)
    votes.add(genuine, 0, ())
    forged = Vote(genuine.type, 1, 0, block_hash("z"), genuine.validator, genuine.signature)
    outcome = votes.add(forged, 0, ())
    assert outcome.result is AddResult.BAD_SIGNATURE
    assert outcome.evidence is None


def test_future_rounds_are_capped_per_validator() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    for r in range(1, MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1):
        assert votes.add(vote(0, NIL, round_=r * 1000), 0, ()).result is AddResult.ADDED
    too_many = vote(0, NIL, round_=999_999)
    assert votes.add(too_many, 0, ()).result is AddResult.TOO_FAR_AHEAD
    # Another type in a round it already holds is fine; so is any round once we catch up.
    assert votes.add(vote(0, NIL, 1000, VoteType.PRECOMMIT), 0, ()).result is AddResult.ADDED
    assert votes.add(too_many, 3000, ()).result is AddResult.ADDED


def test_round_power_counts_distinct_validators_of_any_type() -> None:
    votes = HeightVoteSet(CHAIN_ID, 1, VALIDATORS)
    votes.add(vote(2, NIL, round_=5), 0, ())
    votes.add(vote(2, NIL, round_=5, kind=VoteType.PRECOMMIT), 0, ())
    assert votes.round_power(5) == 3
    votes.add(vote(0, NIL, round_=5, kind=VoteType.PRECOMMIT), 0, ())
    assert votes.round_power(5) == 4
    assert VALIDATORS.exceeds_one_third(votes.round_power(5))
