"""rev27p: an uptime checker's `/health` probe follows a target's redirect.

Attack: a node owner registers its node's endpoint on the chain (anyone's choice) and
answers its checkers' `GET /health` with `302 Location: http://169.254.169.254/...`
(a cloud's metadata service, its own link's), or a checker's own loopback or LAN
service. Every node the ring makes its checker then fetches that URL each epoch.

Now: `duties.probe_health` uses aiohttp's default `allow_redirects=True` and judges
no address at all: the redirect is followed to whatever it names. pex27 closed the same
hole for a peer's dial (`_no_redirect`) and app reports already refuse redirects
(`app_reports`, `allow_redirects=False`); the probe, the third request this node makes
to an address a stranger chose, was left.

Should: the probe never follows a redirect; a 3xx answer is "down" (a node's `/health`
answers 200 itself), and the address it names is never sent a request.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from fluxchain.node.app_reports import ReportHosts
from fluxchain.node.duties import HealthCheck, probe_health


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


def test_rev27p_a_health_probe_never_follows_a_targets_redirect() -> None:
    async def scenario() -> None:
        hits: list[str] = []

        async def metadata(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.json_response({"healthy": True})

        inner = web.Application()
        inner.router.add_get("/{tail:.*}", metadata)
        inner_runner, inner_port = await _serve(inner)

        async def target(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://127.0.0.1:{inner_port}/latest/meta-data/")

        outer = web.Application()
        outer.router.add_get("/health", target)
        outer_runner, outer_port = await _serve(outer)
        try:
            # (fix27p2: a probe goes to loopback only on a node there itself, a devnet's.)
            devnet = ReportHosts(loopback=True)
            up, _latency = await probe_health(
                f"127.0.0.1:{outer_port}", HealthCheck("test", bytes(32), bytes(33), {}), devnet
            )
        finally:
            await outer_runner.cleanup()
            await inner_runner.cleanup()
        assert hits == [], f"the probe followed the target's redirect and fetched {hits}"
        assert not up

    asyncio.run(scenario())
