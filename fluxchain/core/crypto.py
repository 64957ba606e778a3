"""Hashing, secp256k1 keys and signatures, and addresses.

Signatures are 64-byte compact (r || s) ECDSA over a 32-byte digest, low-S only:
libsecp256k1 produces low-S and its verifier rejects high-S, so a signature has exactly
one valid encoding. Every digest that is signed is domain-separated by `tagged_hash`:
a vote on one chain can never be replayed as a transaction, or on another chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence, Set
from typing import Annotated, Final

import bech32
from coincurve import PrivateKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from fluxchain.core.encoding import Bytes
from fluxchain.core.errors import FluxError, Reason

PUBKEY_SIZE: Final = 33  # compressed SEC1
SIGNATURE_SIZE: Final = 64  # compact r || s
ADDRESS_SIZE: Final = 20
HASH_SIZE: Final = 32

# Field types of records (core/encoding.py). Sizes only: that a key is a point on the curve
# is checked where a key is first named (core/tx.py), not each time a record holding it loads.
PubKey = Annotated[bytes, Bytes(PUBKEY_SIZE)]
Signature = Annotated[bytes, Bytes(SIGNATURE_SIZE)]
Address = Annotated[bytes, Bytes(ADDRESS_SIZE)]
Hash = Annotated[bytes, Bytes(HASH_SIZE)]

# Domain tags: one per kind of signed message. Changing one is a hard fork.
TAG_TX: Final = b"fluxchain/tx/1"
TAG_VOTE: Final = b"fluxchain/vote/1"
TAG_PROPOSAL: Final = b"fluxchain/proposal/1"
TAG_HANDSHAKE: Final = b"fluxchain/handshake/1"
TAG_NODE_KEY: Final = b"fluxchain/node-key/1"  # a node key's proof of possession

_CTX = GLOBAL_CONTEXT.ctx
# Parsing a compressed key costs a field square root; validators and busy senders
# repeat, so parsed keys are kept. Bounded: cleared wholesale when full.
# (key, message, signature) triples already found valid by the same function that would
# check them here: secp256k1 (33-byte key, 32-byte digest) or VRF (48-byte key, the
# reveal message). Block sync verifies a block's commit and reveal on another process
# before the block's turn (fluxchain/node/sync_checks.py) and passes them in, so that
# import looks them up instead of verifying again. A triple absent is verified as ever:
# the set can spare work, never change a verdict.
Verified = Set[tuple[bytes, bytes, bytes]]
NOTHING_VERIFIED: Final[Verified] = frozenset()
_PUBKEY_CACHE: dict[bytes, object] = {}
_PUBKEY_CACHE_MAX: Final = 65_536
# Addresses of recent senders: a sender's txs come in runs, and SHA-256 costs more
# than the lookup. Bounded the same way.
_ADDRESS_CACHE: dict[bytes, bytes] = {}
# cffi looks a C type up by its text on every ffi.new("…"); the import path allocates
# one signature per verification, so the type is looked up once here.
_SIGNATURE_T: Final = ffi.typeof("secp256k1_ecdsa_signature *")


def sha256(data: bytes) -> bytes:
    """SHA-256 of `data`."""
    return hashlib.sha256(data).digest()


def tagged_hash(tag: bytes, chain_id: str, payload: bytes) -> bytes:
    """The digest that gets signed: SHA-256 over (tag, chain id, payload), length-prefixed."""
    return hashlib.sha256(tag_prefix(tag, chain_id) + payload).digest()


def tag_prefix(tag: bytes, chain_id: str) -> bytes:
    """What `tagged_hash` puts before the payload: the tag and chain id, length-prefixed."""
    prefix = _TAG_PREFIXES.get((tag, chain_id))
    if prefix is None:
        # Each length is one byte: a longer chain id has no digest (decoders bound it to
        # 64 bytes first, so this refuses only what a caller failed to check).
        try:
            chain = chain_id.encode()
        except UnicodeEncodeError:
            raise FluxError(Reason.BAD_FIELD, "a chain id is UTF-8 text") from None
        if len(tag) > 255 or len(chain) > 255:
            raise FluxError(Reason.BAD_FIELD, "a chain id or tag is longer than 255 bytes")
        prefix = bytes((len(tag),)) + tag + bytes((len(chain),)) + chain
        if len(_TAG_PREFIXES) < 64:  # a node knows a handful of (tag, chain) pairs
            _TAG_PREFIXES[(tag, chain_id)] = prefix
    return prefix


_TAG_PREFIXES: dict[tuple[bytes, str], bytes] = {}


class SigningKey:
    """A secp256k1 private key that signs digests with 64-byte low-S signatures."""

    __slots__ = ("_key", "public_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise FluxError(Reason.BAD_FIELD, "a private key is 32 bytes")
        try:
            self._key = PrivateKey(secret)
        except ValueError:
            raise FluxError(Reason.BAD_FIELD, "not a valid secp256k1 private key") from None
        self.public_key: bytes = self._key.public_key.format(compressed=True)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the OS's CSPRNG."""
        return cls(PrivateKey().secret)

    @property
    def secret(self) -> bytes:
        """The 32-byte secret (for keystores only)."""
        return bytes(self._key.secret)

    def sign(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest (already tagged); return a compact low-S signature."""
        if len(digest) != HASH_SIZE:
            raise FluxError(Reason.BAD_FIELD, "only 32-byte digests are signed")
        sig = ffi.new("secp256k1_ecdsa_signature *")
        if not lib.secp256k1_ecdsa_sign(_CTX, sig, digest, self._key.secret, ffi.NULL, ffi.NULL):
            raise FluxError(Reason.BAD_SIGNATURE, "signing failed")
        out = ffi.new("unsigned char[64]")
        lib.secp256k1_ecdsa_signature_serialize_compact(_CTX, out, sig)
        return bytes(ffi.buffer(out, SIGNATURE_SIZE))


def _parsed_pubkey(pubkey: bytes) -> object | None:
    parsed = _PUBKEY_CACHE.get(pubkey)
    if parsed is None:
        if len(pubkey) != PUBKEY_SIZE:
            return None
        parsed = ffi.new("secp256k1_pubkey *")
        if not lib.secp256k1_ec_pubkey_parse(_CTX, parsed, pubkey, PUBKEY_SIZE):
            return None
        if len(_PUBKEY_CACHE) >= _PUBKEY_CACHE_MAX:
            _PUBKEY_CACHE.clear()
        _PUBKEY_CACHE[pubkey] = parsed
    return parsed


def is_valid_pubkey(pubkey: bytes) -> bool:
    """True if `pubkey` is a compressed point on secp256k1."""
    return _parsed_pubkey(pubkey) is not None


def verify(pubkey: bytes, digest: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid low-S signature of `digest` by `pubkey`.

    Calls libsecp256k1 directly (through coincurve's cffi binding): cffi releases the GIL
    for the call, so verification threads run on all cores.
    """
    if len(signature) != SIGNATURE_SIZE or len(digest) != HASH_SIZE:
        return False
    parsed = _PUBKEY_CACHE.get(pubkey) or _parsed_pubkey(pubkey)
    if parsed is None:
        return False
    sig = ffi.new(_SIGNATURE_T)
    if not lib.secp256k1_ecdsa_signature_parse_compact(_CTX, sig, signature):
        return False
    return bool(lib.secp256k1_ecdsa_verify(_CTX, sig, digest, parsed))


def first_invalid(
    pubkeys: Sequence[bytes], digests: Sequence[bytes], signatures: Sequence[bytes]
) -> int | None:
    """The index of the first (key, digest, signature) that `verify` refuses, None if it
    accepts them all: `verify`'s verdicts, in one loop.

    Why: block import checks thousands of signatures a block on one thread, and the call
    to `verify` with its lookups and a new cffi signature each time cost about a
    microsecond a signature beside libsecp256k1's own check (issue 24). Here the library's
    functions are looked up once, and one signature struct is parsed into for each check
    (a parse overwrites it whole, or fails and refuses the signature).
    """
    cache, parse_key, ctx = _PUBKEY_CACHE, _parsed_pubkey, _CTX
    parse, check = lib.secp256k1_ecdsa_signature_parse_compact, lib.secp256k1_ecdsa_verify
    sig = ffi.new(_SIGNATURE_T)
    for index, (pubkey, digest, signature) in enumerate(
        zip(pubkeys, digests, signatures, strict=True)
    ):
        parsed = cache.get(pubkey) or parse_key(pubkey)
        if (
            parsed is None
            or len(signature) != SIGNATURE_SIZE
            or len(digest) != HASH_SIZE
            or not parse(ctx, sig, signature)
            or not check(ctx, sig, digest, parsed)
        ):
            return index
    return None


def verdicts(
    pubkeys: Sequence[bytes], digests: Sequence[bytes], signatures: Sequence[bytes]
) -> bytearray:
    """One byte per (key, digest, signature): 1 if `verify` accepts it, 0 if it refuses it.

    `first_invalid` over runs of them, taken up again after each refusal: a run of valid
    signatures (all of them, but in a bad block) costs one call and no Python a signature
    beyond that loop's (a store a verdict measured ≈ 0.15 µs a signature more), and a
    refusal costs at most a run's slices.
    """
    count = len(pubkeys)
    if not count == len(digests) == len(signatures):
        raise ValueError("verdicts: keys, digests and signatures differ in number")
    out = bytearray(b"\x01") * count
    start = 0
    while start < count:
        end = min(start + _RUN, count)
        bad = first_invalid(pubkeys[start:end], digests[start:end], signatures[start:end])
        if bad is None:
            start = end
        else:
            out[start + bad] = 0
            start += bad + 1
    return out


# Checks `verdicts` hands `first_invalid` at a time: what a refusal makes it copy again is
# bounded by it, and beside a run's libsecp256k1 time its slices and call are noise.
_RUN: Final = 64


def address_of(pubkey: bytes) -> bytes:
    """The 20-byte account address of a public key: SHA-256 truncated to 160 bits."""
    address = _ADDRESS_CACHE.get(pubkey)
    if address is None:
        address = hashlib.sha256(pubkey).digest()[:ADDRESS_SIZE]
        if len(_ADDRESS_CACHE) >= _PUBKEY_CACHE_MAX:
            _ADDRESS_CACHE.clear()
        _ADDRESS_CACHE[pubkey] = address
    return address


def encode_address(address: bytes, hrp: str) -> str:
    """Bech32 text form (`flux1…`, `tflux1…`) of a 20-byte address."""
    data = bech32.convertbits(address, 8, 5)
    assert data is not None  # 8→5 bit conversion with padding cannot fail
    return bech32.bech32_encode(hrp, data)


def decode_address(text: str, hrp: str) -> bytes:
    """Parse a bech32 address of network `hrp`; raise FluxError(bad_address) otherwise."""
    got_hrp, data = bech32.bech32_decode(text.strip())
    if got_hrp is None or data is None:
        raise FluxError(Reason.BAD_ADDRESS, f"{text!r} is not a valid bech32 address")
    if got_hrp != hrp:
        raise FluxError(Reason.BAD_ADDRESS, f"address is for network {got_hrp!r}, not {hrp!r}")
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != ADDRESS_SIZE:
        raise FluxError(Reason.BAD_ADDRESS, "address payload is not 20 bytes")
    return bytes(raw)
