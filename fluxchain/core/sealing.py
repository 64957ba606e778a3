"""Sealed app secrets: the cryptography, in one place (no state, no I/O).

Three layers, each a standard construction from a maintained library:

- **Data key.** Each app's secret values are encrypted under one 32-byte data key. The
  owner's wallet derives it, so it never has to be stored: HKDF-SHA256 over the owner's
  private key, salted with a random 16-byte `key_salt` that the chain keeps next to the
  ciphertexts (`derive_data_key`). A new salt is a new key (rotation). The chain also
  keeps `key_check`, a tagged SHA-256 of the data key: whoever unseals a key can tell
  whether it is the right one, and nothing about the key follows from it.
- **Values.** ChaCha20-Poly1305 (RFC 8439) under the data key, a random 12-byte nonce in
  front of each ciphertext, and as associated data the chain id, the app name, the key
  check and the secret's component, kind and name (`value_context`): a ciphertext moved
  to another field, app, key or chain fails to open.
- **Sealing the data key to a node.** ECIES on the node's secp256k1 key, the composition
  of eciespy's default configuration: an ephemeral key pair, the ECDH point (libsecp256k1
  via coincurve), HKDF-SHA256 over (ephemeral public key ‖ shared point), both
  uncompressed, then AES-256-GCM with a 16-byte nonce; the sealed form is
  ephemeral key (65) ‖ nonce (16) ‖ tag (16) ‖ ciphertext (32) = 129 bytes.

Plaintext values exist only in the owner's wallet and in the hosting agent's memory.
"""

from __future__ import annotations

import os
from typing import Final

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fluxchain.core.crypto import tagged_hash
from fluxchain.core.encoding import pack
from fluxchain.core.errors import FluxError, Reason

DATA_KEY_SIZE: Final = 32
KEY_SALT_SIZE: Final = 16
KEY_CHECK_SIZE: Final = 32
VALUE_NONCE_SIZE: Final = 12  # ChaCha20-Poly1305's nonce
AEAD_TAG_SIZE: Final = 16
_ECIES_NONCE_SIZE: Final = 16  # eciespy's default AES-GCM nonce length
_UNCOMPRESSED: Final = 65
SEALED_KEY_SIZE: Final = _UNCOMPRESSED + _ECIES_NONCE_SIZE + AEAD_TAG_SIZE + DATA_KEY_SIZE

TAG_DATA_KEY: Final = b"fluxchain/app-secrets-key/1"
TAG_KEY_CHECK: Final = b"fluxchain/app-secrets-check/1"
TAG_VALUE: Final = b"fluxchain/app-secret-value/1"


class SealingError(FluxError):
    """A sealed key or ciphertext that does not open: wrong key, tampered, or garbage."""


def _hkdf(material: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=DATA_KEY_SIZE, salt=salt, info=info).derive(
        material
    )


def new_key_salt() -> bytes:
    """A fresh salt: with it, a new data key (an app's first secrets, or a rotation)."""
    return os.urandom(KEY_SALT_SIZE)


def derive_data_key(owner_secret: bytes, chain_id: str, app: str, key_salt: bytes) -> bytes:
    """The app's data key, from the owner's 32-byte private key: the owner can always
    re-derive it to re-seal, and no wallet file has to keep it."""
    if len(key_salt) != KEY_SALT_SIZE:
        raise FluxError(Reason.BAD_FIELD, f"a key salt is {KEY_SALT_SIZE} bytes")
    info = pack([TAG_DATA_KEY, chain_id, app])
    return _hkdf(owner_secret, info, key_salt)


def key_check(data_key: bytes) -> bytes:
    """What the chain stores to recognise the data key (SHA-256 of a 256-bit random-looking
    key reveals nothing of it)."""
    return tagged_hash(TAG_KEY_CHECK, "", data_key)


def value_context(
    chain_id: str, app: str, check: bytes, component: str, kind: int, name: str
) -> bytes:
    """The associated data of one secret value: what it is bound to."""
    return pack([TAG_VALUE, chain_id, app, check, component, kind, name])


def encrypt_value(data_key: bytes, context: bytes, value: bytes) -> bytes:
    """nonce ‖ ChaCha20-Poly1305(value) with `context` as associated data."""
    nonce = os.urandom(VALUE_NONCE_SIZE)
    return nonce + ChaCha20Poly1305(data_key).encrypt(nonce, value, context)


def decrypt_value(data_key: bytes, context: bytes, ciphertext: bytes) -> bytes:
    """The value `encrypt_value` sealed; SealingError if the key, context or bytes differ."""
    if len(ciphertext) < VALUE_NONCE_SIZE + AEAD_TAG_SIZE:
        raise SealingError(Reason.BAD_FIELD, "a secret ciphertext is too short")
    nonce, body = ciphertext[:VALUE_NONCE_SIZE], ciphertext[VALUE_NONCE_SIZE:]
    try:
        return ChaCha20Poly1305(data_key).decrypt(nonce, body, context)
    except InvalidTag:
        raise SealingError(Reason.BAD_FIELD, "a secret value does not open") from None


def _ecies_key(ephemeral: bytes, shared: bytes) -> bytes:
    return _hkdf(ephemeral + shared, b"")


def seal_key(node_public_key: bytes, data_key: bytes) -> bytes:
    """The data key sealed (ECIES) to the node whose public key is given."""
    if len(data_key) != DATA_KEY_SIZE:
        raise FluxError(Reason.BAD_FIELD, f"a data key is {DATA_KEY_SIZE} bytes")
    ephemeral = PrivateKey()
    ephemeral_public = ephemeral.public_key.format(compressed=False)
    shared = PublicKey(node_public_key).multiply(ephemeral.secret).format(compressed=False)
    nonce = os.urandom(_ECIES_NONCE_SIZE)
    sealed = AESGCM(_ecies_key(ephemeral_public, shared)).encrypt(nonce, data_key, None)
    body, tag = sealed[:-AEAD_TAG_SIZE], sealed[-AEAD_TAG_SIZE:]
    return ephemeral_public + nonce + tag + body


def unseal_key(node_secret: bytes, sealed: bytes) -> bytes:
    """The data key sealed to this node (its 32-byte private key); SealingError if the
    bytes were sealed to another key or are garbage."""
    if len(sealed) != SEALED_KEY_SIZE:
        raise SealingError(Reason.BAD_FIELD, f"a sealed key is {SEALED_KEY_SIZE} bytes")
    ephemeral_public = sealed[:_UNCOMPRESSED]
    nonce = sealed[_UNCOMPRESSED : _UNCOMPRESSED + _ECIES_NONCE_SIZE]
    tag = sealed[
        _UNCOMPRESSED + _ECIES_NONCE_SIZE : _UNCOMPRESSED + _ECIES_NONCE_SIZE + AEAD_TAG_SIZE
    ]
    body = sealed[_UNCOMPRESSED + _ECIES_NONCE_SIZE + AEAD_TAG_SIZE :]
    try:
        shared = PublicKey(ephemeral_public).multiply(node_secret).format(compressed=False)
        return AESGCM(_ecies_key(ephemeral_public, shared)).decrypt(nonce, body + tag, None)
    except (InvalidTag, ValueError):
        raise SealingError(
            Reason.BAD_FIELD, "the sealed key does not open with this node's key"
        ) from None


def open_sealed_key(node_secret: bytes, sealed: bytes, check: bytes) -> bytes:
    """Unseal and check against the chain's `key_check`: a key that opens but is not the
    app's (a host sealed garbage) is refused too."""
    data_key = unseal_key(node_secret, sealed)
    if key_check(data_key) != check:
        raise SealingError(Reason.BAD_FIELD, "the sealed key is not the app's data key")
    return data_key
