"""The devnet bench's clients honour a 429's Retry-After, as a wallet does (issue 24, cli19):
a batch the node shed (`busy`) is posted again, so no sender's later nonces are stranded
behind it and `confirmed_pct` measures the chain, not the load generator; the retries are
bounded and counted, and a node that stays busy is counted refused `busy`."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.devnet import Follower, submit
from bench.load_clients import RETRIES, RETRY_AFTER_MAX_S, Load, retry_delay
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.tx import Transfer, Tx
from tests.support.bench_nodes import NODES, offer_to_fake_nodes

RATE, SECONDS = 200, 1  # ten ticks of 20 txs


async def _offer_to(busy: Callable[[int], bool]) -> tuple[Load, Follower, int]:
    """Offer RATE x SECONDS txs, concurrently, to four fake nodes that answer their n-th
    post 429 `busy` (Retry-After: 0) when `busy(n)`; an admitted tx is final at once."""
    follower = Follower()
    posts = 0
    shed = 0

    async def batch(request: web.Request) -> web.Response:
        nonlocal posts, shed
        posts += 1
        if busy(posts):
            shed += 1
            error = {"error": {"reason": "busy", "message": "the queue is full"}}
            return web.json_response(error, status=429, headers={"Retry-After": "0"})
        raws = [bytes.fromhex(t) for t in (await request.json())["txs"]]
        now = asyncio.get_running_loop().time()
        for raw in raws:
            follower.final[hashlib.sha256(raw).digest()] = now
        return web.json_response({"results": [{} for _ in raws]})

    load = await offer_to_fake_nodes(batch, follower, NODES, RATE, SECONDS, posting="concurrent")
    return load, follower, shed


def test_a_shed_batch_is_posted_again_and_strands_no_nonce() -> None:
    load, follower, shed = asyncio.run(_offer_to(busy=lambda n: n % 3 == 1))
    assert shed > 0
    assert not load.refused, dict(load.refused)
    assert load.retried == shed
    assert set(load.submitted) <= follower.final.keys()  # every tx offered got in


def test_a_node_that_stays_busy_is_retried_a_bounded_number_of_times() -> None:
    async def scenario() -> tuple[Load, int]:
        posts = 0

        async def batch(request: web.Request) -> web.Response:
            nonlocal posts
            posts += 1
            error = {"error": {"reason": "busy", "message": "the queue is full"}}
            return web.json_response(error, status=429, headers={"Retry-After": "0"})

        app = web.Application()
        app.router.add_post("/txs/batch", batch)
        server = TestServer(app)
        await server.start_server()
        try:
            key = SigningKey(sha256(b"sender"))
            txs = [
                Tx.create(key, "flux-devnet", n, 1_000, Transfer(b"\1" * 20, 1)) for n in range(3)
            ]
            load = Load(0)
            async with aiohttp.ClientSession() as session:
                await submit(session, str(server.make_url("")), txs, load)
            return load, posts
        finally:
            await server.close()

    load, posts = asyncio.run(scenario())
    assert posts == RETRIES + 1
    assert load.retried == RETRIES
    assert load.refused == {"busy": 3}  # given up: counted refused by the node's reason


def test_retry_after_is_read_as_seconds_bounded() -> None:
    assert retry_delay("1") == 1.0
    assert retry_delay("0") == 0.0
    assert retry_delay("3600") == RETRY_AFTER_MAX_S
    assert retry_delay("Wed, 21 Oct 2015 07:28:00 GMT") == 1.0  # an HTTP date: 1 s
    assert retry_delay("") == 1.0
