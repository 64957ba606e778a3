"""Signed votes and commit certificates.

They live in the core, not in `consensus/`, because the state machine verifies them too:
EVIDENCE carries two conflicting votes, and every block carries the commit of its parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Final, Self

from fluxchain.core.crypto import (
    HASH_SIZE,
    NOTHING_VERIFIED,
    PUBKEY_SIZE,
    SIGNATURE_SIZE,
    TAG_VOTE,
    Hash,
    PubKey,
    Signature,
    SigningKey,
    Verified,
    sha256,
    tagged_hash,
    verify,
)
from fluxchain.core.encoding import U64, Bytes, Int, ListOf, Record, Tuple, pack, record
from fluxchain.core.errors import BlockError, DecodeError, Reason
from fluxchain.core.validators import MAX_VALIDATORS_HARD, ValidatorSet

NIL: bytes = b""  # the block hash of a vote for nothing
MAX_ROUND: Final = 2**31  # rounds grow one per failed round: never near this
BlockHeight = Annotated[int, Int(1, U64)]
Round = Annotated[int, Int(0, MAX_ROUND)]


class VoteType(IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


def vote_digest(
    chain_id: str, vote_type: VoteType, height: int, round_: int, block_hash: bytes
) -> bytes:
    """The digest a validator signs for a vote. All precommits for a block share it."""
    return tagged_hash(TAG_VOTE, chain_id, pack([int(vote_type), height, round_, block_hash]))


@record("vote")
@dataclass(frozen=True, slots=True)
class Vote(Record):
    """A prevote or precommit for `block_hash` (NIL for no block) at (height, round)."""

    type: VoteType
    height: BlockHeight
    round: Round
    block_hash: Annotated[bytes, Bytes(HASH_SIZE, or_empty=True)]
    validator: PubKey
    signature: Signature

    @classmethod
    def create(
        cls,
        key: SigningKey,
        chain_id: str,
        vote_type: VoteType,
        height: int,
        round_: int,
        block_hash: bytes,
    ) -> Self:
        """Sign a new vote. The caller (the signer guard) decides whether it may."""
        digest = vote_digest(chain_id, vote_type, height, round_, block_hash)
        return cls(vote_type, height, round_, block_hash, key.public_key, key.sign(digest))

    def digest(self, chain_id: str) -> bytes:
        return vote_digest(chain_id, self.type, self.height, self.round, self.block_hash)

    def verify(self, chain_id: str) -> bool:
        """True iff the signature is the validator's over this vote on `chain_id`."""
        return verify(self.validator, self.digest(chain_id), self.signature)

    def conflicts_with(self, other: Vote) -> bool:
        """Equivocation: same validator and (height, round, type), different block."""
        return (
            self.validator == other.validator
            and self.type == other.type
            and self.height == other.height
            and self.round == other.round
            and self.block_hash != other.block_hash
        )


@record("commit")
@dataclass(frozen=True, slots=True)
class Commit(Record):
    """Precommits of more than 2/3 of the voting power for one block: its finality proof.

    Signatures are sorted by validator key, which makes the encoding of a given set of
    signatures unique and rules out counting one validator twice.
    """

    height: BlockHeight
    round: Round
    block_hash: Hash
    # (validator pubkey, signature)
    signatures: Annotated[
        tuple[tuple[bytes, bytes], ...],
        ListOf(
            Tuple(validator=Bytes(PUBKEY_SIZE), signature=Bytes(SIGNATURE_SIZE)),
            max_len=MAX_VALIDATORS_HARD,
        ),
    ]

    def check_decoded(self, where: str) -> None:
        keys = [key for key, _ in self.signatures]
        if keys != sorted(set(keys)):
            raise DecodeError(
                Reason.BAD_FIELD, f"{where}.signatures must be sorted, without repeats"
            )

    @classmethod
    def from_votes(cls, votes: list[Vote]) -> Self:
        """Assemble a commit from precommits for one block (already verified)."""
        first = votes[0]
        sigs = sorted({(v.validator, v.signature) for v in votes})
        return cls(first.height, first.round, first.block_hash, tuple(sigs))

    def hash(self) -> bytes:
        return sha256(pack(self.to_fields()))

    def verify(
        self,
        chain_id: str,
        validators: ValidatorSet,
        height: int,
        block_hash: bytes,
        verified: Verified = NOTHING_VERIFIED,
    ) -> None:
        """Raise BlockError unless this commit finalizes `block_hash` at `height`.
        Signatures in `verified` (`signed_triples`) were verified already."""
        if self.height != height or self.block_hash != block_hash:
            raise BlockError(Reason.BAD_COMMIT, f"commit is for another block than {height}")
        digest = vote_digest(chain_id, VoteType.PRECOMMIT, height, self.round, block_hash)
        power = 0
        for pubkey, sig in self.signatures:
            weight = validators.power_of(pubkey)
            if weight == 0:
                raise BlockError(Reason.BAD_COMMIT, "commit signed by a non-validator")
            if (pubkey, digest, sig) not in verified and not verify(pubkey, digest, sig):
                raise BlockError(Reason.BAD_COMMIT, "commit carries an invalid signature")
            power += weight
        if not validators.has_quorum(power):
            raise BlockError(
                Reason.BAD_COMMIT,
                f"commit has {power} of {validators.total_power} voting power; needs > 2/3",
            )

    def signed_triples(self, chain_id: str) -> list[tuple[bytes, bytes, bytes]]:
        """(validator key, digest, signature) of each precommit: what `verify` checks,
        for verifying them elsewhere first (crypto.Verified)."""
        digest = vote_digest(chain_id, VoteType.PRECOMMIT, self.height, self.round, self.block_hash)
        return [(pubkey, digest, sig) for pubkey, sig in self.signatures]


def check_equivocation(first: Vote, second: Vote, chain_id: str) -> None:
    """Raise unless the two votes prove that one validator signed two different blocks."""
    if not first.conflicts_with(second):
        raise BlockError(Reason.BAD_EVIDENCE_VOTES, "votes do not conflict")
    if not (first.verify(chain_id) and second.verify(chain_id)):
        raise BlockError(
            Reason.BAD_EVIDENCE_VOTES, "a vote of the evidence has an invalid signature"
        )


def evidence_pair(first: Vote, second: Vote) -> tuple[Vote, Vote]:
    """The canonical order of two conflicting votes (by block hash), so one fault has one id."""
    return (first, second) if first.block_hash < second.block_hash else (second, first)


def sign_commit(
    keys: list[SigningKey], chain_id: str, height: int, round_: int, block_hash: bytes
) -> Commit:
    """A commit signed by `keys` (the genesis stand-in signers in tests and benchmarks)."""
    votes = [Vote.create(k, chain_id, VoteType.PRECOMMIT, height, round_, block_hash) for k in keys]
    return Commit.from_votes(votes)
