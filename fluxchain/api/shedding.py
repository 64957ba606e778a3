"""The API's tx admission gate: one node-wide bound on the loop time API submissions take.

Admitting a tx costs ~50 µs of the node's event loop (the signature most of it), the loop
consensus runs on. Each request used to yield every 50 txs of its own, so with N batches
in flight consensus got a turn only every Nx50 txs, and a flood of concurrent batches
stopped block production for tens of seconds (issue 24). Through the gate one request
admits at a time, the loop turns every `txs_per_turn` txs counted over all requests, and
a bounded queue waits behind it: past the bound a request is refused 429 `busy` before
its body is read or parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from aiohttp import web

from fluxchain.api.models import MAX_BODY
from fluxchain.api.queries import ApiError

T = TypeVar("T")

BUSY: Final = "busy"  # the admission queue is full: retry after RETRY_AFTER_S
CLIENT_GONE: Final = "client_gone"  # the client closed its connection while queued
SLOW_BODY: Final = "slow_body"  # the body did not arrive within `body_timeout_s`


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
    # Their bodies by Content-Length (a batch of 1,000 transfers is ~225 KiB, so 4 MiB is
    # ~18 full batches, ~0.9 s of admission work; ~2 s on a loaded machine): a client that
    # would wait longer is better told to come back (429, Retry-After) than left waiting
    # while its node falls behind. A body of unknown length counts as MAX_BODY. The first
    # request in an empty queue always waits.
    max_waiting_bytes: int = 4 * 1024 * 1024
    # A queued request holds a slot while its body arrives: a client that trickles it in
    # would otherwise keep the slot for ever.
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
        self._since_turn = 0  # txs admitted since the loop last turned, by any request
        self.refused = 0  # requests answered 429 `busy`, for tests and metrics

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.asynccontextmanager
    async def admit(
        self, request: web.Request, parse: Callable[[], Awaitable[T]]
    ) -> AsyncIterator[T]:
        """Queue `request` (429 `busy` if the queue is full), read and parse its body
        with `parse` while queued, then hold the gate: the parsed body is yielded."""
        size = request.content_length if request.content_length is not None else MAX_BODY
        limits = self.limits
        if self._waiting and (
            self._waiting >= limits.max_waiting
            or self._waiting_bytes + size > limits.max_waiting_bytes
        ):
            self.refused += 1
            raise ApiError(429, BUSY, "the node's tx admission queue is full; retry shortly")
        self._waiting += 1
        self._waiting_bytes += size
        try:
            try:
                async with asyncio.timeout(limits.body_timeout_s):
                    body = await parse()
            except TimeoutError:
                raise ApiError(408, SLOW_BODY, "the request body was not sent in time") from None
            await self._lock.acquire()
        finally:
            self._waiting -= 1
            self._waiting_bytes -= size
        try:
            if client_gone(request):
                raise ApiError(400, CLIENT_GONE, "the client went away before admission")
            yield body
        finally:
            self._lock.release()

    async def turn(self, request: web.Request) -> None:
        """Count one tx about to be admitted; every `txs_per_turn` (over all requests) let
        votes, frames and the consensus task in. ApiError(client_gone) if the client left
        meanwhile: the rest of its request is not admitted."""
        self._since_turn += 1
        if self._since_turn > self.limits.txs_per_turn:
            self._since_turn = 1
            await asyncio.sleep(0)
            if client_gone(request):
                raise ApiError(400, CLIENT_GONE, "the client went away during admission")
