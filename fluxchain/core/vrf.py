"""The chain's VRF: BLS12-381 unique signatures (blspy's proof-of-possession scheme).

A BLS signature is a deterministic function of the secret and the message, and only one
signature verifies for a given (public key, message): a signer has exactly one valid
answer, unlike ECDSA, whose signer picks a nonce and so a signature among many. Hashing
that one signature gives an output nobody can predict before the signer reveals it and
the signer cannot choose: what epoch randomness needs (docs/economics.md, "Unbiasable
randomness").

Keys: a node's VRF secret is derived from its secp256k1 node secret (`derive_secret`),
so no new key file exists; the wallet (registering the node) and the node (signing its
reveals) call the same function. The public key (48 bytes) is bound to the chain and the
node key by a proof of possession (`pop_prove`), so nobody can claim a key they do not
hold, nor reuse one proved for another node or chain.

Every malformed input raises DecodeError with a stable reason; no library exception leaves
this module. This is the only module that imports blspy.
"""

from __future__ import annotations

from typing import Final

from blspy import G1Element, G2Element, PopSchemeMPL, PrivateKey

from fluxchain.core.crypto import NOTHING_VERIFIED, SigningKey, Verified, sha256, tagged_hash
from fluxchain.core.errors import DecodeError, Reason

VRF_KEY_SIZE: Final = 48  # compressed G1 point
VRF_SIGNATURE_SIZE: Final = 96  # compressed G2 point
TAG_VRF_SECRET: Final = b"fluxchain/vrf/1"  # secret derivation from the node secret
TAG_VRF_POP: Final = b"fluxchain/vrf-pop/1"  # proof of possession
TAG_REVEAL: Final = b"fluxchain/reveal/1"  # a proposer's reveal for a height

# The identity point: a "key" whose signatures are the identity too, for every message.
_INFINITY_KEY: Final = bytes(G1Element())


class VrfSecret:
    """A BLS secret key; never leaves the process."""

    __slots__ = ("_key",)

    def __init__(self, key: PrivateKey) -> None:
        self._key = key

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.get_g1())


def derive_secret(node_secret: bytes) -> VrfSecret:
    """The VRF secret of the node whose secp256k1 secret is `node_secret`:
    KeyGen(sha256(TAG_VRF_SECRET || node_secret)). One function for the wallet and the node."""
    if len(node_secret) != 32:
        raise DecodeError(Reason.BAD_FIELD, "a node secret is 32 bytes")
    return VrfSecret(PopSchemeMPL.key_gen(sha256(TAG_VRF_SECRET + node_secret)))


def check_key(vrf_key: bytes, where: str = "vrf_key") -> bytes:
    """`vrf_key` if it is a valid public key: 48 bytes, a point of the prime-order
    subgroup, not the identity; DecodeError(bad_pubkey) otherwise."""
    _parse_key(vrf_key, where)
    return vrf_key


def _parse_key(vrf_key: bytes, where: str) -> G1Element:
    if type(vrf_key) is not bytes or len(vrf_key) != VRF_KEY_SIZE:
        raise DecodeError(Reason.BAD_PUBKEY, f"{where}: a VRF key is {VRF_KEY_SIZE} bytes")
    if vrf_key == _INFINITY_KEY:
        raise DecodeError(Reason.BAD_PUBKEY, f"{where}: the identity point is not a key")
    try:
        # from_bytes checks the encoding, that the point is on the curve and in the subgroup
        return G1Element.from_bytes(vrf_key)
    except (ValueError, RuntimeError):
        raise DecodeError(Reason.BAD_PUBKEY, f"{where}: not a BLS12-381 G1 point") from None


def _parse_signature(signature: bytes, where: str) -> G2Element:
    if type(signature) is not bytes or len(signature) != VRF_SIGNATURE_SIZE:
        raise DecodeError(
            Reason.BAD_SIGNATURE, f"{where}: a VRF signature is {VRF_SIGNATURE_SIZE} bytes"
        )
    try:
        return G2Element.from_bytes(signature)
    except (ValueError, RuntimeError):
        raise DecodeError(Reason.BAD_SIGNATURE, f"{where}: not a BLS12-381 G2 point") from None


def sign(secret: VrfSecret, message: bytes) -> bytes:
    """The unique signature of `message` under `secret` (96 bytes)."""
    return bytes(PopSchemeMPL.sign(secret._key, message))


def verify(vrf_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if `signature` is the signature of `message` under `vrf_key`.

    Raises DecodeError for bytes that are not a key or a signature at all."""
    key = _parse_key(vrf_key, "vrf_key")
    sig = _parse_signature(signature, "signature")
    return bool(PopSchemeMPL.verify(key, message, sig))


def output(signature: bytes) -> bytes:
    """The VRF output of a (verified) signature: 32 uniform bytes."""
    return sha256(signature)


# -- proof of possession ----------------------------------------------------------------------


def pop_message(chain_id: str, node_key: bytes, vrf_key: bytes) -> bytes:
    """What a VRF key signs to be claimed for `node_key` on `chain_id`."""
    return tagged_hash(TAG_VRF_POP, chain_id, node_key + vrf_key)


def pop_prove(secret: VrfSecret, chain_id: str, node_key: bytes) -> bytes:
    """The proof that the holder of `secret` lets `node_key` use its public key on this chain."""
    return sign(secret, pop_message(chain_id, node_key, secret.public_key))


def claim(node_key: SigningKey, chain_id: str) -> tuple[bytes, bytes]:
    """(VRF key, proof of possession) of the node whose key is `node_key`: what a
    NODE_REGISTER, a key-rotating NODE_UPDATE and a genesis node carry."""
    secret = derive_secret(node_key.secret)
    return secret.public_key, pop_prove(secret, chain_id, node_key.public_key)


def pop_verify(vrf_key: bytes, proof: bytes, chain_id: str, node_key: bytes) -> bool:
    """True if `proof` is `vrf_key`'s proof of possession for `node_key` on `chain_id`.

    Raises DecodeError for bytes that are not a key or a signature at all."""
    return verify(vrf_key, pop_message(chain_id, node_key, vrf_key), proof)


# -- block reveals ----------------------------------------------------------------------------


def reveal_message(chain_id: str, height: int) -> bytes:
    """What the proposer of `height` signs: nothing it can vary (not the round, the
    time, the parent or the txs), so it has one reveal per height."""
    return tagged_hash(TAG_REVEAL, chain_id, height.to_bytes(8, "big"))


def make_reveal(secret: VrfSecret, chain_id: str, height: int) -> bytes:
    """The reveal a proposer puts in its block of `height`: the driver and every test
    chain builder call this one function."""
    return sign(secret, reveal_message(chain_id, height))


def check_reveal(
    vrf_key: bytes,
    chain_id: str,
    height: int,
    reveal: bytes,
    verified: Verified = NOTHING_VERIFIED,
) -> bool:
    """True if `reveal` is the reveal of `vrf_key` for `height` (False for garbage bytes).
    A (key, message, reveal) triple in `verified` was verified already."""
    message = reveal_message(chain_id, height)
    if (vrf_key, message, reveal) in verified:
        return True
    try:
        return verify(vrf_key, message, reveal)
    except DecodeError:
        return False
