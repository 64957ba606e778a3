"""bench.devnet's and bench.wan's `sigs_per_tx_node` (met20): the tx signatures all nodes
verified between two scrapes of their `/metrics`, per confirmed tx a node."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, generate_latest

from bench.frames import Frames
from fluxchain.api.metrics import SignatureChecks
from fluxchain.api.view import SignatureCounts


def test_sigs_per_tx_node_is_the_signatures_verified_between_two_scrapes_per_tx_a_node() -> None:
    # Two nodes' counters (admission, block, copies taken) at each scrape: 100 txs
    # confirmed; node a verified 90 at admission and 10 in a block check (whose copies it
    # took unverified), node b 100 at admission and 4 in a block check (4 verified twice).
    scrapes = {
        "a": [SignatureCounts(10, 0, 0), SignatureCounts(100, 10, 10)],
        "b": [SignatureCounts(0, 10, 0), SignatureCounts(100, 14, 0)],
    }
    scrape = 0

    def text(node: str) -> bytes:
        registry = CollectorRegistry()
        registry.register(SignatureChecks(lambda: scrapes[node][scrape]))
        return generate_latest(registry)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=text(request.match_info["node"]), content_type="text/plain")

    async def run() -> tuple[Frames, Frames]:
        nonlocal scrape
        app = web.Application()
        app.router.add_get("/{node}/metrics", metrics)
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            apis = [str(server.make_url(f"/{node}")) for node in scrapes]
            before = await Frames.read(session, apis)
            scrape = 1
            return before, await Frames.read(session, apis)

    before, after = asyncio.run(run())
    assert after.sigs_per_tx(before, 100, 2) == (
        "sigs_per_tx_node=1.02 sigs_by_path=admission:0.95,block:0.07,taken:0.05"
    )
    assert after.sigs_per_tx(before, 0, 2) == "sigs_per_tx_node=-"  # nothing confirmed
    assert Frames().sigs_per_tx(before, 100, 2) == "sigs_per_tx_node=-"  # no counters
