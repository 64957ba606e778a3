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
from dataclasses import replace
from pathlib import Path

import aiohttp

from fluxchain.gateway.haproxy import ProxySettings
from fluxchain.gateway.proxy import Proxy, ProxyError
from fluxchain.gateway.routes import Backend, RouteTable, Server
from tests.gateway.harness import DOMAIN, GatewayProcess, paced_load
from tests.support.ports import closed_port, lease_ports
from tests.support.wait import wait_until, wait_until_async


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A TCP service standing in for an app's database: echoes what it reads."""
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


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
    through the runtime API (no reload); a new app when the pool of spare backends is
    empty reloads HAProxy under load, and not one request of the load fails."""

    async def scenario() -> None:
        with lease_ports(2) as lease:
            http_port, app_port = lease.ports
            app = _serve_http(app_port)
            settings = ProxySettings("127.0.0.1", http_port, tmp_path / "state")
            proxy = Proxy(settings, spare_backends=0)  # every new app must grow the pool
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


def _with_servers(table: RouteTable, servers: dict[str, tuple[Server, ...]]) -> RouteTable:
    backends = tuple(replace(b, servers=servers.get(b.app, b.servers)) for b in table.backends)
    return replace(table, backends=backends)


def test_an_app_placed_under_load_on_another_needs_no_reload(tmp_path: Path) -> None:
    """The attack: registering an app (0.02 FLUX on the devnet genesis) made every gateway
    reload HAProxy, under every other app's traffic, each time: a config reload was the
    only way to add a backend and a host name. Now a new app takes a spare backend of the
    pool and its host name is added to the running map: under a steady load on hello,
    `other` arrives, answers at once, and leaves, with no reload and no failed request."""

    async def scenario() -> None:
        with lease_ports(3) as lease:
            http_port, hello_port, other_port = lease.ports
            hello_app, other_app = _serve_http(hello_port), _serve_http(other_port)
            proxy = Proxy(ProxySettings("127.0.0.1", http_port, tmp_path / "state"))
            url = f"http://127.0.0.1:{http_port}/"
            hello = Server("127.0.0.1", hello_port, "n1", 0)
            other = Server("127.0.0.1", other_port, "n2", 0)
            try:
                await proxy.start(_table("hello", (hello,)))
                load = asyncio.create_task(paced_load(url, f"hello.{DOMAIN}", 100, 4))
                await asyncio.sleep(1)
                assert await _status(url, f"other.{DOMAIN}") == 404
                both = _with_servers(_table("hello", (hello,), "other"), {"other": (other,)})
                await proxy.apply(both)
                assert await _status(url, f"other.{DOMAIN}") == 200  # no check to wait for
                assert proxy.assigned["app_other_web_0"] != proxy.assigned["app_hello_web_0"]
                await asyncio.sleep(1)
                await proxy.apply(_table("hello", (hello,)))  # other's owner cancels it
                assert await _status(url, f"other.{DOMAIN}") == 404
                result = await load
                print(
                    f"app added and removed under {result.sent} requests at 100/s: "
                    f"{result.failures} failed, {proxy.stats.reloads} reloads, "
                    f"{proxy.stats.map_updates} map updates"
                )
                assert proxy.stats.reloads == 0 and proxy.stats.map_updates == 2
                assert result.sent >= 350 and result.failures == 0, result.errors
                assert "other" not in (tmp_path / "state" / "hosts.map").read_text()
            finally:
                await proxy.stop()
                hello_app.shutdown()
                other_app.shutdown()

    asyncio.run(scenario())


def test_a_pool_that_runs_out_is_grown_by_one_reload_and_apps_keep_their_backends(
    tmp_path: Path,
) -> None:
    """Two spare backends: two apps arrive at runtime; the third finds no room, so one
    reload grows the pool (with two spares again) and every app already routed keeps its
    backend and answers throughout; the next app is at runtime again."""

    async def scenario() -> None:
        with lease_ports(2) as lease:
            http_port, app_port = lease.ports
            app = _serve_http(app_port)
            settings = ProxySettings("127.0.0.1", http_port, tmp_path / "state")
            proxy = Proxy(settings, reload_interval_s=0, spare_backends=2)
            url = f"http://127.0.0.1:{http_port}/"
            instance = Server("127.0.0.1", app_port, "n1", 0)

            def apps(*names: str) -> RouteTable:
                backends = tuple(
                    Backend(f"app_{n}_web_0", n, "http", 4, (instance,)) for n in names
                )
                hosts = tuple(sorted((f"{n}.{DOMAIN}", f"app_{n}_web_0") for n in names))
                return RouteTable(backends, hosts, (), (), ())

            try:
                await proxy.start(apps("a"))
                await proxy.apply(apps("a", "b", "c"))
                assert proxy.stats.reloads == 0 and len(proxy.pool) == 3
                held = dict(proxy.assigned)
                await proxy.apply(apps("a", "b", "c", "d"))
                assert proxy.stats.reloads == 1 and len(proxy.pool) == 6
                assert {k: proxy.assigned[k] for k in held} == held
                await proxy.apply(apps("a", "b", "c", "d", "e"))
                assert proxy.stats.reloads == 1
                for name in "abcde":
                    assert await _status(url, f"{name}.{DOMAIN}") == 200, name
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
    """The attack: registering an app with a TCP port (0.02 FLUX on the devnet genesis)
    reloads every gateway, and a reload gave the old worker 60 s (`hard-stop-after`)
    before it was killed with whatever connections it still held. So anyone who registers an app a
    minute cuts every database session, websocket or game connection through every
    gateway, every minute. A connection of another app outlives the reload."""

    async def scenario() -> None:
        with lease_ports(4) as lease:
            http_port, db_port, listen_port, other_port = lease.ports
            db = await asyncio.start_server(_echo, "127.0.0.1", db_port)
            proxy = Proxy(ProxySettings("127.0.0.1", http_port, tmp_path / "state"))
            instance = Server("127.0.0.1", db_port, "n1", 0)
            backend = Backend("app_db_web_1", "db", "tcp", 3, (instance,))
            table = RouteTable((backend,), (), ((listen_port, backend.name),), (), ())
            try:
                await proxy.start(table)
                reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
                writer.write(b"before\n")
                assert await asyncio.wait_for(reader.readline(), 5) == b"before\n"
                # another app is registered: its TCP port reloads HAProxy
                other = Backend("app_other_web_1", "other", "tcp", 3, ())
                await proxy.apply(
                    RouteTable(
                        (*_table("other", ()).backends, backend, other),
                        _table("other", ()).hosts,
                        tuple(sorted((*table.tcp_ports, (other_port, other.name)))),
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


def _app_table(app: str, servers: tuple[Server, ...]) -> RouteTable:
    """One app's HTTP port, as build_table gives it (4 slots: 2 instances + headroom)."""
    backend = f"app_{app}_web_0"
    return RouteTable(
        (Backend(backend, app, "http", 4, servers),), ((f"{app}.{DOMAIN}", backend),), (), (), ()
    )


class _Recorder(http.server.ThreadingHTTPServer):
    """An app's instance that answers 200 and records the Host header of each request."""

    hosts: list[str]


def _serve_recording(port: int) -> _Recorder:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: HAProxy may keep idle server connections

        def do_GET(self) -> None:
            self.server.hosts.append(self.headers.get("Host", ""))  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = _Recorder(("127.0.0.1", port), Handler)
    server.hosts = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _serve_hanging(port: int, release: threading.Event, seen: threading.Event) -> socket.socket:
    """A departing app's instance that reads a request, holds it until `release`, then
    closes the connection with no response (what a crashing or slow app does). Health
    checks (a connect and close) are let go at once."""
    listener = socket.create_server(("127.0.0.1", port))

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            if conn.recv(65536):
                seen.set()
                release.wait(30)

    def run() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=run, daemon=True).start()
    return listener


def test_a_departed_apps_in_flight_request_is_never_retried_on_the_app_that_reuses_its_backend(
    tmp_path: Path,
) -> None:
    """The attack: app A (cancelled) had a request in flight on pool backend gw_http_1;
    one pass later the gateway hands gw_http_1 to a newly registered app B. When A's
    instance then drops the connection without a response, HAProxy's `retry-on
    all-retryable-errors` + `option redispatch` retries the request inside the same
    backend, whose slots now hold B's servers: A's user's request (its cookies, its
    Authorization header) is delivered to B, an app of another owner. B can register at
    will right after a cancel it watches on chain. What should happen: a request of A is
    never delivered to any server of another app; the client gets an error."""

    async def scenario() -> None:
        with lease_ports(3) as lease:
            http_port, a_port, b_port = lease.ports
            release, seen = threading.Event(), threading.Event()
            a_listener = _serve_hanging(a_port, release, seen)
            b_app = _serve_recording(b_port)
            proxy = Proxy(ProxySettings("127.0.0.1", http_port, tmp_path / "state"))
            url = f"http://127.0.0.1:{http_port}/"
            a = Server("127.0.0.1", a_port, "n1", 0)
            b = Server("127.0.0.1", b_port, "n2", 0)
            try:
                await proxy.start(_app_table("a", (a,)))
                held = proxy.assigned["app_a_web_0"]

                async def request_a() -> int:
                    async with (
                        aiohttp.ClientSession() as session,
                        session.get(url, headers={"Host": f"a.{DOMAIN}"}) as response,
                    ):
                        return response.status

                in_flight = asyncio.create_task(request_a())
                await asyncio.to_thread(seen.wait, 10)
                assert seen.is_set(), "A's instance never got the request"
                empty = RouteTable((), (), (), (), ())
                await proxy.apply(empty)  # A cancelled: its backend is held one pass
                await proxy.apply(_app_table("b", (b,)))  # B registers in the next block
                assert proxy.assigned["app_b_web_0"] == held  # B got A's pool backend
                # B's slot must be up before A's connection drops (health check: rise 1)
                b_address = f"127.0.0.1:{b_port}"

                async def b_checked_up() -> bool:
                    states = await proxy.api.server_states(held)
                    return any(a == b_address and st == "UP" for a, st in states.values())

                await wait_until_async(b_checked_up, 10, "B's slot up after a passing check")
                release.set()
                status = await asyncio.wait_for(in_flight, 20)
                leaked = [h for h in b_app.hosts if h.startswith(f"a.{DOMAIN}")]
                assert not leaked, (
                    f"A's request reached B's server ({leaked}); the client got {status}"
                )
            finally:
                release.set()
                await proxy.stop()
                b_app.shutdown()
                a_listener.close()

    asyncio.run(scenario())


def test_an_idle_database_session_is_not_cut_by_the_client_timeout(tmp_path: Path) -> None:
    """The bug: TCP listen sections inherited `timeout client`/`timeout server` (30 s), so
    HAProxy cut every database session or websocket through the gateway that was quiet for
    half a minute (the flood test below failed this way whenever its 51 reloads took more
    than 30 s). An established stream is a tunnel: it lives until `timeout tunnel` of
    silence. Here the client and server timeouts are 1 s and the tunnel's 4 s."""

    async def scenario() -> None:
        with lease_ports(3) as lease:
            http_port, db_port, listen_port = lease.ports
            db = await asyncio.start_server(_echo, "127.0.0.1", db_port)
            settings = ProxySettings(
                "127.0.0.1",
                http_port,
                tmp_path / "state",
                client_timeout_s=1,
                server_timeout_s=1,
                tunnel_timeout_s=4,
            )
            proxy = Proxy(settings)
            backend = Backend(
                "app_db_web_1", "db", "tcp", 3, (Server("127.0.0.1", db_port, "n1", 0),)
            )
            try:
                await proxy.start(
                    RouteTable((backend,), (), ((listen_port, backend.name),), (), ())
                )
                reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
                writer.write(b"before\n")
                assert await asyncio.wait_for(reader.readline(), 5) == b"before\n"
                # Silence is what is tested: the session idles past the client and server
                # timeouts, well inside the tunnel's.
                await asyncio.sleep(2.5)
                writer.write(b"after\n")
                try:
                    line = await asyncio.wait_for(reader.readline(), 5)
                except (OSError, TimeoutError):
                    line = b""
                assert line == b"after\n", "a session quiet for 2.5 s was cut"
                # and a session idle past the tunnel timeout is closed, not held forever
                started = time.monotonic()
                assert await asyncio.wait_for(reader.read(1), 20) == b""
                assert time.monotonic() - started >= 3
                writer.close()
            finally:
                await proxy.stop()
                db.close()
                await db.wait_closed()

    asyncio.run(scenario())


def test_a_flood_of_tcp_port_changes_does_not_cut_another_apps_long_connection(
    tmp_path: Path,
) -> None:
    """The attack: an app owner publishes a new TCP port 51 times (51 cheap APP_UPDATEs or
    registrations, one per 10 s block window: about 8.5 minutes at the gateway's
    RELOAD_MIN_INTERVAL_S). Each new listen port reloads HAProxy; the worker holding
    another app's database session survives each reload (`hard-stop-after 30m`) but is
    killed once it has outlived 50 reloads (`mworker-max-reloads 50`), so the victim's
    connection is cut after minutes, not 30 min, and the attacker can repeat it forever.
    What should happen: an app's changes cannot cut another app's established connection
    (reloads bounded per app or per window, or a lingering worker kept while it holds
    connections). The reload interval is set to 0 here only to compress the attacker's
    8.5 minutes into the test's run."""

    async def scenario() -> None:
        with lease_ports(4) as lease:
            http_port, db_port, listen_port, first_attack_port = lease.ports
            db = await asyncio.start_server(_echo, "127.0.0.1", db_port)
            proxy = Proxy(
                ProxySettings("127.0.0.1", http_port, tmp_path / "state"), reload_interval_s=0
            )
            victim = Backend(
                "app_db_web_1", "db", "tcp", 3, (Server("127.0.0.1", db_port, "n1", 0),)
            )
            table = RouteTable((victim,), (), ((listen_port, victim.name),), (), ())
            try:
                await proxy.start(table)
                reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
                writer.write(b"before\n")
                assert await asyncio.wait_for(reader.readline(), 5) == b"before\n"
                attacker = Backend("app_evil_tcp_1", "evil", "tcp", 3, ())
                for n in range(51):
                    # the attacker's TCP port moves each time: a new listen section
                    with socket.socket() as probe:  # a free port, not one of the lease
                        probe.bind(("127.0.0.1", 0))
                        port = probe.getsockname()[1]
                    assert port not in (http_port, db_port, listen_port, first_attack_port)
                    await proxy.apply(
                        RouteTable(
                            (victim, attacker),
                            (),
                            tuple(sorted(((listen_port, victim.name), (port, attacker.name)))),
                            (),
                            (),
                        )
                    )
                    assert proxy.stats.reloads == n + 1, proxy.stats.last_error
                writer.write(b"still\n")
                try:
                    line = await asyncio.wait_for(reader.readline(), 5)
                except (OSError, TimeoutError):
                    line = b""
                assert line == b"still\n", (
                    f"another app's {proxy.stats.reloads} reloads cut the victim's connection"
                )
                writer.close()
            finally:
                await proxy.stop()
                db.close()

    asyncio.run(scenario())


def test_an_instance_that_listens_after_it_joined_is_served_at_its_next_check(
    tmp_path: Path,
) -> None:
    """The flake of test_an_app_placed_under_steady_load_on_another_...: an agent reports an
    instance running as soon as it started it, so the gateway puts it in rotation before
    its program listens; HAProxy's first check is refused and marks it down, and a down
    server was checked again only a second (`downinter 1s`) later: the instance, listening
    by then, got none of the app's requests and every one was a 503 (31 to 43 of a 50/s
    load). Now a down server is checked every 100 ms: it serves within one check interval
    of listening."""

    async def scenario() -> None:
        with lease_ports(2) as lease:
            http_port, app_port = lease.ports
            settings = ProxySettings("127.0.0.1", http_port, tmp_path / "state")
            proxy = Proxy(settings)
            url = f"http://127.0.0.1:{http_port}/"
            late = Server("127.0.0.1", app_port, "n1", 0)
            app = None
            try:
                await proxy.start(_table("hello", ()))
                await proxy.apply(_table("hello", (late,)))  # in rotation, not listening
                backend = proxy.assigned["app_hello_web_0"]

                async def marked_down() -> bool:
                    states = await proxy.api.server_states(backend)
                    return any(state.startswith("DOWN") for _, state in states.values())

                await wait_until_async(marked_down, 10, "the refused first check marks it down")
                app = _serve_http(app_port)
                listening = time.monotonic()

                async def served() -> bool:
                    return await _status(url, f"hello.{DOMAIN}") == 200

                await wait_until_async(served, 10, "the late instance served")
                waited = time.monotonic() - listening
                print(f"a late instance served {waited * 1000:.0f} ms after it listened")
                assert waited < settings.check_interval_ms / 1000, waited
            finally:
                await proxy.stop()
                if app is not None:
                    app.shutdown()

    asyncio.run(scenario())
