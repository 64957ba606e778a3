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

The queue is shared by client group (`client`: the address group the node tells its API
clients apart by, node/origins.py): when it is full, a request of a group holding less
of it than another group pushes out that group's newest waiting request (429 `busy`),
else it is refused itself. So one client keeping the queue full is refused its own
requests, not everyone else's (red23b 6).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
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


@dataclass(eq=False, slots=True)
class _Waiter:
    """A request queued at the gate: its client group, its body's bytes, and the future
    that hands it the gate (or its refusal, when a newcomer pushes it out)."""

    client: str
    size: int
    turn: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Share:
    """What one client group holds of the queue: its waiting requests, oldest first."""

    waiters: list[_Waiter] = field(default_factory=list)
    size: int = 0


class AdmissionGate:
    """One admitter at a time, the loop's turns counted over all of them, a bounded queue
    shared by client group."""

    def __init__(self, limits: AdmitLimits | None = None) -> None:
        self.limits = limits or AdmitLimits()
        self._held = False  # a request holds the gate
        # The waiting requests in arrival order (a dict as an ordered set), and by client
        # group: only groups with a request waiting, so at most `max_waiting` of them.
        self._queue: dict[_Waiter, None] = {}
        self._shares: dict[str, _Share] = {}
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
        self, request: web.Request, parse: Callable[[bytes], T], max_body: int, client: str
    ) -> AsyncIterator[T]:
        """Read `request`'s body (413 past `max_body`), queue it (429 `busy` if the queue is
        full and `client`'s group may push out no other's request, before reading when its
        Content-Length already cannot fit), parse it, then hold the gate: the parsed body
        is yielded."""
        check_size(request.content_length, max_body)
        # Before the body is in, nobody is pushed out for it (it may never come): only
        # refused if it could not get in even then.
        if self._full(request.content_length or 0) and not self._room(
            client, request.content_length or 0, push_out=False
        ):
            self._refuse(BUSY)
        raw = await self._read(request, max_body)
        # Refused unparsed if it could not get in; parsed before anyone is pushed out for
        # it, so that a body refused 400 costs no honest request its place (rev23b 3).
        if self._full(len(raw)) and not self._room(client, len(raw), push_out=False):
            self._refuse(BUSY)
        body = parse(raw)
        if self._full(len(raw)) and not self._room(client, len(raw), push_out=True):
            self._refuse(BUSY)
        waiter = self._join(client, len(raw))
        try:
            await waiter.turn
        except asyncio.CancelledError:
            self._cancelled(waiter)
            raise
        try:
            if client_gone(request):
                self._refuse(CLIENT_GONE)
            yield body
        finally:
            self._release()

    def _full(self, size: int) -> bool:
        """Whether a body of `size` bytes must not join the queue."""
        limits = self.limits
        return bool(self._waiting) and (
            self._waiting >= limits.max_waiting
            or self._waiting_bytes + size > limits.max_waiting_bytes
        )

    def _share(self, requests: int, size: int) -> float:
        """How much of the queue `requests` waiting requests of `size` bytes hold: by count
        and by bytes, each against its bound."""
        limits = self.limits
        return requests / limits.max_waiting + size / limits.max_waiting_bytes

    def _room(self, client: str, size: int, push_out: bool) -> bool:
        """Whether a request of `client`'s group with `size` bytes can join the full queue
        by pushing out the newest requests of the groups holding more of it than `client`
        would with it (`push_out`: do so, each refused `busy`)."""
        mine = self._shares.get(client)
        held = (0, 0) if mine is None else (len(mine.waiters), mine.size)
        own = self._share(held[0] + 1, held[1] + size)
        freed_requests = freed_bytes = 0
        victims: list[_Waiter] = []
        # The groups from the one holding most; each gives up its newest requests while it
        # still holds more than the newcomer's group would.
        ranked = sorted(
            (
                (self._share(len(s.waiters), s.size), c)
                for c, s in self._shares.items()
                if c != client
            ),
            reverse=True,
        )
        limits = self.limits
        for _, other in ranked:
            share = self._shares[other]
            requests, taken = len(share.waiters), share.size
            for waiter in reversed(share.waiters):
                if self._share(requests, taken) <= own:
                    break
                victims.append(waiter)
                requests -= 1
                taken -= waiter.size
                freed_requests += 1
                freed_bytes += waiter.size
                if (
                    self._waiting - freed_requests < limits.max_waiting
                    and self._waiting_bytes - freed_bytes + size <= limits.max_waiting_bytes
                ):
                    if push_out:
                        for victim in victims:
                            self._leave(victim)
                            if not victim.turn.done():  # (else cancelled: gone already)
                                self.refusals[BUSY] += 1
                                victim.turn.set_exception(ApiError(*_REFUSALS[BUSY]))
                    return True
        return False

    def _join(self, client: str, size: int) -> _Waiter:
        """Queue a request; an idle gate is its at once."""
        waiter = _Waiter(client, size)
        if not self._held and not self._queue:
            self._held = True
            waiter.turn.set_result(None)
            return waiter
        self._queue[waiter] = None
        share = self._shares.setdefault(client, _Share())
        share.waiters.append(waiter)
        share.size += size
        self._waiting += 1
        self._waiting_bytes += size
        return waiter

    def _leave(self, waiter: _Waiter) -> None:
        """Take `waiter` out of the queue (granted the gate, pushed out or gone)."""
        if waiter not in self._queue:
            return
        del self._queue[waiter]
        share = self._shares[waiter.client]
        share.waiters.remove(waiter)
        share.size -= waiter.size
        if not share.waiters:
            del self._shares[waiter.client]
        self._waiting -= 1
        self._waiting_bytes -= waiter.size

    def _cancelled(self, waiter: _Waiter) -> None:
        """A queued request's task was cancelled (its client went away): it leaves the
        queue, and a gate handed to it meanwhile goes to the next one."""
        turn = waiter.turn
        if turn.cancelled():  # with its task, while it waited
            self._leave(waiter)
        elif turn.exception() is None:  # (retrieved if pushed out: no warning is logged)
            self._release()

    def _release(self) -> None:
        """Hand the gate to the oldest waiting request, or leave it free."""
        while self._queue:
            waiter = next(iter(self._queue))
            self._leave(waiter)
            if not waiter.turn.done():  # else cancelled with its task, which has not run yet
                waiter.turn.set_result(None)
                return
        self._held = False

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
