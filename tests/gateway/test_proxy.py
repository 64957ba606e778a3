"""The gateway's HAProxy child: membership by the runtime API, reloads that drop nothing,
and never outliving a gateway that was killed."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import socket
import threading
import time
from pathlib import Path

import aiohttp

from fluxchain.gateway.haproxy import ProxySettings
from fluxchain.gateway.proxy import Proxy, ProxyError
from fluxchain.gateway.routes import Backend, RouteTable, Server
from tests.gateway.harness import DOMAIN, GatewayProcess, paced_load
from tests.support.ports import closed_port, lease_ports
from tests.support.wait import wait_until


def _master_pid(state: Path) -> int:
    try:
        return int((state / "haproxy.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def test_a_gateway_killed_with_sigkill_leaves_no_haproxy_holding_its_ports(tmp_path: Path) -> None:
    """The operator's accident: `kill -9` of the gateway leaves HAProxy (its own session)
    running on the old ports; the next gateway on the same state dir stops it first."""
    state = tmp_path / "gateway"
    nowhere = f"http://127.0.0.1:{closed_port()}"  # no node: HAProxy starts all the same
    first = GatewayProcess(state, nowhere)
    leftover = 0
    try:
        wait_until(lambda: first.get(f"x.{DOMAIN}")[0] == 404, 30, f"first up ({first.log})")
        leftover = _master_pid(state)
        assert leftover
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert Path(f"/proc/{leftover}").exists()  # still serving the dead gateway's port
        assert first.get(f"x.{DOMAIN}")[0] == 404
        second = GatewayProcess(state, nowhere)
        try:
            wait_until(lambda: second.get(f"x.{DOMAIN}")[0] == 404, 30, f"second up ({second.log})")
            assert _master_pid(state) != leftover
            wait_until(lambda: not _alive(leftover), 10, "the leftover HAProxy gone")
            assert first.get(f"x.{DOMAIN}")[0] == 0  # nothing listens on the old port
        finally:
            second.close()
        wait_until(lambda: not _alive(_master_pid(state)), 10, "HAProxy stops with its gateway")
    finally:
        first.close()
        if _alive(leftover):  # the test failed before the second gateway stopped it
            os.kill(leftover, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """A running process (not a zombie); pid 0 (no pid file) is none."""
    try:
        return pid > 0 and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _table(app: str, servers: tuple[Server, ...], extra_app: str = "") -> RouteTable:
    names = [app, *([extra_app] if extra_app else [])]
    backends = tuple(
        Backend(f"app_{n}_web_0", n, "http", 4, servers if n == app else ()) for n in names
    )
    hosts = tuple(sorted((f"{n}.{DOMAIN}", f"app_{n}_web_0") for n in names))
    return RouteTable(backends, hosts, (), (), ())


def test_membership_changes_without_reload_and_a_reload_drops_no_request(tmp_path: Path) -> None:
    """A known app with no live instance is HAProxy's 503; an instance joins and leaves
    through the runtime API (no reload); a new app reloads HAProxy under load, and not one
    request of the load fails."""

    async def scenario() -> None:
        with lease_ports(2) as lease:
            http_port, app_port = lease.ports
            app = _serve_http(app_port)
            proxy = Proxy(ProxySettings("127.0.0.1", http_port, tmp_path / "state"))
            url = f"http://127.0.0.1:{http_port}/"
            try:
                await proxy.start(_table("hello", ()))
                assert await _status(url, f"hello.{DOMAIN}") == 503
                assert await _status(url, f"nope.{DOMAIN}") == 404
                instance = Server("127.0.0.1", app_port, "n1", 0)
                await proxy.apply(_table("hello", (instance,)))
                assert await _status(url, f"hello.{DOMAIN}") == 200
                await proxy.apply(_table("hello", ()))
                assert await _status(url, f"hello.{DOMAIN}") == 503
                await proxy.apply(_table("hello", (instance,)))
                assert proxy.stats.reloads == 0 and proxy.stats.runtime_updates == 3
                load = asyncio.create_task(paced_load(url, f"hello.{DOMAIN}", 100, 4))
                await asyncio.sleep(1)
                await proxy.apply(_table("hello", (instance,), extra_app="other"))
                assert proxy.stats.reloads == 1
                result = await load
                assert result.sent >= 350 and result.failures == 0, result.errors
                assert await _status(url, f"other.{DOMAIN}") == 503  # the new app's name
            finally:
                await proxy.stop()
                app.shutdown()

    asyncio.run(scenario())


async def _status(url: str, host: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Host": host}) as response,
    ):
        return response.status


def _serve_http(port: int) -> http.server.ThreadingHTTPServer:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_state_dir_deeper_than_a_socket_address_allows_still_works(tmp_path: Path) -> None:
    """The bug: a state dir past ~95 bytes (pytest's under xdist) made HAProxy refuse its
    own admin socket (a unix socket address holds at most 107 bytes) and the gateway exit."""
    state = tmp_path / ("d" * 80) / "state"
    assert len(str(state / "admin.sock")) > 107

    async def scenario() -> None:
        with lease_ports(1) as lease:
            proxy = Proxy(ProxySettings("127.0.0.1", lease.ports[0], state))
            try:
                await proxy.start()
                assert await proxy.api.info_pid() > 0
                url = f"http://127.0.0.1:{lease.ports[0]}/"
                assert await _status(url, f"x.{DOMAIN}") == 404
            finally:
                await proxy.stop()

    asyncio.run(scenario())


def _tcp_table(app: str, servers: tuple[Server, ...], squatter_port: int = 0) -> RouteTable:
    """`app` on HTTP; with `squatter_port`, a second app that publishes that TCP port."""
    table = _table(app, servers)
    if not squatter_port:
        return table
    squat = Backend("app_squatter_tcp_1", "squatter", "tcp", 4, ())
    backends = tuple(sorted((*table.backends, squat), key=lambda b: b.name))
    return RouteTable(backends, table.hosts, ((squatter_port, squat.name),), (), ())


def test_an_app_tcp_port_busy_on_the_gateway_machine_does_not_freeze_failover(
    tmp_path: Path,
) -> None:
    """The attack: an app owner publishes a TCP port that something on the gateway's
    machine already listens on (here a plain socket; in practice an app its operator's
    own node hosts there, a database). `haproxy -c` does not bind, so the config passes;
    the reload fails on bind, the old worker keeps serving, and the gateway retried the
    same reload on every pass (15 s each) without ever applying a membership change
    again: no other app's instance could move, failover was frozen for all of them."""

    async def scenario() -> None:
        with lease_ports(4) as lease:
            http_port, a_port, b_port, busy_port = lease.ports
            first, second = _serve_http(a_port), _serve_http(b_port)
            squatted = socket.socket()
            squatted.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatted.bind(("127.0.0.1", busy_port))
            squatted.listen()
            proxy = Proxy(ProxySettings("127.0.0.1", http_port, tmp_path / "state"))
            url = f"http://127.0.0.1:{http_port}/"
            a = Server("127.0.0.1", a_port, "n1", 0)
            b = Server("127.0.0.1", b_port, "n2", 0)
            try:
                await proxy.start(_tcp_table("hello", (a,)))
                assert await _status(url, f"hello.{DOMAIN}") == 200
                # the squatter's app is registered: the gateway tries a reload
                with contextlib.suppress(ProxyError):
                    await asyncio.wait_for(proxy.apply(_tcp_table("hello", (a,), busy_port)), 40)
                # hello's host dies and the chain moves its instance to b
                first.shutdown()
                first.server_close()
                with contextlib.suppress(ProxyError):
                    await asyncio.wait_for(proxy.apply(_tcp_table("hello", (b,), busy_port)), 40)
                assert await _status(url, f"hello.{DOMAIN}") == 200, (
                    "the moved instance is not routed: one app's busy TCP port froze every "
                    f"membership change (reloads={proxy.stats.reloads}, "
                    f"runtime_updates={proxy.stats.runtime_updates})"
                )
            finally:
                await proxy.stop()
                squatted.close()
                second.shutdown()

    asyncio.run(scenario())


def test_a_long_lived_tcp_connection_survives_a_reload_another_app_causes(tmp_path: Path) -> None:
    """The attack: registering an app (0.02 FLUX on the devnet genesis) reloads every
    gateway, and a reload gives the old worker 60 s (`hard-stop-after`) before it is
    killed with whatever connections it still holds. So anyone who registers an app a
    minute cuts every database session, websocket or game connection through every
    gateway, every minute. A connection of another app outlives the reload."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def scenario() -> None:
        with lease_ports(3) as lease:
            http_port, db_port, listen_port = lease.ports
            db = await asyncio.start_server(echo, "127.0.0.1", db_port)
            proxy = Proxy(ProxySettings("127.0.0.1", http_port, tmp_path / "state"))
            instance = Server("127.0.0.1", db_port, "n1", 0)
            backend = Backend("app_db_web_1", "db", "tcp", 3, (instance,))
            table = RouteTable((backend,), (), ((listen_port, backend.name),), (), ())
            try:
                await proxy.start(table)
                reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
                writer.write(b"before\n")
                assert await asyncio.wait_for(reader.readline(), 5) == b"before\n"
                # another app is registered: its backend and host name reload HAProxy
                await proxy.apply(
                    RouteTable(
                        (*_table("other", ()).backends, backend),
                        _table("other", ()).hosts,
                        table.tcp_ports,
                        (),
                        (),
                    )
                )
                assert proxy.stats.reloads == 1
                deadline = time.monotonic() + 70  # past HAProxy's hard-stop-after
                while time.monotonic() < deadline:
                    writer.write(b"still\n")
                    try:
                        line = await asyncio.wait_for(reader.readline(), 5)
                    except (OSError, TimeoutError):
                        line = b""
                    assert line == b"still\n", (
                        "the reload killed a connection of an app that did not change, "
                        f"{70 - (deadline - time.monotonic()):.0f} s after it"
                    )
                    await asyncio.sleep(1)
                writer.close()
            finally:
                await proxy.stop()
                db.close()

    asyncio.run(scenario())
