"""The handshake: both sides prove their node key and agree they follow the same chain.

Each side, at once and without waiting for the other:

1. sends HELLO [version, chain_id, genesis_hash, node_key, listen_address, challenge]
   with a fresh 32-byte challenge from the OS's CSPRNG;
2. reads the peer's HELLO and refuses it on an incompatible version, another chain id,
   another genesis hash, an invalid public key, or its own key (self-connection);
3. sends AUTH [signature], by its node key, over
   tagged_hash(TAG_HANDSHAKE, chain_id, peer_challenge || own_key || peer_key);
4. reads the peer's AUTH and verifies it over
   tagged_hash(TAG_HANDSHAKE, chain_id, own_challenge || peer_key || own_key).

The challenge the verifier chose makes a signature useless on any other connection
(no replay); naming both keys binds it to this pair; the tag and chain id keep it from
being valid as any other signed object. All of it must finish within the timeout.

This proves who is at the other end when the connection opens. The transport itself is
plain websockets: confidentiality and protection against an on-path relay need TLS in
front of the listener (docs/p2p.md). Consensus objects carry their own signatures.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from fluxchain.core.crypto import TAG_HANDSHAKE, SigningKey, is_valid_pubkey, tagged_hash, verify
from p2p.errors import HandshakeError, PeerReason
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

# Two round trips on any working link take milliseconds; 5 s covers a loaded machine
# and bounds how long a silent connection may hold an inbound slot.
HANDSHAKE_TIMEOUT: Final = 5.0


class FrameChannel(Protocol):
    """One connection seen as a stream of frames (the network adapts a websocket)."""

    async def send(self, frame: bytes) -> None:
        """Send one frame."""

    async def receive(self) -> bytes:
        """The next frame; raise P2PError when the connection ends or sends non-binary."""


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
    if hello.node_key == local.key.public_key:
        raise HandshakeError(PeerReason.SELF_CONNECTION, "the peer is this node")
    if not is_valid_pubkey(hello.node_key):
        raise HandshakeError(PeerReason.BAD_AUTH, "node key is not a secp256k1 point")
    return version


def auth_digest(
    chain_id: str, verifier_challenge: bytes, signer_key: bytes, verifier_key: bytes
) -> bytes:
    """The digest a signer signs for a verifier that sent `verifier_challenge`."""
    return tagged_hash(TAG_HANDSHAKE, chain_id, verifier_challenge + signer_key + verifier_key)


def sign_auth(local: LocalNode, peer_hello: Hello) -> Auth:
    """AUTH answering the peer's challenge with this node's key."""
    digest = auth_digest(
        local.chain_id, peer_hello.challenge, local.key.public_key, peer_hello.node_key
    )
    return Auth(local.key.sign(digest))


def check_auth(local: LocalNode, own_challenge: bytes, peer_hello: Hello, auth: Auth) -> None:
    """Verify that the peer's AUTH answers our challenge with the key its HELLO named."""
    digest = auth_digest(local.chain_id, own_challenge, peer_hello.node_key, local.key.public_key)
    if not verify(peer_hello.node_key, digest, auth.signature):
        raise HandshakeError(PeerReason.BAD_AUTH, "AUTH signature does not verify")


async def run_handshake(
    channel: FrameChannel,
    local: LocalNode,
    *,
    timeout: float = HANDSHAKE_TIMEOUT,
    admit: Callable[[Hello], None] | None = None,
) -> PeerIdentity:
    """Run both halves of the handshake on `channel`; raise P2PError if it fails.

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
            await channel.send(encode(new_hello(local, challenge)))
            peer_hello = _expect_hello(decode(await channel.receive()))
            version = check_hello(local, peer_hello)
            if admit is not None:
                admit(peer_hello)
            await channel.send(encode(sign_auth(local, peer_hello)))
            auth = _expect_auth(decode(await channel.receive()))
            check_auth(local, challenge, peer_hello, auth)
    except TimeoutError:
        raise HandshakeError(
            PeerReason.HANDSHAKE_TIMEOUT, f"no complete handshake within {timeout} s"
        ) from None
    return PeerIdentity(peer_hello.node_key, peer_hello.listen_address, version)


def _expect_hello(message: Message) -> Hello:
    if not isinstance(message, Hello):
        raise HandshakeError(PeerReason.UNEXPECTED_MESSAGE, "expected HELLO first")
    return message


def _expect_auth(message: Message) -> Auth:
    if not isinstance(message, Auth):
        raise HandshakeError(PeerReason.UNEXPECTED_MESSAGE, "expected AUTH after HELLO")
    return message
