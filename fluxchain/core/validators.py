"""The validator set: who signs blocks, with how much voting power."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Self

from fluxchain.core.crypto import PubKey, sha256
from fluxchain.core.encoding import MAX_AMOUNT, Bytes, Int, ListOf, Record, pack, record
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.vrf import VRF_KEY_SIZE

MAX_VALIDATORS_HARD: Final = 1_000  # bound for decoding; the live cap is params.max_validators


@record("validator")
@dataclass(frozen=True, slots=True)
class Validator(Record):
    """One validator: its node key, voting power (its collateral, in FLUX), and the VRF
    key its block reveals verify against (core/vrf.py), so that a header's reveal is
    checked with the validator set alone."""

    pubkey: PubKey
    power: Annotated[int, Int(1, MAX_AMOUNT)]
    # Size only: every key in a set was checked (point, subgroup, proof of possession)
    # when its node named it.
    vrf_key: Annotated[bytes, Bytes(VRF_KEY_SIZE)]


# A set's wire form is the bare array of its validators.
_VALIDATORS: Final = ListOf(Validator, max_len=MAX_VALIDATORS_HARD)


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """Validators sorted by public key; the order is canonical, so the hash is too."""

    validators: tuple[Validator, ...]

    def __post_init__(self) -> None:
        keys = [v.pubkey for v in self.validators]
        if keys != sorted(set(keys)):
            raise DecodeError(Reason.BAD_FIELD, "validators must be sorted by key, without repeats")
        if any(v.power <= 0 for v in self.validators):
            raise DecodeError(Reason.BAD_FIELD, "validator power must be positive")

    @classmethod
    def of(cls, validators: list[Validator]) -> Self:
        """Build a set from validators in any order."""
        return cls(tuple(sorted(validators, key=lambda v: v.pubkey)))

    @property
    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    def power_of(self, pubkey: bytes) -> int:
        """Voting power of `pubkey`, 0 if it is not a validator."""
        for v in self.validators:
            if v.pubkey == pubkey:
                return v.power
        return 0

    def vrf_key_of(self, pubkey: bytes) -> bytes | None:
        """The VRF key of validator `pubkey`, None if it is not a validator."""
        for v in self.validators:
            if v.pubkey == pubkey:
                return v.vrf_key
        return None

    def index_of(self, pubkey: bytes) -> int | None:
        """Position of `pubkey` in the set, None if it is not a validator."""
        for i, v in enumerate(self.validators):
            if v.pubkey == pubkey:
                return i
        return None

    def has_quorum(self, power: int) -> bool:
        """True if `power` is more than two thirds of the total (integer arithmetic)."""
        return 3 * power > 2 * self.total_power

    def exceeds_one_third(self, power: int) -> bool:
        """True if `power` is more than one third of the total: at least one honest voter."""
        return 3 * power > self.total_power

    def to_fields(self) -> list[Any]:
        return _VALIDATORS.encode(self.validators)

    @classmethod
    def from_fields(cls, fields: Any) -> Self:
        return cls(_VALIDATORS.decode(fields, "validators"))

    def hash(self) -> bytes:
        """Commitment to the set, carried in every header."""
        return sha256(pack(self.to_fields()))
