"""The devnet bench's load clients: each owns some senders and posts their txs in order.

A client posts to one node (its senders' node, as a wallet uses its own), one post in
flight at a time, each post the front of its queue (at most MAX_BATCH: what came since
its last answer), so a sender's nonces never race one another (the concurrent mode's
racing posts, later nonces first, made 33-45k `nonce_too_far`/`sender_limit` a run:
issue 24, api20 3). A tx answered "not now" (a 429 `busy` batch, or `mempool_full` /
`sender_limit` / `nonce_too_far` that the node did not hold) goes back to the front of its
client's queue, posted again after the node's Retry-After, at most RETRIES times: only its
sender waits (the whole client for a 429 `busy`), never the other clients (api20 2).
Each tx's last answer is kept (`Load.answers`), and a load's outcome is tallied once its
blocks are in (`Load.settle`): a tx that confirmed is confirmed whatever its answers said,
one the node holds is `held` (its reason), not refused, and `already_known` (the node has
it pooled, or committed) is an acceptance.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import msgspec

from fluxchain.api.models import MAX_BATCH
from fluxchain.core.tx import Tx

# A tx answered with one of these reasons was not taken now, and may be later: posted
# again after the node's Retry-After (1 s if the answer gave none). `nonce_too_far`: the
# nonce is past the sender's window over its committed nonce (and the node's quota of such
# txs it holds is full), which the sender's earlier txs committing clears; lost, it left
# every later nonce of its sender refused too (session 21).
NOT_NOW: Final = frozenset({"busy", "mempool_full", "sender_limit", "nonce_too_far"})
# At most this many times a tx, as a wallet would.
RETRIES: Final = 10
RETRY_AFTER_MAX_S: Final = 5.0  # a longer Retry-After is taken as this
PENDING: Final = "pending"
JSON: Final = {"Content-Type": "application/json"}
HELD: Final = "held:"  # and the reason the node holds it for


@dataclass(slots=True)
class Timing:
    """Where the generator's time went over a load (`devnet generator:`): each post's wall
    time from its body's encoding to its answer's decoding, and of it the client's own
    work, encoding the body and decoding the answer (the rest waits on the node); the
    ticks begun more than a tick late; the tick loop's own work; and, in serial mode, its
    time in posts."""

    post_s: list[float] = field(default_factory=list)
    encode_s: float = 0.0
    decode_s: float = 0.0
    late_ticks: int = 0
    ticks: int = 0
    serial_posting_s: float = 0.0
    routing_s: float = 0.0  # the tick loop's own work: stamping and routing each tick's txs

    def line(self) -> str:
        posts = sorted(self.post_s) or [0.0]
        wait = sum(posts) - self.encode_s - self.decode_s
        return (
            f"ticks={self.ticks} late_ticks={self.late_ticks} posts={len(self.post_s)} "
            f"post_ms_p50={1000 * statistics.median(posts):.1f} "
            f"post_ms_p99={1000 * posts[int(0.99 * (len(posts) - 1))]:.1f} "
            f"post_ms_max={1000 * posts[-1]:.1f} wait_s={wait:.1f} "
            f"encode_s={self.encode_s:.2f} decode_s={self.decode_s:.2f} "
            f"serial_posting_s={self.serial_posting_s:.1f} routing_s={self.routing_s:.2f}"
        )


@dataclass(slots=True)
class Load:
    """What one offered load saw."""

    rate: int
    seconds: int = 0
    submitted: dict[bytes, float] = field(default_factory=dict)
    # Each tx's last answer: PENDING, HELD + reason, or the reason it was refused for.
    answers: dict[bytes, str] = field(default_factory=dict)
    # Not confirmed by the end of the load, by reason (`settle`): refused, or held.
    refused: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    retried: int = 0  # posts answered "not now" (in whole or in part) and sent again
    # From the first submit until the last was answered: longer than `seconds` when the
    # APIs answered too slowly to keep the offered rate (the txs were offered late).
    submit_s: float = 0.0
    # How far behind its schedule the generator started a tick's posts, at worst: the
    # generator's own lateness (a busy CPU), where `submit_s` also waits on the APIs.
    late_s: float = 0.0
    timing: Timing = field(default_factory=Timing)
    # Each tx's JSON string (its hex in quotes) by id, encoded before the load starts
    # (`encode`), so that a post on the clock only joins them into its body.
    encoded: dict[bytes, bytes] = field(default_factory=dict)

    def encode(self, txs: list[Tx]) -> None:
        self.encoded.update((tx.id, json_string(tx)) for tx in txs)

    def settle(self, final: set[bytes] | Any) -> None:
        """Tally the txs not in `final` (confirmed) by their last answer."""
        self.refused.clear()
        self.held.clear()
        for tx_id, answer in self.answers.items():
            if tx_id in final or answer == PENDING:
                continue
            if answer.startswith(HELD):
                self.held[answer.removeprefix(HELD)] += 1
            else:
                self.refused[answer] += 1


def json_string(tx: Tx) -> bytes:
    """`tx` as a JSON string of its hex (which needs no escaping)."""
    return b'"' + tx.raw.hex().encode() + b'"'


def batch_body(chunk: list[Tx], encoded: dict[bytes, bytes]) -> bytes:
    """The `/txs/batch` body for `chunk`, of its txs' strings in `encoded` (a tx not in it,
    such as a funding tx, encoded now)."""
    strings = [encoded.get(tx.id) or json_string(tx) for tx in chunk]
    return b'{"txs":[' + b",".join(strings) + b"]}"


def answer_of(result: dict[str, Any]) -> str:
    """One tx's answer in a batch's results, as `Load.answers` keeps it."""
    error = result.get("error")
    if error is None:
        return HELD + str(result.get("reason", "")) if result.get("status") == "held" else PENDING
    reason = str(error.get("reason", "unknown"))
    return PENDING if reason == "already_known" else reason


def retry_delay(retry_after: str) -> float:
    """Seconds to wait for a Retry-After header (delay-seconds; 1 s if absent or a date)."""
    try:
        return min(max(0.0, float(retry_after)), RETRY_AFTER_MAX_S)
    except ValueError:
        return 1.0


@dataclass(slots=True, eq=False)
class LoadClient:
    """One client of the load: its senders' txs, in nonce order a sender, to one node."""

    url: str
    queue: deque[Tx] = field(default_factory=deque)
    attempts: Counter[bytes] = field(default_factory=Counter)
    queued: Counter[bytes] = field(default_factory=Counter)  # txs in `queue` by sender
    # A sender with a tx answered "not now" waits for the node's Retry-After; its later
    # txs wait behind it, the client's other senders go on.
    held_until: dict[bytes, float] = field(default_factory=dict)
    not_before: float = 0.0  # a whole batch shed (429 `busy`): the client waits
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def enqueue(self, txs: list[Tx]) -> None:
        self.queue.extend(txs)
        for tx in txs:
            self.queued[tx.sender_address] += 1
        self.arrived.set()

    def ready_at(self) -> float:
        """When the client has something to post (inf: nothing queued)."""
        now = time.perf_counter()
        held = self.held_until
        senders = [s for s, n in self.queued.items() if n]
        if not senders:
            return float("inf")
        first = min(held[s] if held.get(s, 0.0) > now else now for s in senders)
        return max(first, self.not_before)

    def ready(self) -> bool:
        return self.ready_at() <= time.perf_counter()

    def _take(self) -> list[Tx]:
        """The txs to post now, at most MAX_BATCH, in queue order, none of a held sender's
        (which stay queued, in order)."""
        now = time.perf_counter()
        held = {s for s, until in self.held_until.items() if until > now}
        if not held:
            self.held_until.clear()
            return [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
        chunk: list[Tx] = []
        kept: deque[Tx] = deque()
        for tx in self.queue:
            if len(chunk) < MAX_BATCH and tx.sender_address not in held:
                chunk.append(tx)
            else:
                kept.append(tx)
        self.queue = kept
        return chunk

    async def post(self, session: aiohttp.ClientSession, load: Load) -> None:
        """Post what can go now once; what the node says "not now" to goes back to the
        front, its sender held until the node's Retry-After (the whole client for a 429)."""
        chunk = self._take()
        if not chunk:
            return
        for tx in chunk:
            self.queued[tx.sender_address] -= 1
        try:
            began = time.perf_counter()
            data = batch_body(chunk, load.encoded)
            encoded = time.perf_counter()
            async with session.post(f"{self.url}/txs/batch", data=data, headers=JSON) as r:
                raw = await r.read()
                status, retry_after = r.status, r.headers.get("Retry-After", "")
            answered = time.perf_counter()
            body: dict[str, Any] = msgspec.json.decode(raw)
            decoded = time.perf_counter()
        except (aiohttp.ClientError, OSError, TimeoutError, msgspec.DecodeError) as exc:
            for tx in chunk:
                load.answers[tx.id] = f"transport:{type(exc).__name__}"
            return
        timing = load.timing
        timing.post_s.append(decoded - began)
        timing.encode_s += encoded - began
        timing.decode_s += decoded - answered
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(chunk):
            # The whole batch refused (a 429 `busy`, or a 4xx): {"error": {...}}
            results = [{"error": body.get("error") or {"reason": "no_results"}}] * len(chunk)
        again = []
        for tx, result in zip(chunk, results, strict=True):
            answer = load.answers[tx.id] = answer_of(result)
            if answer in NOT_NOW and self.attempts[tx.id] < RETRIES:
                self.attempts[tx.id] += 1
                again.append(tx)
            else:
                self.attempts.pop(tx.id, None)
        if not again:
            return
        load.retried += 1
        until = time.perf_counter() + retry_delay(retry_after)
        self.queue.extendleft(reversed(again))
        for tx in again:
            self.queued[tx.sender_address] += 1
            self.held_until[tx.sender_address] = until
        if status == 429:
            self.not_before = until

    async def run(self, session: aiohttp.ClientSession, load: Load, closed: asyncio.Event) -> None:
        """Post as txs arrive, one post in flight, until the load is closed and all sent."""
        while self.queue or not closed.is_set():
            if not self.queue:
                self.arrived.clear()
                await self.arrived.wait()
                continue
            wait = self.ready_at() - time.perf_counter()
            if wait > 0:
                # New txs of a sender not held end the wait early.
                self.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), wait)
                continue
            await self.post(session, load)


async def drain(clients: list[LoadClient], session: aiohttp.ClientSession, load: Load) -> None:
    """Post, one client after another, until every queue is empty (retries waiting)."""
    while any(c.queue for c in clients):
        for client in clients:
            if client.ready():
                await client.post(session, load)
        soonest = min(c.ready_at() for c in clients)
        if soonest != float("inf"):
            await asyncio.sleep(max(0.0, soonest - time.perf_counter()))
