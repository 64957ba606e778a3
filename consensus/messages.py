"""Signed proposals, and the step of a round that every signature and timeout names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Self

from fluxchain.core.crypto import (
    TAG_PROPOSAL,
    Hash,
    PubKey,
    Signature,
    SigningKey,
    tagged_hash,
    verify,
)
from fluxchain.core.encoding import Int, Record, pack, record, unpack
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.votes import MAX_ROUND, BlockHeight, Round


class Step(IntEnum):
    """The steps of a round, in the order a validator passes through them."""

    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


def proposal_digest(
    chain_id: str, height: int, round_: int, pol_round: int, block_hash: bytes
) -> bytes:
    """The digest a proposer signs: everything in the proposal but the signer and signature."""
    return tagged_hash(TAG_PROPOSAL, chain_id, pack([height, round_, pol_round, block_hash]))


@record("proposal")
@dataclass(frozen=True, slots=True)
class Proposal(Record):
    """The proposer of (height, round) offers `block_hash`; pol_round is its validRound or -1.

    The block bytes travel next to the proposal, unsigned: the hash binds them.
    """

    height: BlockHeight
    round: Round
    # A proof-of-lock round is always an earlier round of the same height (check_decoded).
    pol_round: Annotated[int, Int(-1, MAX_ROUND)]
    block_hash: Hash
    proposer: PubKey
    signature: Signature

    @classmethod
    def create(
        cls,
        key: SigningKey,
        chain_id: str,
        height: int,
        round_: int,
        pol_round: int,
        block_hash: bytes,
    ) -> Self:
        """Sign a new proposal. The caller (the signer guard) decides whether it may."""
        digest = proposal_digest(chain_id, height, round_, pol_round, block_hash)
        return cls(height, round_, pol_round, block_hash, key.public_key, key.sign(digest))

    def digest(self, chain_id: str) -> bytes:
        return proposal_digest(chain_id, self.height, self.round, self.pol_round, self.block_hash)

    def verify(self, chain_id: str) -> bool:
        """True iff the signature is the proposer's over this proposal on `chain_id`."""
        return verify(self.proposer, self.digest(chain_id), self.signature)

    def check_decoded(self, where: str) -> None:
        if self.pol_round >= self.round:
            raise DecodeError(Reason.BAD_FIELD, f"{where}.pol_round: must be below the round")

    def encode(self) -> bytes:
        return pack(self.to_fields())

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse canonical bytes; raise DecodeError on anything else."""
        return cls.from_fields(unpack(data))
