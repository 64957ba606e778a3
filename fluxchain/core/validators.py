"""The validator set: who signs blocks, with how much voting power."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from fluxchain.core.crypto import PUBKEY_SIZE, sha256
from fluxchain.core.encoding import as_bytes, as_int, as_list, pack
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.vrf import VRF_KEY_SIZE

MAX_VALIDATORS_HARD = 1_000  # bound for decoding; the live cap is params.max_validators


@dataclass(frozen=True, slots=True)
class Validator:
    """One validator: its node key, voting power (its collateral, in FLUX), and the VRF
    key its block reveals verify against (core/vrf.py), so that a header's reveal is
    checked with the validator set alone."""

    pubkey: bytes
    power: int
    vrf_key: bytes


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
        return [[v.pubkey, v.power, v.vrf_key] for v in self.validators]

    @classmethod
    def from_fields(cls, fields: Any) -> Self:
        items = as_list(fields, "validators", max_len=MAX_VALIDATORS_HARD)
        out = []
        for i, item in enumerate(items):
            pubkey, power, vrf_key = as_list(item, f"validators[{i}]", length=3)
            out.append(
                Validator(
                    as_bytes(pubkey, f"validators[{i}].pubkey", size=PUBKEY_SIZE),
                    as_int(power, f"validators[{i}].power", lo=1),
                    # Size only: every key in a set was checked (point, subgroup, proof of
                    # possession) when its node named it.
                    as_bytes(vrf_key, f"validators[{i}].vrf_key", size=VRF_KEY_SIZE),
                )
            )
        return cls(tuple(out))

    def hash(self) -> bytes:
        """Commitment to the set, carried in every header."""
        return sha256(pack(self.to_fields()))
