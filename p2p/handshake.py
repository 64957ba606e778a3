"""The handshake: an encrypted link, then both sides prove their node key on it and agree
they follow the same chain.

1. Key exchange (`p2p/noise.py`, Noise NN): the dialer sends its ephemeral X25519 key, the
   listener answers with its own and a tag proving the shared secret. From here on every
   frame is sealed with ChaCha20-Poly1305, one key per direction; both sides hold the
   handshake hash `h`, unique to this connection.
2. Each side, without waiting for the other, sends HELLO [version, chain_id,
   genesis_hash, node_key, listen_address, challenge] with a fresh 32-byte challenge;
3. reads the peer's HELLO and refuses it on an incompatible version, another chain id,
   another genesis hash or an invalid public key (and the network's `admit` on a banned
   key, or another key than the one the address was dialed by);
4. sends AUTH [signature], by its node key, over
   tagged_hash(TAG_LINK, chain_id, h || peer_challenge || own_key || peer_key);
5. reads the peer's AUTH and verifies it over
   tagged_hash(TAG_LINK, chain_id, h || own_challenge || peer_key || own_key);
6. refuses a peer that proved our own key (self-connection). Only now: a HELLO naming
   our key is a claim anyone can make (our key is public), and acting on it earlier
   would let whoever answers at an address make us forget that address.

Signing `h` binds the encrypted channel to both node keys: a man in the middle who relays
the key exchange holds two channels with two different `h`, and the signature a node
makes on one verifies on neither of the attacker's, so it cannot pose as either node,
and without the keys of the real channel it can neither read nor forge a frame. The
challenge the verifier chose makes a signature useless on any other connection even to
a peer that could choose `h`; naming both keys binds it to this pair; the tag and chain
id keep it from being valid as any other signed object. All of it must finish within
the timeout.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from fluxchain.core.crypto import SigningKey, is_valid_pubkey, tagged_hash, verify
from p2p.errors import FrameError, HandshakeError, PeerReason
from p2p.messages import (
    CHALLENGE_SIZE,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    Auth,
    Hello,
    Message,
    decode,
    encode,
)
from p2p.noise import LinkCipher, NNHandshake

# Domain of the AUTH signature. Version 3 signed under "fluxchain/handshake/1" without
# a channel binding; a new tag keeps the two kinds of signature apart.
TAG_LINK: Final = b"fluxchain/p2p-link/1"

# Two round trips on any working link take milliseconds; 5 s covers a loaded machine
# and bounds how long a silent connection may hold an inbound slot.
HANDSHAKE_TIMEOUT: Final = 5.0


class FrameChannel(Protocol):
    """One connection seen as a stream of frames (the network adapts a websocket)."""

    async def send(self, frame: bytes) -> None:
        """Send one frame."""

    async def receive(self) -> bytes:
        """The next frame; raise P2PError when the connection ends or sends non-binary."""


class SealedChannel:
    """A FrameChannel whose frames are sealed by the link's cipher (after the key exchange)."""

    def __init__(self, channel: FrameChannel, cipher: LinkCipher) -> None:
        self._channel = channel
        self._cipher = cipher

    async def send(self, frame: bytes) -> None:
        await self._channel.send(self._cipher.seal(frame))

    async def receive(self) -> bytes:
        return self._cipher.open(await self._channel.receive())


@dataclass(frozen=True, slots=True)
class LocalNode:
    """What this node says about itself in HELLO, and the key it proves."""

    key: SigningKey
    chain_id: str
    genesis_hash: bytes
    listen_address: str  # "host:port" peers can dial, or "" for a node that only dials


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What a completed handshake proved about the other end."""

    node_key: bytes
    listen_address: str
    version: int  # the protocol version both sides speak on this connection

    @property
    def node_id(self) -> str:
        """The peer id used everywhere in the p2p API: the node key in hex."""
        return self.node_key.hex()


def new_hello(local: LocalNode, challenge: bytes) -> Hello:
    """The HELLO this node sends, carrying `challenge`."""
    return Hello(
        version=PROTOCOL_VERSION,
        chain_id=local.chain_id,
        genesis_hash=local.genesis_hash,
        node_key=local.key.public_key,
        listen_address=local.listen_address,
        challenge=challenge,
    )


def check_hello(local: LocalNode, hello: Hello) -> int:
    """Refuse a peer we cannot talk to; return the protocol version of the connection."""
    version = min(hello.version, PROTOCOL_VERSION)
    # Each side applies its own minimum, so two versions interoperate iff both accept.
    if version < MIN_PROTOCOL_VERSION:
        raise HandshakeError(
            PeerReason.INCOMPATIBLE_VERSION,
            f"peer speaks version {hello.version}, we need at least {MIN_PROTOCOL_VERSION}",
        )
    if hello.chain_id != local.chain_id:
        raise HandshakeError(
            PeerReason.WRONG_CHAIN, f"peer is on chain {hello.chain_id!r}, not {local.chain_id!r}"
        )
    if hello.genesis_hash != local.genesis_hash:
        raise HandshakeError(
            PeerReason.WRONG_GENESIS, f"peer's genesis is {hello.genesis_hash.hex()[:16]}…"
        )
    if not is_valid_pubkey(hello.node_key):
        raise HandshakeError(PeerReason.BAD_AUTH, "node key is not a secp256k1 point")
    return version


def auth_digest(
    chain_id: str,
    handshake_hash: bytes,
    verifier_challenge: bytes,
    signer_key: bytes,
    verifier_key: bytes,
) -> bytes:
    """The digest a signer signs, on the link whose key exchange gave `handshake_hash`,
    for a verifier that sent `verifier_challenge`."""
    payload = handshake_hash + verifier_challenge + signer_key + verifier_key
    return tagged_hash(TAG_LINK, chain_id, payload)


def sign_auth(local: LocalNode, handshake_hash: bytes, peer_hello: Hello) -> Auth:
    """AUTH binding this link and the peer's challenge to this node's key."""
    digest = auth_digest(
        local.chain_id,
        handshake_hash,
        peer_hello.challenge,
        local.key.public_key,
        peer_hello.node_key,
    )
    return Auth(local.key.sign(digest))


def check_auth(
    local: LocalNode, handshake_hash: bytes, own_challenge: bytes, peer_hello: Hello, auth: Auth
) -> None:
    """Verify that the peer's AUTH signs this link and our challenge with the key its
    HELLO named."""
    digest = auth_digest(
        local.chain_id, handshake_hash, own_challenge, peer_hello.node_key, local.key.public_key
    )
    if not verify(peer_hello.node_key, digest, auth.signature):
        raise HandshakeError(PeerReason.BAD_AUTH, "AUTH signature does not verify")


async def exchange_keys(channel: FrameChannel, *, initiator: bool) -> LinkCipher:
    """Run the Noise NN key exchange on `channel`: the dialer initiates."""
    noise = NNHandshake(initiator=initiator)
    if initiator:
        await channel.send(noise.write_message_1())
        noise.read_message_2(_key_exchange_message(await channel.receive()))
    else:
        noise.read_message_1(_key_exchange_message(await channel.receive()))
        await channel.send(noise.write_message_2())
    return noise.finish()


def _key_exchange_message(data: bytes) -> bytes:
    """A key exchange message, unless it is the plaintext HELLO of an older node.

    A version-3 node opens with HELLO in the clear. Telling it (and our operator) that
    its version is too old beats refusing it as garbage and banning its address.
    """
    try:
        message = decode(data)
    except FrameError:
        return data
    if isinstance(message, Hello):
        raise HandshakeError(
            PeerReason.INCOMPATIBLE_VERSION,
            f"peer speaks plaintext version {message.version}, we need at least "
            f"{MIN_PROTOCOL_VERSION} (encrypted)",
        )
    return data


async def run_handshake(
    channel: FrameChannel,
    local: LocalNode,
    *,
    initiator: bool,
    timeout: float = HANDSHAKE_TIMEOUT,
    admit: Callable[[Hello], None] | None = None,
) -> tuple[PeerIdentity, LinkCipher]:
    """Run the handshake on `channel` (`initiator`: we dialed); return what it proved
    about the peer and the link's cipher for every later frame. Raise P2PError if it
    fails.

    `admit` sees the peer's HELLO before we answer its challenge and may refuse it
    (raise HandshakeError), e.g. for a banned key: refusing an unproven claim costs
    the real owner nothing, and the peer learns the reason before it thinks it is in.
    A FrameError (garbage, non-canonical bytes) propagates as is: the caller treats it
    as hostile, unlike a peer that is merely on another chain.
    """
    # Challenges must be unpredictable to the peer, so they never come from an
    # injected (seedable) RNG.
    challenge = secrets.token_bytes(CHALLENGE_SIZE)
    try:
        async with asyncio.timeout(timeout):
            cipher = await exchange_keys(channel, initiator=initiator)
            sealed = SealedChannel(channel, cipher)
            await sealed.send(encode(new_hello(local, challenge)))
            peer_hello = _expect_hello(decode(await sealed.receive()))
            version = check_hello(local, peer_hello)
            if admit is not None:
                admit(peer_hello)
            await sealed.send(encode(sign_auth(local, cipher.handshake_hash, peer_hello)))
            auth = _expect_auth(decode(await sealed.receive()))
            check_auth(local, cipher.handshake_hash, challenge, peer_hello, auth)
            if peer_hello.node_key == local.key.public_key:
                raise HandshakeError(PeerReason.SELF_CONNECTION, "the peer proved our own key")
    except TimeoutError:
        raise HandshakeError(
            PeerReason.HANDSHAKE_TIMEOUT, f"no complete handshake within {timeout} s"
        ) from None
    return PeerIdentity(peer_hello.node_key, peer_hello.listen_address, version), cipher


def _expect_hello(message: Message) -> Hello:
    if not isinstance(message, Hello):
        raise HandshakeError(PeerReason.UNEXPECTED_MESSAGE, "expected HELLO first")
    return message


def _expect_auth(message: Message) -> Auth:
    if not isinstance(message, Auth):
        raise HandshakeError(PeerReason.UNEXPECTED_MESSAGE, "expected AUTH after HELLO")
    return message
