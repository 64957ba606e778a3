"""One connected peer and its bounded parts: send queue, inbox, rate buckets, score, the
link's cipher; plus the websocket-as-frames adapter the handshake runs on.

These objects hold state and enforce their own bounds; `p2p.network` runs the tasks
that move frames through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from enum import StrEnum
from typing import Final

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from fluxchain.core.crypto import sha256
from p2p.errors import FrameError, HandshakeError, PeerReason
from p2p.handshake import PeerIdentity
from p2p.limits import Limits, Rate, Score, TokenBucket
from p2p.messages import GOSSIP_KINDS, Kind, Message
from p2p.noise import LinkCipher

# Ids of requests that timed out, per peer, whose late answers are ignored silently.
EXPIRED_REQUESTS_KEPT: Final = 32


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


def gossip_id(kind: Kind, payload: bytes) -> bytes:
    """The duplicate-suppression key of a gossip frame: SHA-256 of kind byte ‖ payload.

    The kind is included so that the same bytes sent as two kinds are two messages.
    """
    return sha256(bytes((kind,)) + payload)


class BoundedSet:
    """A set of at most `capacity` keys; the oldest insert is forgotten first."""

    __slots__ = ("_capacity", "_keys")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys: dict[bytes, None] = {}

    def add(self, key: bytes) -> bool:
        """Insert `key`; False if it was already present."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._capacity:
            del self._keys[next(iter(self._keys))]
        return True

    def discard(self, key: bytes) -> None:
        self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class SeenTimes:
    """When each of at most `capacity` keys was last accepted; the oldest is forgotten."""

    __slots__ = ("_capacity", "_times")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._times: dict[bytes, float] = {}

    def accept(self, key: bytes, now: float, after: float) -> bool:
        """True (and remember `now`) if `key` is new or was last accepted `after` ago."""
        last = self._times.get(key)
        if last is not None and now - last < after:
            return False
        self._times.pop(key, None)
        self._times[key] = now
        if len(self._times) > self._capacity:
            del self._times[next(iter(self._times))]
        return True

    def discard(self, key: bytes) -> None:
        self._times.pop(key, None)

    def note(self, key: bytes, now: float) -> None:
        """Remember `key` as accepted at `now` (our own broadcasts)."""
        self._times.pop(key, None)
        self._times[key] = now
        if len(self._times) > self._capacity:
            del self._times[next(iter(self._times))]


class SendQueue:
    """Frames waiting to be written to one peer, bounded by count and bytes."""

    __slots__ = ("_bytes", "_frames", "_max_bytes", "_max_frames", "_ready")

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._ready = asyncio.Event()

    def put(self, frame: bytes) -> bool:
        if len(self._frames) >= self._max_frames or self._bytes + len(frame) > self._max_bytes:
            return False
        self._frames.append(frame)
        self._bytes += len(frame)
        self._ready.set()
        return True

    async def get(self) -> bytes:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        self._bytes -= len(frame)
        return frame

    def __len__(self) -> int:
        return len(self._frames)


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class WebSocketChannel:
    """A websocket seen as a stream of frames, for the handshake."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, frame: bytes) -> None:
        await self._ws.send_bytes(frame)

    async def receive(self) -> bytes:
        msg = await self._ws.receive()
        if msg.type is WSMsgType.BINARY:
            data: bytes = msg.data
            return data
        if msg.type is WSMsgType.TEXT:
            raise FrameError(PeerReason.NOT_BINARY, "text frame")
        if msg.type is WSMsgType.ERROR and is_too_big(msg.data):
            raise FrameError(PeerReason.TOO_LARGE, "frame over the size limit")
        code, reason = close_reason_of(self._ws, msg)
        raise HandshakeError(reason, f"connection closed during the handshake (code {code})")


def abort_connection(ws: WebSocket) -> None:
    """Shut the TCP connection down now, unsent data or not.

    The event loop then fails any pending write and reports the connection lost, which
    ends our reader. On a socket that is already closed this does nothing.
    """
    sock = ws.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def is_too_big(error: object) -> bool:
    return isinstance(error, aiohttp.WebSocketError) and error.code == WSCloseCode.MESSAGE_TOO_BIG


def close_reason_of(ws: WebSocket, msg: aiohttp.WSMessage) -> tuple[int | None, PeerReason]:
    """The close code and the PeerReason the other side gave, if any."""
    code = ws.close_code
    if msg.type is WSMsgType.CLOSE:
        code = msg.data
        with contextlib.suppress(ValueError):
            return code, PeerReason(msg.extra or "")
    if code == WSCloseCode.GOING_AWAY:
        return code, PeerReason.SHUTDOWN
    return code, PeerReason.CLOSED


class Peer:
    """One connected, authenticated peer and everything bounded that belongs to it."""

    def __init__(
        self,
        ws: WebSocket,
        identity: PeerIdentity,
        cipher: LinkCipher,
        direction: Direction,
        address: str,
        remote_ip: str,
        limits: Limits,
        now: float,
        wall_now: float,
    ) -> None:
        self.ws = ws
        # Seals what the writer sends and opens what the reader receives; each is the
        # only user of its direction, so the nonces follow the order on the wire.
        self.cipher = cipher
        self.peer_id = identity.node_id
        self.node_key = identity.node_key
        self.direction = direction
        self.address = address
        self.remote_ip = remote_ip
        self.connected_at = wall_now
        self.started = now
        self.height = 0
        self.head_hash = b""
        self.score = Score(limits.score_decay_per_second, now)
        self.in_rates = {kind: TokenBucket(rate, now) for kind, rate in limits.rates.items()}
        # We pace our own gossip by the same table, so an honest node never trips the
        # limits of a peer that runs the same defaults: over-rate gossip is dropped.
        self.out_rates = {
            kind: TokenBucket(rate, now)
            for kind, rate in limits.rates.items()
            if kind in GOSSIP_KINDS
        }
        self.in_bytes = TokenBucket(Rate(limits.bytes_per_second, limits.bytes_burst), now)
        self.out_bytes = TokenBucket(Rate(limits.bytes_per_second, limits.bytes_burst), now)
        self.send_queue = SendQueue(limits.send_queue_frames, limits.send_queue_bytes)
        self.inbox: asyncio.Queue[tuple[Message, bytes]] = asyncio.Queue(limits.inbox_frames)
        self.known = BoundedSet(limits.known_per_peer)
        self.pending: dict[int, tuple[asyncio.Future[list[tuple[bytes, bytes]]], int]] = {}
        self.expired_requests: deque[int] = deque(maxlen=EXPIRED_REQUESTS_KEPT)
        self.next_request_id = 0
        self.peers_requested = False
        self.dropped_frames = 0
        self.closing = False
        self.banned = False
        self.detached = False
        self.close_reason: PeerReason | None = None
        self.close_detail = ""

    @property
    def short(self) -> str:
        return self.peer_id[:16]
