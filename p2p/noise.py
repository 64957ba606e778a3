"""The key exchange and the frame cipher of a peer link: Noise_NN_25519_ChaChaPoly_SHA256.

This is the Noise Protocol Framework (revision 34, noiseprotocol.org/noise.html) for the
one pattern we use, built from `cryptography`'s primitives only: X25519 for DH,
ChaCha20-Poly1305 (RFC 8439) as the AEAD, SHA-256 and HKDF-SHA256. Nothing here is a new
cipher; the names below (`mix_hash`, `mix_key`, `split`, `rekey`...) are the spec's, so
a reader can hold this file against sections 4 and 5. tests/p2p/test_noise.py checks it
byte for byte against an independent implementation (the `noiseprotocol` package).

NN (two messages, ephemeral keys only):

    -> e
    <- e, ee

Neither side has a Noise static key: a node's identity is its secp256k1 node key, which
proves itself by signing the handshake hash `h` inside the encrypted channel (see
`p2p/handshake.py`). `h` commits to the prologue and both ephemeral keys, so it is
unique to this connection: a man in the middle runs two handshakes with two different
`h`, and neither node's signature verifies on the other connection (Noise §11.2,
channel binding; the same station-to-station idea as CometBFT's SecretConnection).

One deviation from Noise, in the transport phase only: a Noise message is at most
65,535 bytes because Noise assumes a stream framed by a 2-byte length. Our messages are
websocket messages, framed by the websocket, and a block frame is up to 8 MiB; each frame
is one AEAD message (ChaCha20-Poly1305 is defined for up to 2^38 bytes), with the nonce
rules of Noise's CipherState unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2p.errors import FrameError, HandshakeError, PeerReason

PROTOCOL_NAME: Final = b"Noise_NN_25519_ChaChaPoly_SHA256"
# The prologue both sides mix in first: a node of another wire protocol (or another
# version of this one) derives another `h`, so its signatures never verify here.
PROLOGUE: Final = b"fluxchain/p2p/4"

DH_LEN: Final = 32
HASH_LEN: Final = 32
TAG_LEN: Final = 16  # what each encrypted frame adds
MAX_NONCE: Final = 2**64 - 1  # reserved by Noise for rekeying
# Each direction replaces its key every REKEY_INTERVAL frames (Noise §11.3): a key
# taken from a node's memory later opens at most the last interval of its traffic.
# A rekey costs one 32-byte encryption, so it is nearly free even this often (BOLT 8,
# Lightning's Noise transport, rekeys every 1,000 messages).
REKEY_INTERVAL: Final = 1_000

# Noise message sizes of NN with empty payloads.
MESSAGE_1_LEN: Final = DH_LEN
MESSAGE_2_LEN: Final = DH_LEN + TAG_LEN

_ZERO_KEY: Final = bytes(32)


def _nonce(n: int) -> bytes:
    """ChaChaPoly's 96-bit nonce for counter `n`: 32 zero bits, then n little-endian."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs, which is RFC 5869 HKDF with an empty info."""
    out = HKDF(hashes.SHA256(), 2 * HASH_LEN, salt=chaining_key, info=b"").derive(
        input_key_material
    )
    return out[:HASH_LEN], out[HASH_LEN:]


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        # A low-order point gives an all-zero secret, which `cryptography` refuses: a
        # peer that sends one is trying to fix the key, never an honest mistake.
        raise HandshakeError(
            PeerReason.BAD_KEY_EXCHANGE, "the peer's ephemeral key is degenerate"
        ) from None


class CipherState:
    """Noise §5.1: a key and a nonce counter; every message uses the next nonce."""

    __slots__ = ("_aead", "key", "nonce")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.nonce = 0
        self._aead = ChaCha20Poly1305(key)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """ENCRYPT(k, n++, ad, plaintext)."""
        if self.nonce >= MAX_NONCE:
            raise FrameError(PeerReason.DECRYPT_FAILED, "nonces exhausted")
        ciphertext = self._aead.encrypt(_nonce(self.nonce), plaintext, ad)
        self.nonce += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """DECRYPT(k, n++, ad, ciphertext); on failure n stays and InvalidTag is raised."""
        if self.nonce >= MAX_NONCE:
            raise FrameError(PeerReason.DECRYPT_FAILED, "nonces exhausted")
        plaintext = self._aead.decrypt(_nonce(self.nonce), ciphertext, ad)
        self.nonce += 1
        return plaintext

    def rekey(self) -> None:
        """Noise §4.2 REKEY: the new key is the first 32 bytes of
        ENCRYPT(k, 2^64-1, "", 32 zero bytes)."""
        self.key = self._aead.encrypt(_nonce(MAX_NONCE), _ZERO_KEY, b"")[:32]
        self._aead = ChaCha20Poly1305(self.key)


@dataclass(slots=True)
class _SymmetricState:
    """Noise §5.2: the chaining key, the handshake hash and the handshake's cipher."""

    chaining_key: bytes
    handshake_hash: bytes
    cipher: CipherState | None = None

    @classmethod
    def initialize(cls, protocol_name: bytes) -> _SymmetricState:
        if len(protocol_name) <= HASH_LEN:
            h = protocol_name.ljust(HASH_LEN, b"\x00")
        else:
            h = hashlib.sha256(protocol_name).digest()
        return cls(chaining_key=h, handshake_hash=h)

    def mix_hash(self, data: bytes) -> None:
        self.handshake_hash = hashlib.sha256(self.handshake_hash + data).digest()

    def mix_key(self, input_key_material: bytes) -> None:
        self.chaining_key, temp_key = _hkdf2(self.chaining_key, input_key_material)
        self.cipher = CipherState(temp_key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = (
            plaintext
            if self.cipher is None
            else self.cipher.encrypt_with_ad(self.handshake_hash, plaintext)
        )
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self.cipher is None:
            plaintext = ciphertext
        else:
            try:
                plaintext = self.cipher.decrypt_with_ad(self.handshake_hash, ciphertext)
            except InvalidTag:
                raise HandshakeError(
                    PeerReason.BAD_KEY_EXCHANGE, "the key exchange does not authenticate"
                ) from None
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        first, second = _hkdf2(self.chaining_key, b"")
        return CipherState(first), CipherState(second)


@dataclass(slots=True)
class NNHandshake:
    """Noise §5.3 for pattern NN, empty payloads: the dialer initiates, the listener
    responds. Each side calls its two methods in order, then `finish`."""

    initiator: bool
    ephemeral: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    prologue: bytes = PROLOGUE
    _state: _SymmetricState = field(init=False)
    _remote_ephemeral: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self._state = _SymmetricState.initialize(PROTOCOL_NAME)
        self._state.mix_hash(self.prologue)

    def write_message_1(self) -> bytes:
        """Initiator: -> e."""
        own = _public_bytes(self.ephemeral)
        self._state.mix_hash(own)
        return own + self._state.encrypt_and_hash(b"")

    def read_message_1(self, message: bytes) -> None:
        """Responder: <- e (the initiator's)."""
        if len(message) != MESSAGE_1_LEN:
            raise HandshakeError(
                PeerReason.BAD_KEY_EXCHANGE,
                f"first key exchange message is {len(message)} bytes, not {MESSAGE_1_LEN}",
            )
        self._remote_ephemeral = message
        self._state.mix_hash(message)
        self._state.decrypt_and_hash(b"")

    def write_message_2(self) -> bytes:
        """Responder: -> e, ee."""
        own = _public_bytes(self.ephemeral)
        self._state.mix_hash(own)
        self._state.mix_key(_dh(self.ephemeral, self._remote_ephemeral))
        return own + self._state.encrypt_and_hash(b"")

    def read_message_2(self, message: bytes) -> None:
        """Initiator: <- e, ee (the responder's), with the tag that proves `ee`."""
        if len(message) != MESSAGE_2_LEN:
            raise HandshakeError(
                PeerReason.BAD_KEY_EXCHANGE,
                f"second key exchange message is {len(message)} bytes, not {MESSAGE_2_LEN}",
            )
        remote = message[:DH_LEN]
        self._state.mix_hash(remote)
        self._state.mix_key(_dh(self.ephemeral, remote))
        self._state.decrypt_and_hash(message[DH_LEN:])

    def finish(self) -> LinkCipher:
        """Split into the two transport ciphers, ours to send and ours to receive."""
        initiator_to_responder, responder_to_initiator = self._state.split()
        if self.initiator:
            send, receive = initiator_to_responder, responder_to_initiator
        else:
            send, receive = responder_to_initiator, initiator_to_responder
        return LinkCipher(send, receive, self._state.handshake_hash)


class LinkCipher:
    """The transport phase of one link: each frame is one AEAD message under the next
    nonce of its direction, and each direction rekeys every `REKEY_INTERVAL` frames.

    A frame that does not authenticate (altered, injected, replayed, reordered, cut, or
    under another key) raises FrameError(decrypt_failed). Its nonce is not consumed, but
    the link closes on it anyway: the stream is no longer the one the peer sent.
    """

    __slots__ = ("_receive", "_received", "_send", "_sent", "handshake_hash")

    def __init__(self, send: CipherState, receive: CipherState, handshake_hash: bytes) -> None:
        self._send = send
        self._receive = receive
        self._sent = 0
        self._received = 0
        self.handshake_hash = handshake_hash  # the channel binding both node keys sign

    def seal(self, frame: bytes) -> bytes:
        """Encrypt the next outgoing frame."""
        ciphertext = self._send.encrypt_with_ad(b"", frame)
        self._sent += 1
        if self._sent % REKEY_INTERVAL == 0:
            self._send.rekey()
        return ciphertext

    def open(self, data: bytes) -> bytes:
        """Decrypt and authenticate the next incoming frame."""
        try:
            frame = self._receive.decrypt_with_ad(b"", data)
        except InvalidTag:
            raise FrameError(
                PeerReason.DECRYPT_FAILED,
                f"frame {self._received} does not authenticate ({len(data)} bytes)",
            ) from None
        self._received += 1
        if self._received % REKEY_INTERVAL == 0:
            self._receive.rekey()
        return frame
