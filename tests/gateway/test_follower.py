"""What the gateway reads from hosting nodes is bounded: a node cannot stall it or fill
its memory with its agent report."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.server import create_app
from fluxchain.core import apps
from fluxchain.core.tx import AppRegister
from fluxchain.gateway.follower import (
    MAX_REPORT_BYTES,
    REPORT_TIMEOUT_S,
    ChainFollower,
    NodeUnreachableError,
    agent_report,
)
from fluxchain.gateway.haproxy import ProxySettings
from fluxchain.gateway.service import Gateway, GatewayConfig
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, app_spec, funded_key, open_chain
from tests.support.ports import lease_ports


async def _serve(routes: list[web.RouteDef]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"127.0.0.1:{port}"


def test_a_hosting_node_that_answers_slowly_or_hugely_is_cut_off() -> None:
    """The attack: a host's `/agent` trickles forever, or sends 64 MiB."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b"0," * MAX_REPORT_BYTES + b"0]")

    async def scenario() -> None:
        runner, slow_host = await _serve([web.get("/agent", slow)])
        huge_runner, huge_host = await _serve([web.get("/agent", huge)])
        try:
            async with aiohttp.ClientSession() as session:
                started = time.monotonic()
                with pytest.raises(NodeUnreachableError):
                    await agent_report(session, slow_host)
                assert time.monotonic() - started < REPORT_TIMEOUT_S + 1
                with pytest.raises(NodeUnreachableError, match="body over"):
                    await agent_report(session, huge_host)
        finally:
            await runner.cleanup()
            await huge_runner.cleanup()

    asyncio.run(scenario())


def test_the_follower_moves_to_the_next_node_when_one_does_not_answer() -> None:
    async def apps(request: web.Request) -> web.Response:
        return web.json_response({"apps": [{"name": "hello"}]})

    async def scenario() -> None:
        runner, host = await _serve([web.get("/apps", apps)])
        dead, dead_host = await _serve([])
        await dead.cleanup()  # nothing listens there any more
        try:
            async with aiohttp.ClientSession() as session:
                follower = ChainFollower([f"http://{dead_host}", f"http://{host}"], session)
                assert await follower.apps() == [{"name": "hello"}]
                assert follower.node_url == f"http://{host}"
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


SMALLEST = {"expire": 100, "cpu": 1, "ram_mb": 100, "disk_gb": 1, "ports": ()}


def test_a_thousand_cheap_apps_cannot_hide_every_later_app_from_the_gateways(
    tmp_path: Path,
) -> None:
    """The attack: `GET /apps` answers the first 1,000 apps by name, and the gateway reads
    that one page. 1,000 apps named `a0000`..`a0999` (the smallest spec at the shortest
    expiry: 0.02 FLUX each on the devnet genesis, price and charge) push every app named
    after them off every gateway: `zoo` is registered and paid for, and no gateway has a
    route to it. The gateway must see every app."""

    async def scenario() -> None:
        chain = open_chain(tmp_path / "home")
        service = NodeService(chain)
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        try:
            builder, key = Builder(chain), funded_key()
            names = [f"a{i:04d}" for i in range(1_000)] + ["zoo"]
            for start in range(0, len(names), 250):
                builder.commit(
                    [
                        builder.tx(key, AppRegister(app_spec(key, name, **SMALLEST)))
                        for name in names[start : start + 250]
                    ]
                )
            assert builder.rejected == []
            assert apps.get_app(chain.state, "zoo") is not None
            async with aiohttp.ClientSession() as session:
                follower = ChainFollower([str(client.make_url("")).rstrip("/")], session)
                listed = {item["name"] for item in await follower.apps()}
            assert "zoo" in listed, f"the gateway sees {len(listed)} of {len(names)} apps"
        finally:
            await client.close()
            chain.close()

    asyncio.run(scenario())


def test_a_hosting_node_cannot_redirect_the_gateway_to_another_address() -> None:
    """The attack: a hosting node's `/agent` answers `302 Location: http://<elsewhere>/…`
    and the gateway's client follows it, so the gateway sends GETs wherever the node says
    (its own machine, the operator's network, a cloud metadata address: a blind SSRF), and
    takes what answers there as that node's report. A report is read at the node's
    registered endpoint and nowhere else."""
    elsewhere_hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        elsewhere_hits.append(request.path_qs)
        return web.json_response({"workloads": []})

    async def scenario() -> None:
        target, target_host = await _serve([web.get("/{tail:.*}", elsewhere)])

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://{target_host}/internal/admin?do=delete")

        runner, host = await _serve([web.get("/agent", redirect)])
        try:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(NodeUnreachableError):
                    await agent_report(session, host)
            assert elsewhere_hits == [], f"the gateway followed the node to {elsewhere_hits}"
        finally:
            await runner.cleanup()
            await target.cleanup()

    asyncio.run(scenario())


def test_a_failed_status_write_does_not_take_the_gateway_and_its_haproxy_down(
    tmp_path: Path,
) -> None:
    """The attack's amplifier: a pass whose `status.json` cannot be written (a full disk,
    or no descriptor left after a UDP flood) raises an OSError the gateway's loop does not
    catch: the gateway exits and stops its HAProxy, so every app on it goes dark, where a
    failed pass should leave the last table serving. Here status.json is a directory."""

    async def apps_list(request: web.Request) -> web.Response:
        return web.json_response({"apps": []})

    async def blocks(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # no block ever: the gateway polls every second
        return ws

    async def scenario() -> None:
        runner, host = await _serve([web.get("/apps", apps_list), web.get("/ws", blocks)])
        state = tmp_path / "state"
        (state / "status.json" / "blocked").mkdir(parents=True)
        with lease_ports(1) as lease:
            settings = ProxySettings("127.0.0.1", lease.ports[0], state)
            gateway = Gateway(GatewayConfig((f"http://{host}",), "apps.localhost", settings))
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                deadline = time.monotonic() + 5  # five passes
                while time.monotonic() < deadline and not task.done():
                    await asyncio.sleep(0.2)
                if task.done():
                    raise AssertionError(
                        f"the gateway exited ({task.exception()!r}); HAProxy running: "
                        f"{gateway.proxy.alive()}"
                    )
                assert gateway.proxy.alive()
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await task
                await gateway.proxy.stop()
                await runner.cleanup()

    asyncio.run(scenario())


def test_a_hosting_node_answering_deeply_nested_json_cannot_crash_the_gateway() -> None:
    """The attack: a hosting node's `/agent` answers 100,000 `[` (100 KB, well under the
    1 MiB report bound). json.loads raises RecursionError, which `get_json` does not turn
    into NodeUnreachableError (it catches aiohttp.ClientError, TimeoutError, OSError and
    ValueError), so it leaves `_read_reports` and the gateway's pass: the gateway exits and
    stops HAProxy. What should happen: that node's report is unusable
    (NodeUnreachableError), as for any other garbage, and the gateway keeps routing."""

    async def nested(_request: web.Request) -> web.Response:
        return web.Response(text="[" * 100_000, content_type="application/json")

    async def scenario() -> None:
        with lease_ports(1) as lease:
            (port,) = lease.ports
            app = web.Application()
            app.router.add_get("/agent", nested)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                async with aiohttp.ClientSession() as session:
                    with pytest.raises(NodeUnreachableError):
                        await agent_report(session, f"127.0.0.1:{port}")
            finally:
                await runner.cleanup()

    asyncio.run(scenario())


def test_hosting_nodes_registered_at_slow_dns_names_cannot_stall_every_pass(
    tmp_path: Path,
) -> None:
    """The attack: a few node owners register their endpoints as names under a domain whose
    nameserver (theirs) answers each lookup after a resolver's timeout, and host an
    instance each (their own app pinned to them) so the gateway must resolve them. The
    gateway pins endpoint names one after the other (`Gateway._pin` awaits each
    getaddrinfo in turn) on every pass, before it reads reports and applies the table: 5
    such names at 2 s each hold every pass for 10 s, during which no instance that moved
    after a host died joins HAProxy, for every app on the gateway. The slow nameserver is
    played here by the loop's getaddrinfo answering each name after 2 s. What should
    happen: lookups run together under a deadline, and a name that misses it is left out
    of that pass; the pass takes about one deadline, not one per name."""
    settings = ProxySettings("127.0.0.1", 1, tmp_path / "state")
    gateway = Gateway(GatewayConfig(("http://127.0.0.1:1",), "apps.example.org", settings))
    names = [f"n{i}.slow.attacker.example:26700" for i in range(5)]

    async def scenario() -> float:
        loop = asyncio.get_running_loop()

        async def slow_nameserver(host: str, *args: object, **kwargs: object) -> list[Any]:
            await asyncio.sleep(2)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.7", 0))]

        loop.getaddrinfo = slow_nameserver  # type: ignore[method-assign,assignment]
        started = time.monotonic()
        await gateway._pin(names)
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert took < 4, f"pinning {len(names)} slow names held the pass for {took:.1f} s"
