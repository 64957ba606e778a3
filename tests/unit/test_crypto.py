"""Keys, domain-separated signatures (cross-checked with pure-Python ecdsa), addresses."""

from __future__ import annotations

import hashlib
import random

import ecdsa
import pytest
from ecdsa.util import sigdecode_string, sigencode_string

from fluxchain.core.crypto import (
    TAG_TX,
    TAG_VOTE,
    SigningKey,
    address_of,
    decode_address,
    encode_address,
    first_invalid,
    tagged_hash,
    verdicts,
    verify,
)
from fluxchain.core.errors import FluxError, Reason

ORDER = ecdsa.SECP256k1.order


def test_sign_verify_and_domain_separation() -> None:
    key = SigningKey(bytes(range(1, 33)))
    digest = tagged_hash(TAG_TX, "flux-devnet", b"payload")
    sig = key.sign(digest)
    assert len(sig) == 64
    assert verify(key.public_key, digest, sig)
    assert not verify(key.public_key, tagged_hash(TAG_VOTE, "flux-devnet", b"payload"), sig)
    assert not verify(key.public_key, tagged_hash(TAG_TX, "flux-mainnet", b"payload"), sig)
    assert not verify(SigningKey.generate().public_key, digest, sig)


@pytest.mark.parametrize("seed", range(20))
def test_cross_check_with_ecdsa(seed: int) -> None:
    secret = hashlib.sha256(b"key %d" % seed).digest()
    ours = SigningKey(secret)
    theirs = ecdsa.SigningKey.from_string(secret, curve=ecdsa.SECP256k1)
    assert theirs.get_verifying_key().to_string("compressed") == ours.public_key
    digest = tagged_hash(TAG_TX, "c", b"msg %d" % seed)
    # ours -> theirs
    sig = ours.sign(digest)
    assert theirs.get_verifying_key().verify_digest(sig, digest, sigdecode=sigdecode_string)
    r, s = sigdecode_string(sig, ORDER)
    assert s <= ORDER // 2, "signatures are low-S"
    # theirs -> ours (normalised to low-S, as every valid signature must be)
    r, s = sigdecode_string(
        theirs.sign_digest_deterministic(digest, sigencode=sigencode_string), ORDER
    )
    low = sigencode_string(r, min(s, ORDER - s), ORDER)
    assert verify(ours.public_key, digest, low)
    if s != min(s, ORDER - s):
        assert not verify(ours.public_key, digest, sigencode_string(r, s, ORDER))


def test_high_s_rejected() -> None:
    key = SigningKey.generate()
    digest = hashlib.sha256(b"x").digest()
    sig = key.sign(digest)
    r, s = sigdecode_string(sig, ORDER)
    assert not verify(key.public_key, digest, sigencode_string(r, ORDER - s, ORDER))


def test_garbage_inputs_do_not_verify() -> None:
    digest = hashlib.sha256(b"x").digest()
    assert not verify(b"\x02" + b"\xff" * 32, digest, b"\x00" * 64)
    assert not verify(b"short", digest, b"\x00" * 64)
    assert not verify(SigningKey.generate().public_key, digest, b"\x00" * 63)
    with pytest.raises(FluxError):
        SigningKey(b"\x00" * 32)
    with pytest.raises(FluxError):
        SigningKey(b"\x01" * 31)


@pytest.mark.parametrize("seed", range(5))
def test_first_invalid_gives_verifys_verdicts_and_the_first_refused(seed: int) -> None:
    """Block import's loops (`first_invalid`, and `verdicts` over runs of it) accept exactly
    what `verify` accepts: valid checks mixed with every way `verify` refuses one, in a
    seeded random order, in batches short and longer than a run."""
    rng = random.Random(seed)
    keys = [SigningKey(rng.randbytes(31) + b"\x01") for _ in range(3)]

    def check() -> tuple[bytes, bytes, bytes]:
        key, digest = rng.choice(keys), rng.randbytes(32)
        sig = key.sign(digest)
        r, s = sigdecode_string(sig, ORDER)
        return rng.choice(
            [
                (key.public_key, digest, sig),  # valid, most often
                (key.public_key, digest, sig),
                (key.public_key, digest, sig),
                (key.public_key, rng.randbytes(32), sig),  # another digest
                (rng.choice(keys).public_key, digest, sig),  # maybe another key
                (key.public_key, digest, sigencode_string(r, ORDER - s, ORDER)),  # high S
                (key.public_key, digest, sig[:63]),  # short signature
                (key.public_key, digest, sig + b"\x00"),  # long signature
                (key.public_key, digest[:31], sig),  # short digest
                (b"\x02" + b"\xff" * 32, digest, sig),  # not a point
                (key.public_key[:32], digest, sig),  # short key
                (key.public_key, digest, b"\xff" * 64),  # r and s past the order
            ]
        )

    for turn in range(30):
        size = rng.randrange(0, 12) if turn % 5 else rng.randrange(60, 140)
        checks = [check() for _ in range(size)]
        if size > 12:  # the refusals spread thinner, so that some runs pass whole
            checks = [c if rng.random() < 0.05 else _valid(rng, keys) for c in checks]
        verified = [verify(*c) for c in checks]
        expected = verified.index(False) if False in verified else None
        keys_, digests, signatures = ([c[i] for c in checks] for i in range(3))
        assert verdicts(keys_, digests, signatures) == bytes(verified), f"seed {seed}"
        found = first_invalid(keys_, digests, signatures)
        assert found == expected, f"seed {seed}: {verified}"
    with pytest.raises(ValueError):
        verdicts([keys[0].public_key], [], [])


def _valid(rng: random.Random, keys: list[SigningKey]) -> tuple[bytes, bytes, bytes]:
    key, digest = rng.choice(keys), rng.randbytes(32)
    return key.public_key, digest, key.sign(digest)


def test_addresses() -> None:
    key = SigningKey(bytes(range(1, 33)))
    addr = address_of(key.public_key)
    text = encode_address(addr, "tflux")
    assert text.startswith("tflux1")
    assert decode_address(text, "tflux") == addr
    assert decode_address(f"  {text.upper()} ", "tflux") == addr
    with pytest.raises(FluxError) as err:
        decode_address(text, "flux")
    assert err.value.reason is Reason.BAD_ADDRESS
    broken = text[:-1] + ("q" if text[-1] != "q" else "p")
    with pytest.raises(FluxError, match="not a valid bech32"):
        decode_address(broken, "tflux")
