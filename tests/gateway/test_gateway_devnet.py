"""A real gateway and HAProxy in front of a real 5-node devnet (process runtime): a client
reaches an app by name, never reaches what the chain did not place, and does not see a
host die."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_devnet_agents import agent_devnet, hosts_of, node_index, write_app
from tests.gateway.harness import DOMAIN, GatewayProcess, LoadResult, paced_load
from tests.integration.harness import Devnet
from tests.support.ports import lease_app_ports
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli

pytestmark = pytest.mark.slow

NODES = 5
# Apps publish on 127.0.1.x, shared by every test process: this process's own leased ports,
# so that tests run at once never answer for each other.
APP_PORTS = lease_app_ports(3)
PORT, FAILOVER_PORT, SECOND_PORT = APP_PORTS.ports
LOAD_RPS = 50
LOAD_SECONDS = 60
SECOND_APP_LOAD_S = 40  # covers the registration, placement and the agents' start


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    with agent_devnet(tmp_path / "net", NODES) as net:
        yield net


@pytest.fixture
def gateway(devnet: Devnet, tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path / "gateway", devnet.url(0))
    try:
        wait_until(lambda: bool(gw.status().get("haproxy_pid")), 30, f"gateway up (log {gw.log})")
        yield gw
    finally:
        gw.close()


def deploy(devnet: Devnet, tmp_path: Path, name: str, port: int = PORT) -> list[int]:
    """Register app `name` (3 instances of a static HTTP server); return its hosts."""
    cli = Cli(tmp_path / "wallet", devnet.url(0))
    cli.import_devnet()
    cli.run(
        "app", "register", str(write_app(tmp_path / f"{name}.yaml", name, port)), "-a", "account6"
    )
    return hosts_of(devnet, name)


def test_routes_by_host_and_ignores_a_node_that_reports_what_the_chain_did_not_place(
    devnet: Devnet, gateway: GatewayProcess, tmp_path: Path
) -> None:
    # Unknown names are answered by the gateway itself, before any app exists.
    status, body = gateway.get(f"nope.{DOMAIN}")
    assert status == 404 and b"no app" in body

    hosts = deploy(devnet, tmp_path, "hello")
    gateway.wait_serving("hello", 3)
    expected = sorted(f"{devnet.workload_host(i)}:{PORT}" for i in hosts)
    assert gateway.servers("hello") == expected
    reloads = gateway.status()["reloads"]
    assert reloads == 0  # a new app takes a spare pool backend and a map entry at runtime
    for _ in range(6):  # round-robin over the three instances: each answers
        status, body = gateway.get(f"hello.{DOMAIN}")
        assert status == 200 and b"Directory listing" in body
    assert gateway.get(f"HELLO.{DOMAIN}:{gateway.port}")[0] == 200  # case and port ignored
    assert gateway.get(f"other.{DOMAIN}")[0] == 404

    # One of hello's hosts also claims an instance the chain placed on another node: the
    # gateway ignores that claim and routes the instance to where the chain put it.
    liar = hosts[0]
    ids = {v: k for k, v in node_index(devnet).items()}
    placed = {i["node_id"]: i["index"] for i in devnet.get(0, "/apps/hello")["instances"]}
    own, stolen = placed[ids[liar]], placed[ids[hosts[1]]]
    devnet.stop_agent(liar)
    token = (devnet.homes[liar] / "agent_token").read_text().strip()
    workload = {"app": "hello", "component": "web", "state": "running", "restarts": 0}
    address = [f"{devnet.workload_host(liar)}:{PORT}"]
    fake = {
        "runtime": "process",
        "runtime_ok": True,
        "height": devnet.height(liar),
        "workloads": [
            {**workload, "instance": own, "ports": address},
            {**workload, "instance": stolen, "ports": address},
        ],
    }
    _post_report(devnet.url(liar), token, fake)
    wait_until(
        lambda: any(
            r["reason"] == "not_placed" and r["detail"] == f"node {ids[liar]} instance {stolen}"
            for r in gateway.status().get("refused", [])
        ),
        15,
        "the gateway saw the claim and refused it",
    )
    assert gateway.servers("hello") == expected
    assert all(gateway.get(f"hello.{DOMAIN}")[0] == 200 for _ in range(10))
    # membership came from the runtime API
    assert gateway.status()["reloads"] == reloads


def test_failover_under_steady_load_loses_no_request(
    devnet: Devnet, gateway: GatewayProcess, tmp_path: Path
) -> None:
    hosts = deploy(devnet, tmp_path, "hello", FAILOVER_PORT)
    gateway.wait_serving("hello", 3)
    reloads = gateway.status()["reloads"]
    victim = hosts[-1]
    victim_id = next(k for k, v in node_index(devnet).items() if v == victim)
    via = next(i for i in range(NODES) if i not in hosts)
    victim_address = f"{devnet.workload_host(victim)}:{FAILOVER_PORT}"
    backend = gateway.haproxy_backend("hello")

    load: list[LoadResult] = []
    runner = threading.Thread(
        target=lambda: load.append(
            asyncio.run(paced_load(gateway.url, f"hello.{DOMAIN}", LOAD_RPS, LOAD_SECONDS))
        )
    )
    runner.start()
    time.sleep(5)  # five seconds of steady load before the kill
    killed_at = time.monotonic()
    devnet.kill_host(victim)
    out_of_rotation = marked_down = 0.0
    deadline = killed_at + 40
    while (not out_of_rotation or not marked_down) and time.monotonic() < deadline:
        if not out_of_rotation and gateway.slot_states(backend).get(
            victim_address, "DOWN"
        ).startswith(("DOWN", "NOLB")):
            out_of_rotation = time.monotonic() - killed_at
        if not marked_down and devnet.get(via, f"/nodes/{victim_id}")["status"] == "down":
            marked_down = time.monotonic() - killed_at
        time.sleep(0.1)  # both sampled at 10 Hz
    runner.join(LOAD_SECONDS + 30)
    assert load, "the load generator did not finish"
    result = load[0]
    print(
        f"failover under load: {result.sent} requests at {LOAD_RPS}/s, {result.failures} failed "
        f"{result.errors}; node{victim} killed {int(killed_at)}: out of HAProxy's rotation after "
        f"{out_of_rotation:.1f}s, marked down by the chain after {marked_down:.1f}s"
    )
    assert out_of_rotation and marked_down, (out_of_rotation, marked_down)
    assert out_of_rotation < marked_down
    assert result.sent >= LOAD_RPS * LOAD_SECONDS * 0.95
    assert result.failures == 0, result.errors

    # The chain moved the instance: the gateway follows, through the runtime API alone.
    new_hosts = hosts_of(devnet, "hello", via)
    assert victim not in new_hosts
    wait_until(
        lambda: (
            gateway.servers("hello")
            == sorted(f"{devnet.workload_host(i)}:{FAILOVER_PORT}" for i in new_hosts)
        ),
        30,
        "the gateway routes to the instance's new host",
    )
    assert gateway.status()["reloads"] == reloads


def test_an_app_placed_under_steady_load_on_another_fails_no_request_and_reloads_nothing(
    devnet: Devnet, gateway: GatewayProcess, tmp_path: Path
) -> None:
    """An operator's gateway serves `hello` under a steady 50 requests/s while someone
    registers `second`: the chain places it, the gateway routes it by a spare pool backend
    and a runtime map entry, and not one of hello's requests fails; HAProxy never reloads."""
    deploy(devnet, tmp_path, "hello", PORT)
    gateway.wait_serving("hello", 3)
    load: list[LoadResult] = []
    runner = threading.Thread(
        target=lambda: load.append(
            asyncio.run(paced_load(gateway.url, f"hello.{DOMAIN}", LOAD_RPS, SECOND_APP_LOAD_S))
        )
    )
    runner.start()
    started = time.monotonic()
    time.sleep(2)  # steady load before the new app
    (tmp_path / "second").mkdir()  # a wallet of its own: `deploy` imports one
    deploy(devnet, tmp_path / "second", "second", SECOND_PORT)
    gateway.wait_serving("second", 3, timeout=SECOND_APP_LOAD_S - 10)
    served_after = time.monotonic() - started
    assert gateway.get(f"second.{DOMAIN}")[0] == 200
    runner.join(SECOND_APP_LOAD_S + 30)
    assert load, "the load generator did not finish"
    result = load[0]
    status = gateway.status()
    print(
        f"app placed under load: {result.sent} requests to hello at {LOAD_RPS}/s, "
        f"{result.failures} failed {result.errors}; second served {served_after:.1f}s into "
        f"the load; reloads={status['reloads']} map_updates={status['map_updates']}"
    )
    assert served_after < SECOND_APP_LOAD_S, "second was not routed while the load ran"
    assert result.sent >= LOAD_RPS * SECOND_APP_LOAD_S * 0.95
    assert result.failures == 0, result.errors
    assert status["reloads"] == 0
    assert status["haproxy_backends"]["app_second_web_0"] != gateway.haproxy_backend("hello")


def _post_report(url: str, token: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url + "/agent/report",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
