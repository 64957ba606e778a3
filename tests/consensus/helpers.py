"""Keys and validator sets shared by the consensus unit tests."""

from __future__ import annotations

from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.validators import Validator, ValidatorSet

CHAIN_ID = "fluxchain-test"


def keys(count: int, tag: bytes = b"k") -> list[SigningKey]:
    """Deterministic keys, sorted by public key (the validator set's order)."""
    made = [SigningKey(sha256(tag + bytes([i]))) for i in range(count)]
    return sorted(made, key=lambda k: k.public_key)


def validator_set(signers: list[SigningKey], powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [1] * len(signers)
    return ValidatorSet.of(
        [Validator(k.public_key, p) for k, p in zip(signers, powers, strict=True)]
    )


def block_hash(label: str) -> bytes:
    return sha256(label.encode())
