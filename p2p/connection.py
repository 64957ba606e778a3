"""One peer's link: the three tasks of a connection, its send queue, and how it closes.

For every connected peer, `Links.run` runs:

- a reader (the request handler for inbound peers, a task for outbound ones) that opens
  every frame with the link's cipher (a frame that does not authenticate closes the
  link, `decrypt_failed`, without points: a man in the middle can cause it), checks its
  byte budget, decodes it and rate-limits it by kind, then hands it to the switch
  (`LinkOwner.route`), which answers it or puts it in the peer's bounded inbox;
- a handler task that gives the inbox to the switch (`LinkOwner.serve`) one frame at a
  time;
- a writer task that drains the peer's bounded send queue, sealing each frame, with a
  write timeout. Queued frames are plaintext (a broadcast shares one frame between
  queues); only the writer seals, so nonces follow the order of the wire. The small
  frames it finds queued together (what one turn of the event loop sent this peer: a
  gossip tick's votes and round state, relayed votes) go out as one BATCH frame, sealed,
  framed and written once; the reader takes each frame of a batch as if it came alone.

Every frame is counted by kind as it is sent and received, and every websocket message
(`FrameCounts`): what an idle node spends is mostly per frame.

Whatever one of them raises ends that connection (logged with the peer and reason),
never the node. What a frame *means* is not decided here: the switch and its parts
(gossip relay, block requests, peer exchange) do that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from p2p.errors import FrameError, P2PError, PeerReason
from p2p.limits import POINTS_INVALID_FRAME, POINTS_RATE_LIMITED, Limits
from p2p.messages import (
    BULK_KINDS,
    MAX_BATCH_BYTES,
    MAX_BATCH_FRAMES,
    MAX_BATCHED_FRAME,
    Batch,
    Kind,
    Lane,
    Message,
    batch_frame,
    decode,
    frame_kind,
    kind_of,
)
from p2p.peer import Peer, WebSocket, abort_connection, close_reason_of, is_too_big
from p2p.tasks import Tasks

log = logging.getLogger("fluxchain.p2p")

# Private-use websocket close code for every refusal and ban; the close message is the
# PeerReason, so the other side (and an operator reading its log) learns why.
CLOSE_REFUSED: Final = 4000

# Add misbehaviour points to a peer: (peer, reason, points, detail). The switch bans.
Misbehave = Callable[[Peer, PeerReason, float, str], None]
# Take back points a peer earned for a fault it made good since: (peer, points).
Forgive = Callable[[Peer, float], None]


class LinkOwner(Protocol):
    """What a link asks of the switch that owns it."""

    def misbehave(self, peer: Peer, reason: PeerReason, points: float, detail: str) -> None:
        """Score a peer's fault; past the threshold the peer is banned and disconnected."""

    def expects_answer(self, peer: Peer, data: bytes) -> bool:
        """Whether `data` claims to answer one of our requests (paid for by the request)."""

    def route(self, peer: Peer, message: Message) -> None:
        """Take a decoded, rate-checked frame from the reader; never blocks."""

    async def serve(self, peer: Peer, message: Message, message_id: bytes) -> None:
        """Act on the peer's next inbox item (gossip for the host, a request to answer)."""

    def on_closed(self, peer: Peer, reason: PeerReason) -> None:
        """The peer's connection is closed and its tasks are done: forget it."""


def set_reason(peer: Peer, reason: PeerReason, detail: str) -> None:
    """Record why `peer`'s connection ends; the first reason given wins."""
    if peer.close_reason is None:
        peer.close_reason = reason
        peer.close_detail = detail


class FrameCounts:
    """Frames sent and received by every link of one switch since it started: by kind
    (a frame in a batch counts as its own kind; the batch itself is not a kind counted
    here) and websocket messages (`wire_*`: a batch is one), always on and a dict
    increment each."""

    __slots__ = ("received", "sent", "wire_received", "wire_sent")

    def __init__(self) -> None:
        self.sent: dict[int, int] = {}
        self.received: dict[int, int] = {}
        self.wire_sent = 0
        self.wire_received = 0

    def snapshot(self) -> dict[str, dict[str, int]]:
        """{"sent"|"received": {kind name: frames}}, plus the websocket messages under
        "wire"; a kind byte that is not a Kind (a peer's junk) is named by its number."""
        return {
            "sent": {_kind_name(kind): n for kind, n in sorted(self.sent.items())},
            "received": {_kind_name(kind): n for kind, n in sorted(self.received.items())},
            "wire": {"sent": self.wire_sent, "received": self.wire_received},
        }


_KIND_NAMES: Final = {int(kind): kind.name for kind in Kind}


def _kind_name(kind: int) -> str:
    return _KIND_NAMES.get(kind) or str(kind)


class Links:
    """The live connections of one switch: running, feeding and closing them."""

    def __init__(self, owner: LinkOwner, limits: Limits, tasks: Tasks) -> None:
        self._owner = owner
        self._limits = limits
        self._tasks = tasks
        # What bulk frames leave of each peer's byte budget and send queue (slots, bytes).
        self._budget_reserve, frames, size = limits.consensus_reserve()
        self._queue_reserve = (frames, size)
        self.counts = FrameCounts()
        # Every websocket from upgrade (or dial) to close, handshaking or connected.
        self.open_ws: set[WebSocket] = set()

    # -- sending and closing ----------------------------------------------------------

    def send(
        self,
        peer: Peer,
        frame: bytes,
        *,
        droppable: bool,
        bulk: bool = False,
        lane: Lane | None = None,
    ) -> bool:
        """Queue `frame` for `peer`, in `lane` (default its kind's). A full queue drops
        gossip, disconnects otherwise; a `bulk` frame also finds it full at the room
        reserved for consensus frames."""
        if peer.closing:
            return False
        if peer.send_queue.put(frame, *(self._queue_reserve if bulk else (0, 0)), lane):
            return True
        if droppable:
            peer.dropped_frames += 1
            log.debug("event=send_dropped peer=%s reason=queue_full", peer.short)
        else:
            self.disconnect(peer, PeerReason.SLOW_PEER, "send queue full")
        return False

    def send_budgeted(
        self, peer: Peer, kind: Kind, frame: bytes, now: float, lane: Lane | None = None
    ) -> bool:
        """Queue an unsolicited `kind` frame within our outgoing budgets for `peer` (the
        limits it applies to us; a bulk one leaves the consensus reserve), in `lane`
        (default its kind's); a frame over them is dropped (and counted): its sender's
        repair sends it again."""
        bulk = kind in BULK_KINDS
        bucket = peer.out_rates.get(kind)
        if (bucket is not None and not bucket.take(now)) or not peer.out_bytes.take(
            now, len(frame), self._budget_reserve if bulk else 0.0
        ):
            peer.dropped_frames += 1
            return False
        return self.send(peer, frame, droppable=True, bulk=bulk, lane=lane)

    def send_answer(self, peer: Peer, frame: bytes, now: float) -> bool:
        """Queue a bulk answer (TX_BODIES) if our outgoing budget for `peer` and its send
        queue keep the consensus reserve after it; else False, spending nothing: what was
        asked for is kept for later, not dropped (the asker would score our silence)."""
        if peer.closing or not self.answer_fits(peer, len(frame), now):
            return False
        if not peer.send_queue.put(frame, *self._queue_reserve):
            return False
        peer.out_bytes.take(now, len(frame))
        return True

    def answer_fits(self, peer: Peer, size: int, now: float) -> bool:
        """Whether our outgoing budget for `peer` holds a bulk answer of `size` bytes and
        keeps the consensus reserve after it (spending nothing)."""
        return peer.out_bytes.available(now) >= size + self._budget_reserve

    @property
    def budget_reserve(self) -> float:
        """The bytes of each peer's byte budget that bulk frames leave to consensus frames."""
        return self._budget_reserve

    def enqueue(self, peer: Peer, message: Message, message_id: bytes) -> bool:
        """Put a frame in the peer's inbox for its handler task; False if the inbox is full."""
        try:
            peer.inbox.put_nowait((message, message_id))
        except asyncio.QueueFull:
            return False
        return True

    def disconnect(
        self,
        peer: Peer,
        reason: PeerReason,
        detail: str,
        wire_reason: PeerReason | None = None,
    ) -> None:
        """Start closing `peer`'s connection; its reader then tears the rest down."""
        set_reason(peer, reason, detail)
        if peer.closing:
            return
        peer.closing = True
        wire = wire_reason or reason
        code = WSCloseCode.GOING_AWAY if wire is PeerReason.SHUTDOWN else CLOSE_REFUSED
        self._tasks.spawn(self.close_socket(peer.ws, code, wire), f"close-{peer.short}")

    def close_all(self) -> None:
        """Close every open websocket with GOING_AWAY (shutdown)."""
        for ws in list(self.open_ws):
            self._tasks.spawn(
                self.close_socket(ws, WSCloseCode.GOING_AWAY, PeerReason.SHUTDOWN), "close"
            )

    async def close_socket(self, ws: WebSocket, code: int, reason: PeerReason) -> None:
        """Close a websocket, telling the peer why; never raises, never takes longer
        than `close_timeout`.

        Then the TCP connection is shut down in any case: aiohttp's close stops reading
        and leaves the socket open until buffered data drains, which never happens with
        a peer that stopped reading, and our reader would wait forever. The close frame
        itself is already in the kernel's buffer, which a shutdown still delivers.
        """
        try:
            async with asyncio.timeout(self._limits.close_timeout):
                await ws.close(code=code, message=reason.value.encode())
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                abort_connection(ws)
                raise
            # Not our cancellation: aiohttp shares one drain waiter per connection, and
            # a write we cancelled (write timeout) leaves it cancelled for close().
        except Exception as exc:
            log.debug("event=close_failed error=%r", exc)
        abort_connection(ws)

    # -- a connected peer -------------------------------------------------------------

    async def run(self, peer: Peer) -> None:
        """Run a peer until its connection ends; then tear everything of it down."""
        writer = self._tasks.spawn(self._guard(peer, self._write_loop(peer)), f"write-{peer.short}")
        handler = self._tasks.spawn(
            self._guard(peer, self._handle_loop(peer)), f"host-{peer.short}"
        )
        try:
            await self._read_loop(peer)
        except asyncio.CancelledError:
            set_reason(peer, PeerReason.SHUTDOWN, "cancelled")
            raise
        except Exception as exc:
            set_reason(peer, PeerReason.INTERNAL_ERROR, repr(exc))
            log.info("event=peer_error peer=%s error=%r", peer.short, exc)
        finally:
            writer.cancel()
            handler.cancel()
            await asyncio.gather(writer, handler, return_exceptions=True)
            reason = peer.close_reason or PeerReason.CLOSED
            code = WSCloseCode.GOING_AWAY if reason is PeerReason.SHUTDOWN else CLOSE_REFUSED
            await self.close_socket(peer.ws, code, reason)
            self.open_ws.discard(peer.ws)
            self._owner.on_closed(peer, reason)

    async def _guard(self, peer: Peer, work: Coroutine[Any, Any, None]) -> None:
        """Run a peer's writer or handler; any failure ends the connection, not the node."""
        try:
            await work
        except P2PError as exc:
            self.disconnect(peer, exc.reason, exc.message)
        except (ConnectionError, aiohttp.ClientError) as exc:
            self.disconnect(peer, PeerReason.CLOSED, repr(exc))
        except Exception as exc:
            log.warning("event=peer_task_error peer=%s error=%r", peer.short, exc)
            self.disconnect(peer, PeerReason.INTERNAL_ERROR, repr(exc))

    async def _read_loop(self, peer: Peer) -> None:
        while True:
            msg = await peer.ws.receive()
            # The websocket around the sealed frames is not authenticated: a text
            # frame, an oversize frame header or a close frame may come from anyone on
            # the path, so they end the link (nothing after them can be trusted to be
            # the peer's stream) but cost the peer nothing.
            if msg.type is WSMsgType.BINARY:
                self._on_frame(peer, msg.data)
            elif msg.type is WSMsgType.TEXT:
                self.disconnect(peer, PeerReason.NOT_BINARY, "text frame on a sealed link")
            elif msg.type is WSMsgType.ERROR:
                if is_too_big(msg.data):
                    set_reason(peer, PeerReason.TOO_LARGE, "frame over the size limit")
                set_reason(peer, PeerReason.CLOSED, repr(msg.data))
                return
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                code, reason = close_reason_of(peer.ws, msg)
                set_reason(peer, reason, f"closed by the peer (code {code})")
                return

    def _on_frame(self, peer: Peer, sealed: bytes) -> None:
        """Open, check and route one websocket message (a frame, or a BATCH of them);
        never blocks, never raises for peer input."""
        if peer.closing:
            return
        try:
            data = peer.cipher.open(sealed)
        except FrameError as exc:
            # Not the frame the peer sealed next: altered, injected, replayed, reordered
            # or dropped on the way, or a peer that broke its own cipher. Nothing after it
            # can be trusted to be the peer's stream, so the link ends; but no points:
            # anyone on the path can do this, and the sender cannot be told from them.
            self.disconnect(peer, exc.reason, exc.message)
            return
        self.counts.wire_received += 1
        now = asyncio.get_running_loop().time()
        if frame_kind(data) == Kind.BATCH:
            self._on_batch(peer, data, now)
        else:
            self._on_plain(peer, data, now, budgeted=False)

    def _on_batch(self, peer: Peer, data: bytes, now: float) -> None:
        """Take each frame of a BATCH as if it had come alone (decoded, rate-limited and
        scored by its own kind); a batch that is not well-formed is scored as any
        malformed frame."""
        owner = self._owner
        # The whole batch spends the byte budget before it is parsed, as a lone frame
        # does; answers to our requests are not exempt inside a batch, but only small
        # frames are ever batched (MAX_BATCHED_FRAME), so an answer costs little of it.
        if not peer.in_bytes.take(now, len(data)):
            owner.misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "bytes")
            return
        try:
            batch = decode(data)
        except FrameError as exc:
            owner.misbehave(peer, exc.reason, POINTS_INVALID_FRAME, exc.message)
            return
        assert isinstance(batch, Batch)  # the kind byte said so, and decode checks it
        for frame in batch.frames:
            if peer.closing:  # banned by an earlier frame of this batch
                return
            self._on_plain(peer, frame, now, budgeted=True)

    def _on_plain(self, peer: Peer, data: bytes, now: float, *, budgeted: bool) -> None:
        """Check and route one opened frame (alone, or one of a batch: `budgeted`, its
        bytes already spent)."""
        owner = self._owner
        kind_byte = frame_kind(data)
        self.counts.received[kind_byte] = self.counts.received.get(kind_byte, 0) + 1
        # Answers to our own requests are paid for by the request (the txs of a
        # TX_BODIES are spent from the budget by p2p/tx_fetch.py, which the attacker can
        # make us ask for by announcing its own ids, rev13a); every other frame
        # spends the peer's byte budget, checked before decoding so that a flood of big
        # frames costs us a length comparison, not a parse. (Opening comes first: every
        # frame must be opened to keep the nonces in step, and it costs far less than a
        # parse, docs/performance.md.)
        if (
            not budgeted
            and not owner.expects_answer(peer, data)
            and not peer.in_bytes.take(now, len(data))
        ):
            owner.misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "bytes")
            return
        try:
            message = decode(data)
        except FrameError as exc:
            owner.misbehave(peer, exc.reason, POINTS_INVALID_FRAME, exc.message)
            return
        kind = kind_of(message)
        if kind is Kind.BATCH:  # only inside a batch: a lone one went to _on_batch
            owner.misbehave(
                peer, PeerReason.BAD_FIELD, POINTS_INVALID_FRAME, "a batch inside a batch"
            )
            return
        bucket = peer.in_rates.get(kind)
        if bucket is not None and not bucket.take(now):
            owner.misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, kind.name)
            return
        owner.route(peer, message)

    async def _handle_loop(self, peer: Peer) -> None:
        """Hand the peer's inbox to the switch, one frame at a time."""
        while True:
            message, message_id = await peer.inbox.get()
            await self._owner.serve(peer, message, message_id)

    async def _write_loop(self, peer: Peer) -> None:
        timeout = self._limits.write_timeout
        most = min(self._limits.batch_frames, MAX_BATCH_FRAMES)
        counts = self.counts
        queue = peer.send_queue
        while True:
            await queue.wait()
            frames = queue.take_batch(most, MAX_BATCHED_FRAME, MAX_BATCH_BYTES)
            for frame in frames:
                kind_byte = frame_kind(frame)
                counts.sent[kind_byte] = counts.sent.get(kind_byte, 0) + 1
            counts.wire_sent += 1
            wire = frames[0] if len(frames) == 1 else batch_frame(frames)
            try:
                async with asyncio.timeout(timeout):
                    await peer.ws.send_bytes(peer.cipher.seal(wire))
            except TimeoutError:
                raise P2PError(
                    PeerReason.SLOW_PEER, f"a frame took longer than {timeout} s to send"
                ) from None
