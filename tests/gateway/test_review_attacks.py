"""Attacks found in review of issue 20's gateway (review20b): each test fails against the
code it was written for and names what the attacker does and what should happen."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import resource
import socket
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fluxchain.core import apps
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import TxError
from fluxchain.core.tx import AppCancel, AppRegister, check_endpoint
from fluxchain.gateway.follower import NodeUnreachableError, agent_report
from fluxchain.gateway.haproxy import ProxySettings
from fluxchain.gateway.proxy import Proxy
from fluxchain.gateway.routes import (
    Backend,
    Placed,
    PlacedApp,
    Refused,
    RouteTable,
    Server,
    Workload,
    build_table,
    routable,
    workloads_from_json,
)
from fluxchain.gateway.service import Gateway, GatewayConfig
from fluxchain.gateway.specports import PortSpec, Transport
from fluxchain.gateway.udp import UdpRelay
from tests.gateway.harness import DOMAIN
from tests.support.ports import lease_ports
from tests.support.state import StateRunner, component, key_of, make_params, spec


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
                await asyncio.sleep(1.5)
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

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def scenario() -> None:
        with lease_ports(4) as lease:
            http_port, db_port, listen_port, first_attack_port = lease.ports
            db = await asyncio.start_server(echo, "127.0.0.1", db_port)
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


@pytest.mark.parametrize(
    "mapped", ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0", "::ffff:7f00:2"]
)
def test_a_node_registered_at_an_ipv4_mapped_loopback_cannot_point_the_gateway_at_itself(
    mapped: str,
) -> None:
    """The attack: the loopback/link-local/unspecified rule (`routes.routable`) is checked
    with Python 3.11's ipaddress, for which `::ffff:127.0.0.1` (an IPv4-mapped IPv6
    address) is neither loopback nor link-local nor unspecified, only "private", which
    the default gateway routes. A node registers its endpoint `[::ffff:127.0.0.1]:P` (the
    chain's endpoint rule admits it); the gateway reads its `/agent` from its own machine
    (an app the attacker runs on the operator's node answers it, or a local service) and
    routes `<app>.<domain>` to `[::ffff:127.0.0.1]:<spec port>`, which the kernel delivers
    to 127.0.0.1: a service on the gateway's own loopback (or, for ::ffff:169.254.169.254,
    the cloud metadata service) is served to the internet. Same as the plain-IPv4 attack
    of test_routes.py, which is refused: so must this be."""
    check_endpoint(f"[{mapped}]:26700", "endpoint")  # the chain admits it
    assert not routable(mapped, loopback_is_one_host=False), f"{mapped} is routable"
    app = PlacedApp(
        "evil",
        5,
        1,
        (PortSpec("web", 0, 6379, Transport.TCP, ()),),
        (Placed(0, "aa" * 20, f"[{mapped}]:26700"),),
    )
    report = {"aa" * 20: [Workload("evil", 0, "web", "running", (f"[{mapped}]:6379",))]}
    table = build_table([app], report, "apps.example.org")
    servers = [s.address for b in table.backends for s in b.servers]
    assert servers == [], f"the gateway routes evil.apps.example.org to {servers}"


@pytest.mark.parametrize("port", ["1" * 5_000, "\u00b2", "\u00b9\u00b2\u00b3"])
def test_a_hosting_node_reporting_an_absurd_port_cannot_crash_the_gateway(port: str) -> None:
    """The attack: any hosting node's agent (anyone's, untrusted) reports its instance at
    `10.0.0.1:<5,000 digits>` or `10.0.0.1:²`. `split_address` accepts the port by
    `str.isdigit()` and then calls `int()`, which raises ValueError (Python's 4,300-digit
    limit; '²' is a digit to isdigit but not to int). build_table does not catch it, nor
    does the gateway's loop (it catches NodeUnreachableError, ProxyError, HaproxyApiError
    and OSError only), so the gateway exits and stops HAProxy: every app behind every
    gateway that reads this node's report is down, and stays down across restarts as
    long as the report says so. What should happen: the address is refused
    (`bad_address`) and every other route is built."""
    node = "aa" * 20
    app = PlacedApp(
        "hello",
        5,
        1,
        (PortSpec("web", 0, 31000, Transport.TCP, ()),),
        (Placed(0, node, "10.0.0.1:26700"),),
    )
    report = {node: [Workload("hello", 0, "web", "running", (f"10.0.0.1:{port}",))]}
    table = build_table([app], report, "apps.example.org")
    assert [r.reason for r in table.refusals] == [Refused.BAD_ADDRESS]
    assert table.hosts == (("hello.apps.example.org", "app_hello_web_0"),)


def test_a_hosting_node_reporting_an_infinite_instance_cannot_crash_the_gateway() -> None:
    """The attack: a hosting node's `/agent` answers `{"workloads": [{"app": "x",
    "instance": Infinity, ...}]}`. Python's json.loads admits `Infinity`, and
    `workloads_from_json` calls int() on it, which raises OverflowError: it drops entries
    on KeyError, TypeError and ValueError only, so the error leaves the gateway's pass
    (which catches neither) and the gateway exits, taking HAProxy down with it. What
    should happen: the malformed entry is dropped, the others are read."""
    body = json.loads(
        '{"workloads": ['
        '{"app": "x", "instance": Infinity, "component": "web", "state": "running",'
        ' "ports": []},'
        '{"app": "hello", "instance": 0, "component": "web", "state": "running",'
        ' "ports": ["10.0.0.1:31000"]}]}'
    )
    assert workloads_from_json(body) == [
        Workload("hello", 0, "web", "running", ("10.0.0.1:31000",))
    ]


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


def test_a_released_apps_gateway_name_is_not_taken_by_another_owner_in_the_next_block() -> None:
    """The attack: every gateway serves app `shop` at `shop.<gateway domain>` from the app
    name alone (the wildcard DNS always points there: users' bookmarks, API clients and
    cookies scoped to that host). The owner forgets to extend and `shop` expires (or is
    cancelled to redeploy); in the very next block bob registers an app named `shop` and
    every gateway hands him the name, its users and their cookies. The chain holds a
    released spec domain for its last owner `domain_hold_blocks` blocks for exactly this
    reason ("its DNS still points at the gateways"), but not the app name that the gateway
    turns into a host name. What should happen: the name is held for its last owner as a
    domain is, so another owner's APP_REGISTER of it is refused in the meantime."""
    chain = StateRunner(make_params(domain_hold_blocks=10))
    for i in range(6):
        chain.add_node(i)
    alice, bob = key_of(1), key_of(2)
    for key in (alice, bob):
        chain.fund(key)
    owner_a, owner_b = address_of(alice.public_key), address_of(bob.public_key)
    chain.apply(
        apps.process_app_register,
        chain.tx(alice, AppRegister(spec(owner_a, "shop", components=(component(),)))),
    )
    chain.end_block()
    chain.apply(apps.process_app_cancel, chain.tx(alice, AppCancel("shop")))
    chain.end_block()
    sniped = chain.tx(bob, AppRegister(spec(owner_b, "shop", components=(component(),))))
    try:
        chain.apply(apps.process_app_register, sniped)
    except TxError:
        return  # refused: held for alice
    app = apps.get_app(chain.state, "shop")
    taken_by_bob = app is not None and app.spec.owner == owner_b
    assert not taken_by_bob, (
        "bob took `shop` (and shop.<gateway domain> on every gateway) one block after "
        "alice's app left"
    )


def test_a_hosting_nodes_report_cannot_flood_the_gateways_log_and_status() -> None:
    """The attack: a hosting node's agent (untrusted) answers a report of just under the
    1 MiB bound: its one placed instance at a 900 KB address, or 12,000 workloads of apps
    that are not placed on it. Each becomes a refusal whose detail (or app name) carries
    the attacker's text whole: 0.9 MB, or 12,000 refusals of 1.4 MB. The gateway logs
    every refusal on each pass whose refusals differ from the last (the attacker varies
    its report each second) and writes them all to status.json on every pass: about a
    megabyte a second of log and disk churn from one node, until the operator's disk is
    full. What should happen: what one report can make the gateway write is bounded (a
    detail is cut short, the unplaced workloads of one node are counted, not listed)."""
    node = "aa" * 20
    app = PlacedApp(
        "hello",
        5,
        1,
        (PortSpec("web", 0, 31000, Transport.TCP, ()),),
        (Placed(0, node, "10.0.0.1:26700"),),
    )
    long_address = [Workload("hello", 0, "web", "running", ("x" * 900_000 + ":31000",))]
    unplaced = [Workload(f"{'y' * 60}{i}", i, "web", "running", ()) for i in range(12_000)]
    for report in (long_address, unplaced):
        table = build_table([app], {node: report}, "apps.example.org")
        written = sum(len(r.detail) + len(r.app) for r in table.refusals)
        assert written <= 64 * 1024, (
            f"one node's report makes {len(table.refusals)} refusals of {written} bytes, "
            "logged and written to status.json"
        )


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
