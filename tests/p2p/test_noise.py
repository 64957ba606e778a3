"""p2p/noise.py against an independent Noise implementation (the `noiseprotocol`
package), and the transport rules a link relies on: one nonce per frame in order, a
rekey every REKEY_INTERVAL frames, and no frame accepted twice, out of order or altered."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

from p2p.errors import FrameError, HandshakeError, PeerReason
from p2p.noise import (
    MESSAGE_1_LEN,
    MESSAGE_2_LEN,
    PROLOGUE,
    PROTOCOL_NAME,
    REKEY_INTERVAL,
    TAG_LEN,
    LinkCipher,
    NNHandshake,
)

SEED = 2026

pytestmark = pytest.mark.filterwarnings("ignore:One of ephemeral keypairs is already set")


def _reference(initiator: bool, ephemeral: bytes) -> NoiseConnection:
    conn = NoiseConnection.from_name(PROTOCOL_NAME)
    conn.set_prologue(PROLOGUE)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    conn.start_handshake()
    return conn


def _ours(initiator: bool, ephemeral: bytes) -> NNHandshake:
    return NNHandshake(initiator, X25519PrivateKey.from_private_bytes(ephemeral))


def _keys(rng: random.Random) -> tuple[bytes, bytes]:
    return rng.randbytes(32), rng.randbytes(32)


@pytest.mark.parametrize("we_initiate", [True, False])
def test_the_handshake_and_frames_match_the_reference_noise_byte_for_byte(
    we_initiate: bool,
) -> None:
    rng = random.Random(SEED)
    ours_key, theirs_key = _keys(rng)
    ours = _ours(we_initiate, ours_key)
    reference = _reference(not we_initiate, theirs_key)
    # The reference, given our ephemeral key, produces exactly our messages.
    mirror = _reference(we_initiate, ours_key)
    mirror_peer = _reference(not we_initiate, theirs_key)
    if we_initiate:
        message_1 = ours.write_message_1()
        assert message_1 == bytes(mirror.write_message(b""))
        reference.read_message(message_1)
        mirror_peer.read_message(message_1)
        message_2 = bytes(reference.write_message(b""))
        ours.read_message_2(message_2)
        mirror.read_message(bytes(mirror_peer.write_message(b"")))
    else:
        message_1 = bytes(reference.write_message(b""))
        ours.read_message_1(message_1)
        mirror_peer.write_message(b"")
        mirror.read_message(message_1)
        message_2 = ours.write_message_2()
        assert message_2 == bytes(mirror.write_message(b""))
        reference.read_message(message_2)
    assert (len(message_1), len(message_2)) == (MESSAGE_1_LEN, MESSAGE_2_LEN)
    assert reference.handshake_finished
    link = ours.finish()
    assert link.handshake_hash == reference.get_handshake_hash()
    # Transport: each side opens what the other sealed, over several rekeys.
    for index in range(2 * REKEY_INTERVAL + 3):
        frame = rng.randbytes(rng.randint(0, 300))
        sealed = link.seal(frame)
        assert len(sealed) == len(frame) + TAG_LEN
        assert bytes(reference.decrypt(sealed)) == frame
        answer = rng.randbytes(rng.randint(0, 300))
        assert link.open(bytes(reference.encrypt(answer))) == answer
        if (index + 1) % REKEY_INTERVAL == 0:
            reference.rekey_inbound_cipher()
            reference.rekey_outbound_cipher()


def _pair(seed: int) -> tuple[LinkCipher, LinkCipher]:
    rng = random.Random(seed)
    dialer = _ours(True, rng.randbytes(32))
    listener = _ours(False, rng.randbytes(32))
    listener.read_message_1(dialer.write_message_1())
    dialer.read_message_2(listener.write_message_2())
    return dialer.finish(), listener.finish()


def test_both_sides_hold_one_handshake_hash_and_directions_use_different_keys() -> None:
    dialer, listener = _pair(SEED)
    assert dialer.handshake_hash == listener.handshake_hash
    frame = b"same bytes both ways"
    assert dialer.seal(frame) != listener.seal(frame)
    # Two connections never share a channel binding (fresh ephemeral keys).
    other, _ = _pair(SEED + 1)
    assert other.handshake_hash != dialer.handshake_hash


def test_a_replayed_frame_does_not_open() -> None:
    dialer, listener = _pair(SEED)
    sealed = dialer.seal(b"pay 10 FLUX")
    assert listener.open(sealed) == b"pay 10 FLUX"
    with pytest.raises(FrameError) as caught:
        listener.open(sealed)
    assert caught.value.reason is PeerReason.DECRYPT_FAILED


def test_reordered_frames_do_not_open() -> None:
    dialer, listener = _pair(SEED)
    first, second = dialer.seal(b"first"), dialer.seal(b"second")
    with pytest.raises(FrameError) as caught:
        listener.open(second)
    assert caught.value.reason is PeerReason.DECRYPT_FAILED
    assert listener.open(first) == b"first"


def test_an_altered_frame_does_not_open() -> None:
    dialer, listener = _pair(SEED)
    sealed = bytearray(dialer.seal(b"\x92\x0a\xc4\x03abc"))
    sealed[3] ^= 0x01
    with pytest.raises(FrameError) as caught:
        listener.open(bytes(sealed))
    assert caught.value.reason is PeerReason.DECRYPT_FAILED


def test_a_frame_sealed_for_the_other_direction_does_not_open() -> None:
    """A reflection: the listener's own sealed frame sent back to it."""
    _, listener = _pair(SEED)
    with pytest.raises(FrameError):
        listener.open(listener.seal(b"echo"))


def test_rekeying_changes_the_key_every_interval_and_keeps_both_ends_in_step() -> None:
    dialer, listener = _pair(SEED)
    seen_keys = set()
    for index in range(3 * REKEY_INTERVAL):
        if index % REKEY_INTERVAL == 0:
            seen_keys.add(dialer._send.key)
        frame = index.to_bytes(4, "big")
        assert listener.open(dialer.seal(frame)) == frame
    assert len(seen_keys) == 3
    # The nonce keeps counting across rekeys (Noise §11.3), never restarting at 0.
    assert dialer._send.nonce == 3 * REKEY_INTERVAL


def test_a_wrong_size_or_degenerate_key_exchange_is_refused() -> None:
    listener = NNHandshake(initiator=False)
    with pytest.raises(HandshakeError) as caught:
        listener.read_message_1(b"\x00" * 31)
    assert caught.value.reason is PeerReason.BAD_KEY_EXCHANGE
    # The all-zero point is of low order: the DH would give a fixed, known secret.
    listener = NNHandshake(initiator=False)
    listener.read_message_1(b"\x00" * 32)
    with pytest.raises(HandshakeError) as caught:
        listener.write_message_2()
    assert caught.value.reason is PeerReason.BAD_KEY_EXCHANGE
    # A second message whose tag does not prove the shared secret.
    dialer = NNHandshake(initiator=True)
    responder = NNHandshake(initiator=False)
    responder.read_message_1(dialer.write_message_1())
    message_2 = bytearray(responder.write_message_2())
    message_2[-1] ^= 0x80
    with pytest.raises(HandshakeError) as caught:
        dialer.read_message_2(bytes(message_2))
    assert caught.value.reason is PeerReason.BAD_KEY_EXCHANGE
