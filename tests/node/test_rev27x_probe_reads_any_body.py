"""rev27x: an uptime probe reads and parses a target's /health body of any size.

Attack (a node operator against its checkers, DESIGN.md §11): a target answers its
checkers' `GET /health` with a 200 and a valid JSON body of tens of megabytes
(`{"healthy": true, "pad": "aaaa..."}`) as fast as the link carries it. probe27 made the
body matter more (a proof's fields are read from it), but `probe_health` still calls
`response.json()`, which buffers the whole body and parses it on the checker's event loop,
for each of up to 64 targets x 3 attempts an epoch, within PROBE_TIMEOUT_S only. A
/health answer is ~350 bytes (healthy, height, syncing, agent, proof, previous).

Now: the probe takes all 64 MiB the target sends (and parses them on the loop).
Should: a /health answer past a small cap is down without being read further; the
checker stops reading (the target's writes fail) long before 64 MiB.
Pre-existing in `probe_health` (e558eae had the same `response.json()`); found while
checking whether probe27's body is a memory lever.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from fluxchain.node.duties import probe_health
from tests.node.test_probe27_health_proof import DEVNET, _check, _serve
from tests.support.chain import open_chain

BODY_MIB = 64
CHUNK = 1 << 20


def test_rev27x_a_probe_stops_reading_a_huge_health_body(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    sent = [0]

    async def health(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"healthy": true, "pad": "')
            for _ in range(BODY_MIB):
                await response.write(b"a" * CHUNK)
                sent[0] += CHUNK
            await response.write(b'"}')
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the checker hung up: what should happen
        return response

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
        up = asyncio.run(scene())
    finally:
        chain.close()
    assert not up
    assert sent[0] < 16 * CHUNK, (
        f"the checker's probe read {sent[0] >> 20} MiB of a target's /health body "
        f"(of {BODY_MIB} MiB sent): no cap on what a target makes it buffer and parse"
    )
