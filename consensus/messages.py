"""Signed proposals, and the step of a round that every signature and timeout names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, Self

from fluxchain.core.crypto import (
    HASH_SIZE,
    PUBKEY_SIZE,
    SIGNATURE_SIZE,
    TAG_PROPOSAL,
    SigningKey,
    tagged_hash,
    verify,
)
from fluxchain.core.encoding import U64, as_bytes, as_int, as_list, pack, unpack
from fluxchain.core.errors import DecodeError, Reason

MAX_ROUND: Final = 2**31  # the same bound as a vote's round


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


@dataclass(frozen=True, slots=True)
class Proposal:
    """The proposer of (height, round) offers `block_hash`; pol_round is its validRound or -1.

    The block bytes travel next to the proposal, unsigned: the hash binds them.
    """

    height: int
    round: int
    pol_round: int
    block_hash: bytes
    proposer: bytes
    signature: bytes

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

    def to_fields(self) -> list[Any]:
        return [
            self.height,
            self.round,
            self.pol_round,
            self.block_hash,
            self.proposer,
            self.signature,
        ]

    @classmethod
    def from_fields(cls, fields: Any) -> Self:
        height, round_, pol_round, block_hash, proposer, signature = as_list(
            fields, "proposal", length=6
        )
        round_ = as_int(round_, "proposal.round", hi=MAX_ROUND)
        # A proof-of-lock round is always an earlier round of the same height.
        pol_round = as_int(pol_round, "proposal.pol_round", lo=-1, hi=MAX_ROUND)
        if pol_round >= round_:
            raise DecodeError(Reason.BAD_FIELD, "proposal.pol_round: must be below the round")
        return cls(
            as_int(height, "proposal.height", lo=1, hi=U64),
            round_,
            pol_round,
            as_bytes(block_hash, "proposal.block_hash", size=HASH_SIZE),
            as_bytes(proposer, "proposal.proposer", size=PUBKEY_SIZE),
            as_bytes(signature, "proposal.signature", size=SIGNATURE_SIZE),
        )

    def encode(self) -> bytes:
        return pack(self.to_fields())

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse canonical bytes; raise DecodeError on anything else."""
        return cls.from_fields(unpack(data))
