"""The API's tx admission gate: one node-wide bound on the loop time API submissions take.

Admitting a tx costs ~50 µs of the node's event loop (the signature most of it), the loop
consensus runs on. Each request used to yield every 50 txs of its own, so with N batches
in flight consensus got a turn only every Nx50 txs, and a flood of concurrent batches
stopped block production for tens of seconds (issue 24). Through the gate one request
admits at a time, the loop turns every `txs_per_turn` txs counted over all requests, and
a bounded queue waits behind it: past the bound a request is refused 429 `busy` before
its body is read or parsed.

A request joins the queue only once its body is in (slowloris): a client that trickles
its body, or declares a huge one, holds a connection, not a place in the queue, so it
cannot make honest requests wait or be refused `busy`. The bodies being received are
bounded by the bytes already received (what they cost the node's memory), which a client
can only fill by sending them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, NoReturn, TypeVar

from aiohttp import web

from fluxchain.api.bodies import check_size
from fluxchain.api.queries import ApiError

T = TypeVar("T")

BUSY: Final = "busy"  # the admission queue is full: retry after RETRY_AFTER_S
CLIENT_GONE: Final = "client_gone"  # the client closed its connection while queued
SLOW_BODY: Final = "slow_body"  # the body did not arrive within `body_timeout_s`
# Each refusal's status, reason and sentence (a client gone away is never answered).
_REFUSALS: Final = {
    BUSY: (429, BUSY, "the node's tx admission queue is full; retry shortly"),
    CLIENT_GONE: (400, CLIENT_GONE, "the client went away before its txs were admitted"),
    SLOW_BODY: (408, SLOW_BODY, "the request body was not sent in time"),
}


@dataclass(frozen=True, slots=True)
class AdmitLimits:
    """Bounds of the API's tx admission; the defaults are for production."""

    # ~2.5 ms of the loop between two turns, as a gossiped TXS frame (node.py TXS_PER_TURN).
    txs_per_turn: int = 50
    # Requests queued behind the one admitting: a bound on the connections held, not on
    # the work (the bytes below bound that). Many wallets post a few txs each, and a
    # block check holds a loaded node's loop for up to seconds: with 16, pinned wallets
    # at 500 tx/s on the WAN testnet were refused `busy` 210 times in 20 s.
    max_waiting: int = 1_024
    # Their bodies' bytes (a batch of 1,000 transfers is ~225 KiB, so 4 MiB is
    # ~18 full batches, ~0.9 s of admission work; ~2 s on a loaded machine): a client that
    # would wait longer is better told to come back (429, Retry-After) than left waiting
    # while its node falls behind. A request is counted once its body is in; one whose
    # Content-Length could not fit is refused before. The first request in an empty queue
    # always waits.
    max_waiting_bytes: int = 4 * 1024 * 1024
    # Bodies still arriving, by the bytes received so far: what reading them holds in
    # memory (up to MAX_BODY each, on as many connections as clients open). Only bytes
    # sent count (the API inflates no coded body: api/bodies.py), so a trickling client
    # holds next to nothing; filling this takes 64 MiB sent every `body_timeout_s`. ~280
    # batches of 1,000 transfers arriving at once.
    max_reading_bytes: int = 64 * 1024 * 1024
    # A body still arriving holds a connection and its bytes (not a place in the queue):
    # a client that trickles it in would otherwise hold them for ever.
    body_timeout_s: float = 10.0


def client_gone(request: web.Request) -> bool:
    """Whether the client closed its connection: its answer can no longer be delivered."""
    transport = request.transport
    return transport is None or transport.is_closing()


class AdmissionGate:
    """One admitter at a time, the loop's turns counted over all of them, a bounded queue."""

    def __init__(self, limits: AdmitLimits | None = None) -> None:
        self.limits = limits or AdmitLimits()
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._waiting_bytes = 0
        self._reading = 0  # requests whose bodies are still arriving
        self._reading_bytes = 0  # received so far of those bodies
        self._since_turn = 0  # txs admitted since the loop last turned, by any request
        # Requests refused, by reason (BUSY, SLOW_BODY, CLIENT_GONE): /metrics reads them.
        self.refusals: Counter[str] = Counter()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def reading(self) -> int:
        return self._reading

    @property
    def reading_bytes(self) -> int:
        return self._reading_bytes

    @property
    def refused(self) -> int:
        """Requests answered 429 `busy`."""
        return self.refusals[BUSY]

    @contextlib.asynccontextmanager
    async def admit(
        self, request: web.Request, parse: Callable[[bytes], T], max_body: int
    ) -> AsyncIterator[T]:
        """Read `request`'s body (413 past `max_body`), queue it (429 `busy` if the queue is
        full, before reading when its Content-Length already cannot fit), parse it with
        `parse` while queued, then hold the gate: the parsed body is yielded."""
        check_size(request.content_length, max_body)
        if self._full(request.content_length or 0):
            self._refuse(BUSY)
        raw = await self._read(request, max_body)
        if self._full(len(raw)):
            self._refuse(BUSY)
        self._waiting += 1
        self._waiting_bytes += len(raw)
        try:
            body = parse(raw)
            await self._lock.acquire()
        finally:
            self._waiting -= 1
            self._waiting_bytes -= len(raw)
        try:
            if client_gone(request):
                self._refuse(CLIENT_GONE)
            yield body
        finally:
            self._lock.release()

    def _full(self, size: int) -> bool:
        """Whether a body of `size` bytes must not join the queue."""
        limits = self.limits
        return bool(self._waiting) and (
            self._waiting >= limits.max_waiting
            or self._waiting_bytes + size > limits.max_waiting_bytes
        )

    async def _read(self, request: web.Request, max_body: int) -> bytes:
        """The whole body, within `body_timeout_s` (408 `slow_body`), `max_body` (413) and,
        over every body still arriving, `max_reading_bytes` received (429 `busy`)."""
        chunks: list[bytes] = []
        received = 0
        self._reading += 1
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while chunk := await request.content.readany():
                    received += len(chunk)
                    self._reading_bytes += len(chunk)
                    check_size(received, max_body)
                    if self._reading_bytes > self.limits.max_reading_bytes:
                        self._refuse(BUSY)
                    chunks.append(chunk)
        except TimeoutError:
            self._refuse(SLOW_BODY)
        finally:
            self._reading -= 1
            self._reading_bytes -= received
        return b"".join(chunks)

    def _refuse(self, reason: str) -> NoReturn:
        """Count the refusal and raise it."""
        self.refusals[reason] += 1
        raise ApiError(*_REFUSALS[reason])

    async def turn(self, request: web.Request) -> None:
        """Count one tx about to be admitted; every `txs_per_turn` (over all requests) let
        votes, frames and the consensus task in. ApiError(client_gone) if the client left
        meanwhile: the rest of its request is not admitted."""
        self._since_turn += 1
        if self._since_turn > self.limits.txs_per_turn:
            self._since_turn = 1
            await asyncio.sleep(0)
            if client_gone(request):
                self._refuse(CLIENT_GONE)
