"""Owner operations on a real devnet (process runtime): the owner reads an instance's
logs, follows them, reads its stats and restarts it, and sees the restart in the app's
per-instance status on any node; a stranger, a replay and a misaddressed request are
refused with their reasons."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core.crypto import SigningKey
from fluxchain.core.owner_request import Method, OwnerRequest, sign_owner_request
from tests.agent.test_devnet_agents import agent_devnet, answers, node_index
from tests.integration.harness import Devnet
from tests.support.ports import lease_app_ports
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

pytestmark = pytest.mark.slow

NODES = 4
APP_PORTS = lease_app_ports(1)
PORT = APP_PORTS.ports[0]
APP = "ops1"
OWNER_ACCOUNT = 6  # `account6` of the devnet mnemonic, imported by Cli.import_devnet
OWNER = f"account{OWNER_ACCOUNT}"
SPEC = f"""\
name: {APP}
description: an HTTP server whose every start and request shows in its log
instances: 3
expire: 5000
components:
  - name: web
    image: python:3.11-slim
    ports: [{PORT}]
    container_ports: [8080]
    command: ["python3", "-u", "-m", "http.server", "--bind", "$HOST", "$PORT"]
    cpu: 0.5
    ram_mb: 256
    disk_gb: 1
"""


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    with agent_devnet(tmp_path / "net", NODES) as net:
        yield net


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def post(url: str, body: Any, timeout: float = 10.0) -> tuple[int, list[Any]]:
    """Status and the answer's JSON lines (one line for a plain JSON answer)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, [json.loads(line) for line in response if line.strip()]
    except urllib.error.HTTPError as err:
        return err.code, [json.loads(err.read())]


def instance_report(net: Devnet, via: int) -> dict[str, Any]:
    """Instance 0 of the app as node `via` shows it: placement and its host's report."""
    view = net.get(via, f"/apps/{APP}", timeout=10)
    instance: dict[str, Any] = view["instances"][0]
    return instance


def running_with(net: Devnet, via: int, owner_restarts: int) -> bool:
    agent = instance_report(net, via).get("agent", {})
    components = agent.get("components", [])
    return bool(
        agent.get("reachable")
        and components
        and components[0]["state"] == "running"
        and components[0]["owner_restarts"] == owner_restarts
    )


def test_owner_reads_logs_restarts_and_a_stranger_is_refused(
    devnet: Devnet, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "wallet", devnet.url(0))
    cli.import_devnet()
    spec = tmp_path / "app.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    cli.run("app", "register", str(spec), "-a", OWNER)
    index = node_index(devnet)
    wait_until(
        lambda: len(devnet.get(0, f"/apps/{APP}")["instances"]) == 3, 30, "placed", nodes=devnet
    )
    first = instance_report(devnet, 0)
    host, instance = index[first["node_id"]], str(first["index"])
    hosts = {index[i["node_id"]] for i in devnet.get(0, f"/apps/{APP}")["instances"]}
    other = next(i for i in range(NODES) if i not in hosts)  # hosts none of the app
    wait_until(lambda: answers(devnet.workload_host(host), PORT), 30, "app up", nodes=devnet)
    # Any node shows the host agent's report beside the placement (fetched from the host).
    wait_until(lambda: running_with(devnet, other, 0), 20, "reported running", nodes=devnet)

    # Logs, through the wallet: the process's first start is there.
    out = cli.run(
        "--json", "app", "logs", APP, "--instance", instance, "--tail", "20", "-a", OWNER
    ).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    text = "".join(line.get("data", "") for line in lines)
    assert text.count("Serving HTTP on") == 1, lines
    assert lines[-1]["end"] == "done"

    # A stranger's request, with a valid signature of their own, is refused by the host.
    stranger = SigningKey(bytes(range(1, 33)))
    host_id = bytes.fromhex(instance_report(devnet, 0)["node_id"])
    chain_id = devnet.genesis.chain_id
    url = devnet.url(host) + f"/apps/{APP}/operate"

    def signed(key: SigningKey, method: Method = Method.STATS, **kw: Any) -> OwnerRequest:
        return sign_owner_request(
            key,
            chain_id,
            method=method,
            app=APP,
            node_id=host_id,
            now_ms=now_ms(),
            instance=int(instance),
            **kw,
        )

    status, body = post(url, signed(stranger, Method.RESTART).to_json())
    assert (status, body[0]["error"]["reason"]) == (403, "not_owner")
    # The owner's request, once; its replay is refused.
    owner = derive_key(INSECURE_TEST_MNEMONIC, account_path(OWNER_ACCOUNT))
    stats = signed(owner).to_json()
    status, body = post(url, stats)
    assert status == 200, body
    (result,) = body[0]["results"]
    assert result["running"] and result["state"] == "running" and result["uptime_s"] >= 0
    assert result["memory_bytes"] > 0 and result["cpu_seconds"] >= 0
    status, body = post(url, stats)
    assert (status, body[0]["error"]["reason"]) == (409, "replayed")
    # A request addressed to the host, sent to another node, is refused there.
    status, body = post(devnet.url(other) + f"/apps/{APP}/operate", signed(owner).to_json())
    assert (status, body[0]["error"]["reason"]) == (403, "wrong_node")

    # Following: requests made while following show up, then the request expires.
    follow = signed(owner, Method.LOGS, tail=0, follow=True, valid_ms=6_000).to_json()
    streamed: list[Any] = []
    follower = threading.Thread(target=lambda: streamed.append(post(url, follow, timeout=15)))
    follower.start()

    def requested_until_expired() -> bool:
        """Each poll while the follower streams requests the app: a line in its log."""
        if follower.is_alive():
            answers(devnet.workload_host(host), PORT)
        return not follower.is_alive()

    wait_until(requested_until_expired, 15, "the follow ends at its expiry", nodes=devnet)
    follower.join()
    status, lines = streamed[0]
    assert status == 200
    assert any('"GET / HTTP/1.1" 200' in line.get("data", "") for line in lines), lines
    assert lines[-1]["end"] == "expired"

    # Restart through the wallet: a new process, the old log kept, the status shows it.
    restarted = cli.json("app", "restart", APP, "--instance", instance, "-a", OWNER)
    assert restarted["hosts"][0]["results"][0]["done"] == "restart", restarted
    wait_until(lambda: running_with(devnet, other, 1), 20, "restart reported", nodes=devnet)
    wait_until(lambda: answers(devnet.workload_host(host), PORT), 20, "app up again", nodes=devnet)
    out = cli.run(
        "--json", "app", "logs", APP, "--instance", instance, "--tail", "50", "-a", OWNER
    ).stdout
    text = "".join(json.loads(line).get("data", "") for line in out.splitlines() if line.strip())
    assert text.count("Serving HTTP on") == 2, text
    plain = cli.run("app", "logs", APP, "--instance", instance, "--tail", "1", "-a", OWNER)
    assert plain.stdout.startswith(f"[{instance}/web] "), plain.stdout  # lines by workload

    # The wallet refuses a non-owner account before signing; the host's public report
    # names the app's workloads only, with no host paths.
    error = cli.error_line("app", "restart", APP, "-a", "account5", expect=1)
    assert "not_owner" in error
    public = devnet.get(host, f"/agent/apps/{APP}")
    assert public["node_id"] == host_id.hex() and [w["component"] for w in public["workloads"]] == [
        "web"
    ]
    assert str(devnet.homes[host]) not in json.dumps(public)
