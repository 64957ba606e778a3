"""Where a node may fetch a hosting agent's report from (`/apps/{name}`): never its own
loopback or internal network on a public network, a host name resolved once and the
connection pinned to the checked address, the lookup bounded in time; a devnet on
127.0.0.1 keeps working because its nodes are configured so."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from fluxchain.cli import main
from fluxchain.node.app_reports import RESOLVE_TIMEOUT_S, ReportHosts, fetch_report, parse_report
from fluxchain.node.devnet import create_devnet
from fluxchain.node.home import Home, NodeConfig
from tests.unit.test_join_config import _genesis

NODE_ID = bytes(range(20))
ANSWER = {"node_id": NODE_ID.hex(), "report_age_s": 0.5, "problem": None, "workloads": []}


def run_with_server(seen: list[web.Request], body: Any) -> Any:
    """`body(port)` run beside an agent's public report route on 127.0.0.1 (a service of
    this machine's loopback), which records every request it gets."""

    async def report(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response(ANSWER)

    async def scenario() -> Any:
        app = web.Application()
        app.router.add_get("/agent/apps/{name}", report)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            return await body(server.port)
        finally:
            await server.close()

    return asyncio.run(scenario())


def fake_lookup(monkeypatch: pytest.MonkeyPatch, answers: dict[str, Any]) -> list[str]:
    """Make the system resolver (`socket.getaddrinfo`, which every lookup of the process
    ends in, aiohttp's included) answer `answers[name](n)` (the addresses for the n-th
    lookup of that name); other names resolve as usual. Returns the names looked up."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        looked_up.append(host)
        addresses = answers[host](looked_up.count(host))
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port or 0))
            for ip in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "127.0.0.1.nip.example"])
def test_report_fetch_refuses_loopback_endpoint_on_a_public_network(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node operator registers its endpoint at 127.0.0.1 (or a name that resolves there):
    on a public network every node's `/apps/{name}` would GET a service of its own
    machine for the operator. Refused before any connection, as that host's error; the
    service on this machine's loopback gets no request."""
    fake_lookup(monkeypatch, {"127.0.0.1.nip.example": lambda n: ["127.0.0.1"]})
    seen: list[web.Request] = []

    async def body(port: int) -> Any:
        return await fetch_report(NODE_ID, f"{host}:{port}", "myapp", ReportHosts())

    assert run_with_server(seen, body) == (None, "unroutable endpoint")
    assert seen == []


@pytest.mark.parametrize(
    "endpoint",
    ["10.0.0.7:16127", "192.168.1.20:16127", "172.16.5.4:16127", "[fd00::7]:16127", "lan:16127"],
)
def test_report_fetch_refuses_a_private_endpoint_on_a_public_network(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint in the node's internal network (RFC 1918, fc00::/7, or a name
    resolving there) is refused on a public network; allowed where the operator says the
    network is one LAN (`reports_from_private`)."""
    looked_up = fake_lookup(monkeypatch, {"lan": lambda n: ["10.1.2.3"]})
    answer = asyncio.run(fetch_report(NODE_ID, endpoint, "myapp", ReportHosts()))
    assert answer == (None, "unroutable endpoint")
    assert looked_up == (["lan"] if endpoint.startswith("lan") else [])


def test_a_devnet_on_loopback_still_fetches_its_hosts_reports() -> None:
    """With loopback allowed (the nodes `fluxchain devnet` creates), a host at 127.0.0.1
    answers as before."""
    seen: list[web.Request] = []

    async def body(port: int) -> Any:
        return await fetch_report(NODE_ID, f"127.0.0.1:{port}", "myapp", ReportHosts(loopback=True))

    answer, error = run_with_server(seen, body)
    assert error == "" and answer is not None and answer["workloads"] == []
    assert [r.path for r in seen] == ["/agent/apps/myapp"]


def test_report_fetch_is_pinned_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the host's name answers a checked address first, then the cloud's
    metadata service to any later lookup. The node looks the name up once and connects to
    the address it checked (the name kept as the Host header): the report comes from
    the checked host, and nothing asks the name a second time."""
    looked_up = fake_lookup(
        monkeypatch,
        {"agent.example": lambda n: ["127.0.0.1"] if n == 1 else ["169.254.169.254"]},
    )
    seen: list[web.Request] = []
    ports: list[int] = []

    async def body(port: int) -> Any:
        ports.append(port)
        return await fetch_report(
            NODE_ID, f"agent.example:{port}", "myapp", ReportHosts(loopback=True)
        )

    answer, error = run_with_server(seen, body)
    assert error == "" and answer is not None
    assert looked_up == ["agent.example"]
    assert [r.host for r in seen] == [f"agent.example:{ports[0]}"]


def test_report_fetch_takes_the_first_allowed_address_of_a_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name answering the metadata service first and a checked address second: the
    refused address is skipped, never connected to."""
    fake_lookup(monkeypatch, {"mixed.example": lambda n: ["169.254.169.254", "127.0.0.1"]})
    seen: list[web.Request] = []

    async def body(port: int) -> Any:
        return await fetch_report(
            NODE_ID, f"mixed.example:{port}", "myapp", ReportHosts(loopback=True)
        )

    answer, error = run_with_server(seen, body)
    assert error == "" and answer is not None and len(seen) == 1


def test_a_report_fetch_gives_up_on_a_name_that_never_resolves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host names its endpoint at a nameserver that never answers: the node waits
    RESOLVE_TIMEOUT_S for the lookup, then lists the host as not answering."""
    answer_now = threading.Event()
    fake_lookup(monkeypatch, {"slow.example": lambda n: answer_now.wait() and []})
    started = time.monotonic()
    try:
        answer = asyncio.run(fetch_report(NODE_ID, "slow.example:16127", "myapp", ReportHosts()))
    finally:
        answer_now.set()
    elapsed = time.monotonic() - started
    assert answer == (None, "name lookup timed out")
    assert RESOLVE_TIMEOUT_S <= elapsed < RESOLVE_TIMEOUT_S + 2.0, elapsed


def test_a_tarpit_nameserver_cannot_starve_the_nodes_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many hosts' endpoint names resolve at a nameserver that never answers, and pages
    naming them are read at once. A lookup the page gave up on still holds its thread
    until the system resolver gives up: on the event loop's own executor they would take
    every thread the node's snapshots, benchmarks and state-sync checks run on. They run
    on MAX_LOOKUPS threads of their own: the loop's executor still answers at once."""
    answer_now = threading.Event()
    fake_lookup(
        monkeypatch,
        {f"n{i}.tarpit.example": lambda n: answer_now.wait() and [] for i in range(40)},
    )

    async def scenario() -> float:
        fetches = [
            fetch_report(NODE_ID, f"n{i}.tarpit.example:16127", "myapp", ReportHosts())
            for i in range(40)
        ]
        try:
            answers = await asyncio.gather(*fetches)
            assert {a[1] for a in answers} == {"name lookup timed out"}
            started = time.monotonic()
            await asyncio.wait_for(asyncio.to_thread(lambda: None), 5)
            return time.monotonic() - started
        finally:
            answer_now.set()  # before asyncio.run waits for its executor's threads

    took = asyncio.run(scenario())
    assert took < 1.0, f"the loop's executor answered after {took:.1f} s"


def test_only_devnet_nodes_fetch_reports_from_loopback(tmp_path: Path) -> None:
    """The allowance is explicit: a node's config.toml says it, off by default (a public
    node), on for every node `fluxchain devnet` creates."""
    assert NodeConfig().reports_from_loopback is False
    assert NodeConfig().reports_from_private is False
    config = NodeConfig.from_toml(NodeConfig(reports_from_private=True).to_toml())
    assert config.reports_from_private and not config.reports_from_loopback
    _, members = create_devnet(tmp_path / "net", 2, agents=False)
    for member in members:
        written = tomllib.loads((member.home / "config.toml").read_text())
        assert written["reports_from_loopback"] is True
        assert written["reports_from_private"] is False


def test_a_standby_host_shows_standby_on_the_app_page() -> None:
    """A host of an app with a replicated volume that is not its primary reports its
    workload `standby` (it keeps a copy). Before, the app page showed every other node's
    standby as `unknown`: a user looking for the primary could not tell it apart."""
    body = {
        **ANSWER,
        "workloads": [{"instance": 1, "component": "store", "state": "standby", "restarts": 0}],
    }
    answer, error = parse_report(json.dumps(body).encode(), NODE_ID)
    assert error == "" and answer is not None
    assert [w["state"] for w in answer["workloads"]] == ["standby"]


def test_init_writes_the_report_allowances_it_is_given(tmp_path: Path) -> None:
    """`fluxchain init` (what the container devnet's init runs) sets them only when
    asked: a node made without the flags fetches from public addresses only."""
    runner = CliRunner()
    genesis = _genesis(runner, tmp_path)
    for name, flags in (("public", []), ("lan", ["--reports-from-private"])):
        home = tmp_path / name
        args = ["init", "--home", str(home), "--genesis", str(genesis), *flags]
        inited = runner.invoke(main, args)
        assert inited.exit_code == 0, inited.output
        config = Home(home).config()
        assert (config.reports_from_loopback, config.reports_from_private) == (
            False,
            name == "lan",
        )
