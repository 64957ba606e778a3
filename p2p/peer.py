"""One connected peer and its bounded parts: send queue, inbox, rate buckets, score, the
link's cipher; plus the websocket-as-frames adapter the handshake runs on.

These objects hold state and enforce their own bounds; `p2p.network` runs the tasks
that move frames through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import OrderedDict, deque
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from fluxchain.core.crypto import sha256
from p2p.errors import FrameError, PeerClosedError, PeerReason
from p2p.handshake import PeerIdentity
from p2p.limits import Limits, Rate, Score, TokenBucket
from p2p.messages import GOSSIP_KINDS, Gossip, Kind, Lane, Message, frame_kind, lane_of
from p2p.noise import LinkCipher


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


def gossip_id(kind: Kind, payload: bytes) -> bytes:
    """The duplicate-suppression key of a gossip frame: SHA-256 of kind byte ‖ payload.

    The kind is included so that the same bytes sent as two kinds are two messages.
    """
    return sha256(bytes((kind,)) + payload)


class BoundedSet(OrderedDict[bytes, None]):
    """A set of at most `capacity` keys; the oldest insert is forgotten first.

    An OrderedDict, so that forgetting the oldest is O(1): a plain dict's first key is
    found by scanning past the slots of the keys deleted before it, which at capacity
    cost each insert time linear in the capacity (3 µs at 16,384, 15 µs at 100,000;
    perf14w). Membership (`in`) is the mapping's own, in C.
    """

    __slots__ = ("_capacity",)

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._capacity = capacity

    def add(self, key: bytes) -> bool:
        """Insert `key`; False if it was already present."""
        if key in self:
            return False
        self[key] = None
        if len(self) > self._capacity:
            self.popitem(last=False)
        return True

    def add_all(self, keys: Iterable[bytes]) -> list[bytes]:
        """Insert each of `keys`, as `add` would one by one; return those that were new,
        in order (one call per batch of ids, not one per id: the relay's hot path)."""
        new = []
        for key in keys:
            if key not in self:
                self[key] = None
                new.append(key)
        for _ in range(len(self) - self._capacity):
            self.popitem(last=False)
        return new

    def note_all(self, keys: Iterable[bytes]) -> None:
        """Insert each of `keys`, as `add_all` would, returning nothing: no membership test
        or list of new keys per key (an OrderedDict keeps a present key's place on a set)."""
        for key in keys:
            self[key] = None
        for _ in range(len(self) - self._capacity):
            self.popitem(last=False)

    def discard(self, key: bytes) -> None:
        self.pop(key, None)


class SeenTimes:
    """When each of at most `capacity` keys was last accepted; the oldest is forgotten
    (in O(1), as in BoundedSet)."""

    __slots__ = ("_capacity", "_times")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._times: OrderedDict[bytes, float] = OrderedDict()

    def accept(self, key: bytes, now: float, after: float) -> bool:
        """True (and remember `now`) if `key` is new or was last accepted `after` ago."""
        last = self._times.get(key)
        if last is not None and now - last < after:
            return False
        self.note(key, now)
        return True

    def discard(self, key: bytes) -> None:
        self._times.pop(key, None)

    def note(self, key: bytes, now: float) -> None:
        """Remember `key` as accepted at `now` (our own broadcasts)."""
        times = self._times
        times[key] = now
        times.move_to_end(key)
        if len(times) > self._capacity:
            times.popitem(last=False)


class SendQueue:
    """Frames waiting to be written to one peer, bounded by count and bytes, in two
    lanes (messages.Lane): consensus frames go before bulk tx frames queued earlier."""

    __slots__ = (
        "_bulk_turn_after",
        "_bytes",
        "_lanes",
        "_max_bytes",
        "_max_frames",
        "_ready",
        "_run",
        "queued",
        "taken",
    )

    def __init__(self, max_frames: int, max_bytes: int, bulk_turn_after: int) -> None:
        self._lanes: tuple[deque[bytes], deque[bytes]] = (deque(), deque())
        self._bytes = 0
        # Frames ever queued and ever taken by the writer, per lane (indexed by Lane): a
        # frame queued as the n-th of its lane has left once its lane's `taken` reaches n
        # (tx relay by id starts a request's time then). Per lane, as a lane overtakes
        # the other; within one, frames leave in the order they came.
        self.queued = [0, 0]
        self.taken = [0, 0]
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._bulk_turn_after = bulk_turn_after  # Limits.bulk_turn_after
        self._run = 0  # writes in a row that took no bulk frame while one waited
        self._ready = asyncio.Event()

    def put(
        self, frame: bytes, keep_frames: int = 0, keep_bytes: int = 0, lane: Lane | None = None
    ) -> bool:
        """Queue `frame` in `lane` (default its kind's) if that leaves `keep_frames`
        slots and `keep_bytes` of room (both lanes count against the bounds)."""
        if (
            len(self) + keep_frames >= self._max_frames
            or self._bytes + len(frame) + keep_bytes > self._max_bytes
        ):
            return False
        if lane is None:
            lane = lane_of(frame_kind(frame))
        self._lanes[lane].append(frame)
        self._bytes += len(frame)
        self.queued[lane] += 1
        self._ready.set()
        return True

    async def wait(self) -> None:
        """Until a frame is queued."""
        while not len(self):
            self._ready.clear()
            await self._ready.wait()

    def take_batch(self, max_frames: int, max_frame: int, max_bytes: int) -> list[bytes]:
        """The next frame (one must be queued) and frames that may share a batch with
        it: each at most `max_frame` bytes, at most `max_frames` of them and `max_bytes`
        in all, each lane in order: consensus frames before bulk ones, but for a bulk
        turn (due after `bulk_turn_after` writes without one), which starts with the bulk
        lane's. A frame over `max_frame` comes alone."""
        consensus, bulk = self._lanes
        before = (len(consensus), len(bulk))
        turn = bulk and (not consensus or self._run >= self._bulk_turn_after)
        first = (bulk if turn else consensus).popleft()
        batch = [first]
        size = len(first)
        if size <= max_frame:
            # A bulk turn batches the bulk frames behind its first, then consensus frames:
            # stopping at a consensus frame too big to batch (a BLOCKS answer) sent one
            # small tx frame a turn behind a catching-up peer's answers (rev16e 1).
            for lane in (bulk, consensus) if turn else (consensus, bulk):
                while lane and len(batch) < max_frames:
                    frame = lane[0]
                    if len(frame) > max_frame or size + len(frame) > max_bytes:
                        break
                    lane.popleft()
                    size += len(frame)
                    batch.append(frame)
                if lane and not turn:
                    break  # a consensus frame left out goes before any bulk frame
        self._bytes -= size
        took_bulk = before[Lane.BULK] - len(bulk)
        self.taken[Lane.CONSENSUS] += before[Lane.CONSENSUS] - len(consensus)
        self.taken[Lane.BULK] += took_bulk
        self._run = self._run + 1 if bulk and not took_bulk else 0
        return batch

    def room(self) -> int:
        """Bytes that may still be queued (tx relay by id answers what fits, rev13a)."""
        return self._max_bytes - self._bytes

    def __len__(self) -> int:
        return len(self._lanes[Lane.CONSENSUS]) + len(self._lanes[Lane.BULK])


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse

# The most each of the first three messages of a connection may be: the key exchange
# (32 or 48 bytes; a version-3 node's plaintext HELLO, refused as too old, is some 200),
# then HELLO (at most 483 bytes with the longest chain id and address, plus the 16-byte
# tag) and AUTH (68 + 16). Until AUTH has proved the peer's key, a stranger gets no
# more: 40 handshaking strangers hold 40 KiB of our memory, not 40 x MAX_WIRE_FRAME.
MAX_HANDSHAKE_MESSAGE: Final = 1024
HANDSHAKE_MESSAGES: Final = 3

# Websocket framing (RFC 6455 §5.2): opcodes of data frames, and the header lengths.
_OPCODE_CONTINUATION, _OPCODE_TEXT, _OPCODE_BINARY = 0x0, 0x1, 0x2
_FIN = 0x80


class HandshakeFrameLimits:
    """A websocket parser that refuses any of the first HANDSHAKE_MESSAGES data
    messages longer than MAX_HANDSHAKE_MESSAGE from its frame header, before its payload
    arrives, and then passes everything to aiohttp's parser (whose limit is
    MAX_WIRE_FRAME) untouched.

    aiohttp takes one message size limit per websocket, fixed when the websocket is
    made, and has no setter; reading the first few frame headers ourselves is the
    smallest way to have a limit per phase. The bytes are only looked at, never
    changed: aiohttp still parses and checks every frame (masking, control frames).
    """

    def __init__(self, parser: object, queue: object) -> None:
        self._parser = parser
        self._queue = queue
        self._header = b""  # an incomplete frame header
        self._payload_left = 0  # bytes of the current frame's payload still to come
        self._message_len = 0  # bytes of the current (maybe fragmented) message so far
        self._messages_left = HANDSHAKE_MESSAGES
        self._failed = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """aiohttp's parser interface: parse `data`; (True, b"") after an error."""
        if self._failed:
            return True, b""
        if self._messages_left:
            error = self._check(bytes(data))
            if error is not None:
                self._failed = True
                aiohttp.helpers.set_exception(
                    self._queue,  # type: ignore[arg-type]
                    aiohttp.WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, error),
                )
                return True, b""
        result: tuple[bool, bytes] = self._parser.feed_data(data)  # type: ignore[attr-defined]
        return result

    def feed_eof(self) -> None:
        """aiohttp's parser interface: the connection ended."""
        self._parser.feed_eof()  # type: ignore[attr-defined]

    def _check(self, data: bytes) -> str | None:
        """Walk the frame headers in `data` while handshake messages are left; return
        why a message is refused, if one is."""
        buffer = self._header + data  # a header split between chunks is carried over
        self._header = b""
        position = 0
        while self._messages_left and position < len(buffer):
            if self._payload_left:
                step = min(self._payload_left, len(buffer) - position)
                self._payload_left -= step
                position += step
                continue
            parsed = _frame_header(buffer, position)
            if parsed is None:
                self._header = buffer[position:]  # at most 13 bytes
                return None
            header_len, first, length = parsed
            position += header_len
            self._payload_left = length
            if first & 0x0F not in (_OPCODE_CONTINUATION, _OPCODE_TEXT, _OPCODE_BINARY):
                continue  # a control frame (ping, pong, close): aiohttp bounds those
            self._message_len += length
            if self._message_len > MAX_HANDSHAKE_MESSAGE:
                return (
                    f"a handshake message of {self._message_len} bytes or more, "
                    f"over {MAX_HANDSHAKE_MESSAGE}"
                )
            if first & _FIN:
                self._message_len = 0
                self._messages_left -= 1
        return None


def _frame_header(buffer: bytes, position: int) -> tuple[int, int, int] | None:
    """(header length, first byte, payload length) of the websocket frame header at
    `position`, or None if `buffer` does not hold all of it yet."""
    if len(buffer) - position < 2:
        return None
    first, second = buffer[position], buffer[position + 1]
    length = second & 0x7F
    header_len = 2
    if length == 126:
        header_len = 4
    elif length == 127:
        header_len = 10
    masked = bool(second & 0x80)
    if len(buffer) - position < header_len + (4 if masked else 0):
        return None
    if header_len > 2:
        length = int.from_bytes(buffer[position + 2 : position + header_len], "big")
    return header_len + (4 if masked else 0), first, length


def limit_handshake_frames(ws: WebSocket) -> None:
    """Put HandshakeFrameLimits in front of a dialed websocket's parser (an accepted
    one gets it from `HandshakeWebSocketResponse`)."""
    assert isinstance(ws, aiohttp.ClientWebSocketResponse)
    protocol = ws._conn.protocol if ws._conn is not None else None
    if protocol is not None:
        limits = HandshakeFrameLimits(protocol._payload_parser, ws._reader)
        protocol._payload_parser = limits  # type: ignore[assignment]


class HandshakeWebSocketResponse(web.WebSocketResponse):
    """An accepted websocket whose first messages are held to the handshake's limits
    (HandshakeFrameLimits) from the first byte after the upgrade request, including
    bytes a client sent along with it."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        handler = request.protocol
        # aiohttp feeds bytes that came with the upgrade request to the parser it
        # installs; hold them back and feed them through ours.
        tail, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        limits = HandshakeFrameLimits(handler._payload_parser, self._reader)
        handler._payload_parser = limits
        if tail:
            limits.feed_data(tail)


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
        raise PeerClosedError(reason, f"connection closed during the handshake (code {code})")


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


class Inbox(asyncio.Queue[tuple[Message, bytes]]):
    """A peer's frames for its handler task, in arrival order, except that a VOTE goes
    ahead of the rest, and a COMPACT_PROPOSAL too when `ahead_after` frames or more wait:
    behind a backlog of txs to admit (TXS, TX_BODIES: ~50 µs each) a vote waited long
    enough for the peers' announcements to show it lacked, and drew repairs from them
    (issue 22, wan18), and a compact proposal 0.7-4 s under a flood, past the propose
    timeout (issue 24). A proposal needs the txs pushed ahead of it, so behind a short
    queue (its proposer's flush of fresh txs) it keeps its place; ahead of a backlog, its
    rebuild fetches what it lacks, and the block check's verdicts spare those txs' frames
    a second signature check (`TxAdmission.note_verified`, conc20)."""

    def __init__(self, maxsize: int = 0, ahead_after: int = 0) -> None:
        self._ahead_after = ahead_after
        super().__init__(maxsize)

    def _init(self, maxsize: int) -> None:
        self._queue: deque[tuple[Message, bytes]] = deque()
        self._ahead: deque[tuple[Message, bytes]] = deque()  # votes, compact proposals

    def _put(self, item: tuple[Message, bytes]) -> None:
        message = item[0]
        if isinstance(message, Gossip) and (
            message.kind is Kind.VOTE
            or (message.kind is Kind.COMPACT_PROPOSAL and len(self._queue) >= self._ahead_after)
        ):
            self._ahead.append(item)
        else:
            self._queue.append(item)

    def _get(self) -> tuple[Message, bytes]:
        return self._ahead.popleft() if self._ahead else self._queue.popleft()

    def qsize(self) -> int:
        return len(self._queue) + len(self._ahead)

    def empty(self) -> bool:
        return not (self._queue or self._ahead)


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
        self.base = 1  # its lowest stored block (STATUS)
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
        self.send_queue = SendQueue(
            limits.send_queue_frames, limits.send_queue_bytes, limits.bulk_turn_after
        )
        self.inbox = Inbox(limits.inbox_frames, limits.compact_ahead_frames)
        self.known = BoundedSet(limits.known_per_peer)
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
