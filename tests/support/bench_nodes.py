"""Fake nodes for the devnet bench's load generator: four APIs on one test server, each
account at nonce 0, each `/txs/batch` answered by the test's handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.devnet import Follower, offer
from bench.load_clients import Load
from fluxchain.core.crypto import SigningKey, sha256

NODES = 4

BatchHandler = Callable[[web.Request], Awaitable[web.Response]]


async def offer_to_fake_nodes(
    batch: BatchHandler,
    follower: Follower,
    senders: int,
    rate: int,
    seconds: int,
    **options: Any,
) -> Load:
    """`bench.devnet.offer` of `rate` x `seconds` txs from `senders` senders to NODES fake
    nodes (`/n{node}`), whose batch posts `batch` answers."""

    async def params(request: web.Request) -> web.Response:
        return web.json_response({"address_hrp": "tflux"})

    async def account(request: web.Request) -> web.Response:
        return web.json_response({"nonce": 0})

    app = web.Application()
    app.router.add_get("/n{node}/params", params)
    app.router.add_get("/n{node}/accounts/{address}", account)
    app.router.add_post("/n{node}/txs/batch", batch)
    server = TestServer(app)
    await server.start_server()
    try:
        urls = [str(server.make_url(f"/n{i}")) for i in range(NODES)]
        keys = [SigningKey(sha256(bytes([i]))) for i in range(senders)]
        async with aiohttp.ClientSession() as session:
            return await offer(
                session, urls, "flux-devnet", follower, keys, rate, seconds, **options
            )
    finally:
        await server.close()
