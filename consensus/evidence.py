"""Evidence of equivocation: two conflicting votes signed by one validator.

The object is gossip-ready and is what an EVIDENCE transaction carries; the state machine
verifies it with `check_equivocation` and slashes the validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import Record, pack, record, unpack
from fluxchain.core.errors import BlockError, DecodeError, Reason
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Vote, check_equivocation, evidence_pair


@record("evidence")
@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence(Record):
    """Two votes of one validator for one (height, round, type), in `evidence_pair` order."""

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def of(cls, first: Vote, second: Vote) -> Self:
        """Evidence from two conflicting votes in any order."""
        vote_a, vote_b = evidence_pair(first, second)
        return cls(vote_a, vote_b)

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    @property
    def height(self) -> int:
        return self.vote_a.height

    def verify(self, chain_id: str, validators: ValidatorSet | None = None) -> None:
        """Raise BlockError unless the votes conflict, are signed, and (if given) by a validator."""
        check_equivocation(self.vote_a, self.vote_b, chain_id)
        if validators is not None and validators.power_of(self.validator) == 0:
            raise BlockError(Reason.UNKNOWN_VALIDATOR, "evidence against a non-validator")

    def check_decoded(self, where: str) -> None:
        # One fault has one encoding, hence one id: reject the swapped order.
        if evidence_pair(self.vote_a, self.vote_b) != (self.vote_a, self.vote_b) or (
            self.vote_a == self.vote_b
        ):
            raise DecodeError(Reason.BAD_FIELD, f"{where}: votes must be in canonical order")

    def encode(self) -> bytes:
        return pack(self.to_fields())

    @classmethod
    def decode(cls, data: bytes) -> Self:
        return cls.from_fields(unpack(data))

    def hash(self) -> bytes:
        """The id of this fault, for duplicate suppression in gossip and blocks."""
        return sha256(self.encode())
