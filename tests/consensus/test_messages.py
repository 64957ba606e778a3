"""Proposal and evidence encodings: one canonical form, round trips, rejections."""

from __future__ import annotations

import msgpack
import pytest

from consensus.evidence import DuplicateVoteEvidence
from consensus.messages import Proposal
from fluxchain.core.encoding import pack
from fluxchain.core.errors import BlockError, DecodeError, Reason
from fluxchain.core.votes import NIL, Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, block_hash, keys, validator_set


def test_proposal_round_trip_and_signature() -> None:
    key = keys(1)[0]
    proposal = Proposal.create(key, CHAIN_ID, 7, 3, 1, block_hash("b"))
    decoded = Proposal.decode(proposal.encode())
    assert decoded == proposal
    assert decoded.verify(CHAIN_ID)
    assert not decoded.verify("another-chain")  # domain separation by chain id


def test_proposal_without_pol_round_encodes_minus_one() -> None:
    key = keys(1)[0]
    proposal = Proposal.create(key, CHAIN_ID, 1, 0, -1, block_hash("b"))
    assert Proposal.decode(proposal.encode()).pol_round == -1


def test_proposal_signature_covers_every_field() -> None:
    key = keys(1)[0]
    proposal = Proposal.create(key, CHAIN_ID, 7, 3, 1, block_hash("b"))
    for changed in (
        Proposal(8, 3, 1, proposal.block_hash, proposal.proposer, proposal.signature),
        Proposal(7, 4, 1, proposal.block_hash, proposal.proposer, proposal.signature),
        Proposal(7, 3, 0, proposal.block_hash, proposal.proposer, proposal.signature),
        Proposal(7, 3, 1, block_hash("c"), proposal.proposer, proposal.signature),
    ):
        assert not changed.verify(CHAIN_ID)


def test_non_canonical_proposal_is_rejected() -> None:
    key = keys(1)[0]
    proposal = Proposal.create(key, CHAIN_ID, 7, 3, 1, block_hash("b"))
    fields = proposal.to_fields()
    # The same values with a wider integer encoding than necessary: valid msgpack, not ours.
    wide = bytearray(pack(fields))
    assert wide[1] == 7
    non_canonical = bytes([wide[0], 0xCD, 0x00, 0x07]) + bytes(wide[2:])
    assert msgpack.unpackb(non_canonical)[0] == 7
    with pytest.raises(DecodeError) as info:
        Proposal.decode(non_canonical)
    assert info.value.reason is Reason.NON_CANONICAL


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, 0),  # height 0 does not exist
        (2, 3),  # pol_round must be below the round
        (2, -2),
        (3, b"short"),
        (4, b"\x02" * 32),
        (5, b"\x00" * 63),
        (1, "3"),
    ],
)
def test_malformed_proposal_fields_are_rejected(index: int, value: object) -> None:
    key = keys(1)[0]
    fields = Proposal.create(key, CHAIN_ID, 7, 3, 1, block_hash("b")).to_fields()
    fields[index] = value
    with pytest.raises(DecodeError):
        Proposal.decode(pack(fields))


def test_proposal_with_extra_field_is_rejected() -> None:
    key = keys(1)[0]
    fields = Proposal.create(key, CHAIN_ID, 7, 3, 1, block_hash("b")).to_fields()
    with pytest.raises(DecodeError):
        Proposal.decode(pack([*fields, 0]))


def _conflicting_votes() -> tuple[Vote, Vote]:
    key = keys(1)[0]
    first = Vote.create(key, CHAIN_ID, VoteType.PREVOTE, 5, 2, block_hash("x"))
    second = Vote.create(key, CHAIN_ID, VoteType.PREVOTE, 5, 2, NIL)
    return first, second


def test_evidence_is_canonical_whatever_the_order_seen() -> None:
    first, second = _conflicting_votes()
    one = DuplicateVoteEvidence.of(first, second)
    other = DuplicateVoteEvidence.of(second, first)
    assert one == other
    assert one.vote_a.block_hash < one.vote_b.block_hash
    assert one.to_fields() == [one.vote_a.to_fields(), one.vote_b.to_fields()]
    assert DuplicateVoteEvidence.decode(one.encode()) == one
    assert one.hash() == other.hash()
    one.verify(CHAIN_ID, validator_set(keys(1)))


def test_evidence_in_swapped_order_is_rejected() -> None:
    first, second = _conflicting_votes()
    evidence = DuplicateVoteEvidence.of(first, second)
    swapped = pack([evidence.vote_b.to_fields(), evidence.vote_a.to_fields()])
    with pytest.raises(DecodeError):
        DuplicateVoteEvidence.decode(swapped)


def test_evidence_of_votes_that_do_not_conflict_fails_verification() -> None:
    key = keys(1)[0]
    first = Vote.create(key, CHAIN_ID, VoteType.PREVOTE, 5, 2, block_hash("x"))
    later = Vote.create(key, CHAIN_ID, VoteType.PREVOTE, 5, 3, NIL)  # another round: no fault
    with pytest.raises(BlockError) as info:
        DuplicateVoteEvidence.of(first, later).verify(CHAIN_ID)
    assert info.value.reason is Reason.BAD_EVIDENCE_VOTES


def test_evidence_against_a_non_validator_fails_verification() -> None:
    first, second = _conflicting_votes()
    with pytest.raises(BlockError) as info:
        DuplicateVoteEvidence.of(first, second).verify(CHAIN_ID, validator_set(keys(2, b"o")))
    assert info.value.reason is Reason.UNKNOWN_VALIDATOR
