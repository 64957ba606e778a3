"""fix27x: a /health answer within MAX_HEALTH_ANSWER but nested past the JSON parser's
stack is down, and the probe (the checker's duty) goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from fluxchain.node.duties import MAX_HEALTH_ANSWER, probe_health
from tests.node.test_probe27_health_proof import DEVNET, _check, _serve
from tests.support.chain import open_chain


def test_fix27x_a_deeply_nested_health_answer_is_down(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    nested = b"[" * (MAX_HEALTH_ANSWER - 1)

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=nested, content_type="application/json")

    async def scene() -> bool:
        app = web.Application()
        app.router.add_get("/health", health)
        runner, endpoint = await _serve(app)
        try:
            up, _ = await probe_health(endpoint, _check(chain, 0), DEVNET)
        finally:
            await runner.cleanup()
        return up

    try:
        assert not asyncio.run(scene())
    finally:
        chain.close()
