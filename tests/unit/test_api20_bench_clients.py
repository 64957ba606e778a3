"""The devnet bench's clients (issue 24, api20 2, 3): concurrent clients post each
sender's txs in nonce order (racing posts made 33-45k `nonce_too_far`/`sender_limit` a
run, so `confirmed_pct` measured the generator); a retry waits only its own client; and
outcomes are counted truthfully: a tx that confirmed is confirmed whatever it was
answered, one its node holds is `held`, not refused."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

import bench.devnet
from bench.devnet import Follower
from bench.load_clients import Load
from fluxchain.core.tx import Tx
from tests.support.bench_nodes import NODES, offer_to_fake_nodes

SENDERS = 16
RATE, SECONDS = 400, 1  # ten ticks of 40 txs
SEED = 20_002

Answer = Callable[[int, list[Tx]], Awaitable[tuple[int, dict[str, Any]]]]


async def _offer_to(answer: Answer, follower: Follower, **options: Any) -> Load:
    """Offer RATE x SECONDS txs from SENDERS senders to four fake nodes; node n answers a
    batch with `answer(n, txs)`."""

    async def batch(request: web.Request) -> web.Response:
        raws = [bytes.fromhex(t) for t in (await request.json())["txs"]]
        txs = [Tx.decode(raw, 1 << 20) for raw in raws]
        status, body = await answer(int(request.match_info["node"]), txs)
        headers = {"Retry-After": "1"} if status == 429 else {}
        return web.json_response(body, status=status, headers=headers)

    return await offer_to_fake_nodes(batch, follower, SENDERS, RATE, SECONDS, **options)


def _final(follower: Follower, txs: list[Tx]) -> None:
    now = asyncio.get_running_loop().time()
    for tx in txs:
        follower.final[hashlib.sha256(tx.raw).digest()] = now


def test_api20_concurrent_clients_post_each_senders_txs_in_nonce_order() -> None:
    """Nodes that answer after a random delay and refuse a nonce out of order
    (`nonce_too_far`, as a pool does past its gapped quota): nothing refused, and many
    posts were in flight at once."""
    rng = random.Random(SEED)
    follower = Follower()
    next_nonce: dict[bytes, int] = {}
    in_flight = peak = 0

    async def answer(node: int, txs: list[Tx]) -> tuple[int, dict[str, Any]]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(rng.uniform(0.0, 0.25))
        in_flight -= 1
        results: list[dict[str, Any]] = []
        for tx in txs:
            if tx.nonce != next_nonce.get(tx.sender_address, 0):
                results.append({"error": {"reason": "nonce_too_far", "message": "gap"}})
                continue
            next_nonce[tx.sender_address] = tx.nonce + 1
            _final(follower, [tx])
            results.append({"id": tx.id.hex(), "status": "pending"})
        return 200, {"results": results}

    load = asyncio.run(_offer_to(answer, follower, posting="concurrent"))
    assert not load.refused, f"seed {SEED}: {dict(load.refused)}"
    assert set(load.submitted) <= follower.final.keys(), f"seed {SEED}"
    assert peak > NODES, f"seed {SEED}: at most {peak} posts at once"


@pytest.mark.parametrize("posting", ["node", "serial"])
def test_api20_a_retry_waits_only_its_own_client(posting: str) -> None:
    """Node 0 sheds its first post (429, Retry-After 1 s): the generator (one client a
    node, posting on its own or serially) keeps its schedule for every other node and
    posts node 0's txs again, in order, a second on."""
    follower = Follower()
    shed = False

    async def answer(node: int, txs: list[Tx]) -> tuple[int, dict[str, Any]]:
        nonlocal shed
        if node == 0 and not shed:
            shed = True
            return 429, {"error": {"reason": "busy", "message": "the queue is full"}}
        _final(follower, txs)
        return 200, {"results": [{"id": t.id.hex(), "status": "pending"} for t in txs]}

    load = asyncio.run(_offer_to(answer, follower, posting=posting))
    assert shed and load.retried == 1
    assert not load.refused, dict(load.refused)
    assert set(load.submitted) <= follower.final.keys()
    assert load.late_s < 0.5, f"a tick began {load.late_s:.2f} s late behind the retry"


def test_api20_outcomes_count_what_confirmed_and_what_is_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node that says `already_known` of txs it holds, and `held` of others: those that
    confirm count confirmed, those that do not count held, none refused."""
    monkeypatch.setattr(bench.devnet, "DRAIN_S", 0.5)  # some never confirm: no 30 s wait
    follower = Follower()
    never: set[bytes] = set()

    async def answer(node: int, txs: list[Tx]) -> tuple[int, dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for tx in txs:
            if tx.nonce % 3 == 0:
                results.append({"error": {"reason": "already_known", "message": "pooled"}})
                _final(follower, [tx])
            elif tx.nonce % 3 == 1:
                results.append(
                    {"id": tx.id.hex(), "status": "held", "reason": "sender_limit", "message": ""}
                )
                _final(follower, [tx])  # offered again after a block, and committed
            else:
                results.append(
                    {"id": tx.id.hex(), "status": "held", "reason": "nonce_too_far", "message": ""}
                )
                never.add(tx.id)
        return 200, {"results": results}

    load = asyncio.run(_offer_to(answer, follower, posting="concurrent"))
    assert not load.refused, dict(load.refused)
    assert load.held == {"nonce_too_far": len(never)}
    assert load.submitted.keys() - follower.final.keys() == never


@pytest.mark.parametrize("posting", ["node", "serial"])
def test_api20_a_tx_answered_not_now_holds_back_only_its_sender(posting: str) -> None:
    """Node 0 answers sender 0's first tx `mempool_full` (a 200 batch, no Retry-After: 1 s):
    sender 0's txs wait and go again in order; the other senders of node 0's client are
    posted on schedule."""
    follower = Follower()
    posted: dict[bytes, tuple[float, bytes]] = {}  # when each was taken, its sender
    refused_once: set[bytes] = set()
    first_sender: bytes | None = None

    async def answer(node: int, txs: list[Tx]) -> tuple[int, dict[str, Any]]:
        nonlocal first_sender
        results: list[dict[str, Any]] = []
        now = time.perf_counter()  # the clock of `Load.submitted`
        for tx in txs:
            if node == 0 and first_sender is None:
                first_sender = tx.sender_address
            if tx.sender_address == first_sender and not refused_once:
                refused_once.add(tx.id)
                results.append({"error": {"reason": "mempool_full", "message": "full"}})
                continue
            posted.setdefault(tx.id, (now, tx.sender_address))
            _final(follower, [tx])
            results.append({"id": tx.id.hex(), "status": "pending"})
        return 200, {"results": results}

    load = asyncio.run(_offer_to(answer, follower, posting=posting))
    assert refused_once and load.retried == 1
    assert not load.refused, dict(load.refused)
    assert set(load.submitted) <= follower.final.keys()
    assert load.late_s < 0.5, f"a tick began {load.late_s:.2f} s late behind the retry"
    others = [(t, at) for t, (at, sender) in posted.items() if sender != first_sender]
    assert max(at - load.submitted[t] for t, at in others) < 0.5
    # Sender 0's txs waited behind its refused one, then went, in order, a second on.
    waited = [
        at - load.submitted[t] for t, (at, sender) in posted.items() if sender == first_sender
    ]
    assert max(waited) >= 0.9


def test_a_senders_later_txs_refused_for_the_gap_go_again_behind_it() -> None:
    """Node 0 answers one sender's tx `sender_limit` (not held), and that sender's later
    txs in the post `nonce_too_far` for the gap it leaves, as a pool does: those go again
    behind it, in order, and every tx confirms; none is refused."""
    follower = Follower()
    next_nonce: dict[bytes, int] = {}
    limited: bytes | None = None
    gapped = 0

    async def answer(node: int, txs: list[Tx]) -> tuple[int, dict[str, Any]]:
        nonlocal limited, gapped
        results: list[dict[str, Any]] = []
        for tx in txs:
            if tx.nonce != next_nonce.get(tx.sender_address, 0):
                gapped += 1
                results.append({"error": {"reason": "nonce_too_far", "message": "gap"}})
            elif node == 0 and limited is None and tx.nonce >= 1:
                limited = tx.sender_address
                results.append({"error": {"reason": "sender_limit", "message": "full"}})
            else:
                next_nonce[tx.sender_address] = tx.nonce + 1
                _final(follower, [tx])
                results.append({"id": tx.id.hex(), "status": "pending"})
        return 200, {"results": results}

    load = asyncio.run(_offer_to(answer, follower))
    assert limited is not None and gapped > 0 and load.retried == 1
    assert not load.refused, dict(load.refused)
    assert set(load.submitted) <= follower.final.keys()
