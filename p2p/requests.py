"""Our requests in flight to each peer, for the request/answer frame pairs that carry a
request id (blocks, snapshots, proposal txs).

An answer must name a request of ours still pending: one nobody asked for costs the peer
points, one that timed out is ignored (it was late, not a lie). What the answer must hold
is judged by the caller, from the expectation filed with the request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, TypeVar

from p2p.connection import Links, Misbehave
from p2p.errors import P2PError, PeerReason
from p2p.limits import POINTS_UNSOLICITED, Limits
from p2p.messages import Message, encode
from p2p.peer import Peer

E = TypeVar("E")
# Ids of requests that timed out, per peer, whose late answers are ignored silently.
EXPIRED_REQUESTS_KEPT: Final = 32


class _Pending(Generic[E]):
    """One peer's requests in flight (each with what it expects back), and the ids of
    those that timed out."""

    __slots__ = ("expired", "next_id", "open")

    def __init__(self) -> None:
        self.open: dict[int, tuple[asyncio.Future[Any], E]] = {}
        self.expired: deque[int] = deque(maxlen=EXPIRED_REQUESTS_KEPT)
        self.next_id = 0


class RequestTable(Generic[E]):
    """Requests of one kind in flight, per peer; `what` names the answer in errors."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        links: Links,
        limits: Limits,
        misbehave: Misbehave,
        what: str,
    ) -> None:
        self._peers = peers
        self._links = links
        self._limits = limits
        self._misbehave = misbehave
        self._what = what
        self._pending: dict[str, _Pending[E]] = {}

    async def ask(
        self, peer_id: str, expect: E, make: Callable[[int], Message], timeout: float
    ) -> Any:
        """Send `make(request_id)` to `peer_id` and wait for the answer its frame handler
        sets on the request's future (see `take`); a P2PError otherwise (TIMEOUT,
        NOT_CONNECTED, TOO_MANY_REQUESTS, or what the handler set)."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.closing:
            raise P2PError(PeerReason.NOT_CONNECTED, f"no peer {peer_id[:16]}")
        pending = self._pending.setdefault(peer_id, _Pending())
        if len(pending.open) >= self._limits.max_inflight_requests:
            raise P2PError(PeerReason.TOO_MANY_REQUESTS, "too many requests in flight")
        request_id = pending.next_id
        pending.next_id = (request_id + 1) % (2**32)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending.open[request_id] = (future, expect)
        try:
            self._links.send(peer, encode(make(request_id)), droppable=False)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            pending.expired.append(request_id)
            raise P2PError(
                PeerReason.TIMEOUT, f"no {self._what} from {peer.short} within {timeout} s"
            ) from None
        finally:
            pending.open.pop(request_id, None)

    def expects_answer(self, peer: Peer) -> bool:
        """Whether an answer from `peer` may answer a request of ours (open or late)."""
        pending = self._pending.get(peer.peer_id)
        return pending is not None and bool(pending.open or pending.expired)

    def take(self, peer: Peer, request_id: int, name: str) -> tuple[asyncio.Future[Any], E] | None:
        """The pending request `request_id` of `peer` (no longer pending), or None: for an
        answer nobody asked for, after scoring the peer; for a late one, silently."""
        pending = self._pending.get(peer.peer_id)
        entry = None if pending is None else pending.open.pop(request_id, None)
        if entry is None and (pending is None or request_id not in pending.expired):
            self._misbehave(
                peer, PeerReason.UNSOLICITED, POINTS_UNSOLICITED, f"{name} nobody asked for"
            )
        return entry

    def fail_pending(self, peer: Peer, reason: PeerReason) -> None:
        """The peer is gone: every request of ours to it fails with NOT_CONNECTED."""
        pending = self._pending.pop(peer.peer_id, None)
        if pending is None:
            return
        for future, _ in pending.open.values():
            if not future.done():
                future.set_exception(P2PError(PeerReason.NOT_CONNECTED, f"peer gone: {reason}"))
