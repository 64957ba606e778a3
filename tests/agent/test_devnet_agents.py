"""Agents on a real 5-node devnet (process runtime): apps run where the chain says, and
move, running again, when their host dies or loses its agent."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core.appspec import AppSpec
from fluxchain.core.crypto import SigningKey, address_of, encode_address
from fluxchain.node.agent_link import STALE_S
from tests.integration.harness import Devnet
from tests.integration.test_app_hash import ApiSigner
from tests.support.chain import app_register, funded_key
from tests.support.ports import lease_app_ports
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli
from wallet import builders

pytestmark = pytest.mark.slow

NODES = 5
# This test process's own app ports (PORT, PORT + 1): devnets of tests running at once all
# publish apps on 127.0.1.x, so a fixed port would let one test's app answer for another's.
APP_PORTS = lease_app_ports(2)
PORT = APP_PORTS.ports[0]
FAILOVER_TARGET_S = 30.0
OWNER = funded_key(6)  # the wallet's account6, the apps' owner
SPEC = """\
name: {name}
description: a small HTTP server the agents run as a local process
instances: 3
expire: 5000
components:
  - name: web
    image: python:3.11-slim
    ports: [{port}]
    container_ports: [8080]
    command: ["python3", "-m", "http.server", "--bind", "$HOST", "$PORT"]
    cpu: 0.5
    ram_mb: 256
    disk_gb: 1
{extra}"""


def write_app(path: Path, name: str, port: int = PORT, pinned: str = "") -> Path:
    extra = f"pinned_nodes: [{pinned}]\n" if pinned else ""
    path.write_text(SPEC.format(name=name, port=port, extra=extra), encoding="utf-8")
    return path


@contextmanager
def agent_devnet(root: Path, validators: int = NODES) -> Iterator[Devnet]:
    """`validators` nodes with their agents (process runtime), at height 2 and every one
    healthy; closed on the way out."""
    net = Devnet(root, validators=validators, agents=True)
    net.start_all()
    try:
        net.wait_height(list(range(validators)), 2, timeout=60)
        wait_until(
            lambda: all(healthy(net, i) for i in range(validators)),
            30,
            "every node healthy",
            nodes=net,
        )
        yield net
    finally:
        net.close()


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    with agent_devnet(tmp_path / "net") as net:
        yield net


def healthy(net: Devnet, i: int) -> bool:
    try:
        with urllib.request.urlopen(net.url(i) + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def urllib_json(url: str) -> Any:
    """A JSON body, whatever the status (the API answers errors in JSON too)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read())


def answers(host: str, port: int = PORT) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def reported(net: Devnet, i: int, states: list[str]) -> bool:
    """Node i's agent last reported workloads in exactly these states."""
    return [w["state"] for w in net.get(i, "/agent")["workloads"]] == states


def node_index(net: Devnet, via: int = 0) -> dict[str, int]:
    """Chain node id → devnet index, by node key, as node `via` knows them."""
    keys = {n.node_key.hex(): i for i, n in enumerate(net.genesis.nodes)}
    return {n["node_id"]: keys[n["node_key"]] for n in net.get(via, "/nodes")["nodes"]}


def hosts_of(net: Devnet, app: str, via: int = 0) -> list[int]:
    # both reads through `via`: a test that killed node 0 asks a live node
    index = node_index(net, via)
    status: dict[str, Any] = net.get(via, f"/apps/{app}")
    return sorted(index[i["node_id"]] for i in status["instances"])


def serving(net: Devnet, app: str, hosts: list[int], port: int = PORT) -> bool:
    return len(hosts) == 3 and all(answers(net.workload_host(i), port) for i in hosts)


def test_app_runs_on_its_three_hosts_and_fails_over_when_a_host_dies(
    devnet: Devnet, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "wallet", devnet.url(0))
    cli.import_devnet()
    cli.run("app", "register", str(write_app(tmp_path / "app.yaml", "web1")), "-a", "account6")
    wait_until(
        lambda: serving(devnet, "web1", hosts_of(devnet, "web1")),
        30,
        "3 instances answering",
        nodes=devnet,
    )
    hosts = hosts_of(devnet, "web1")
    idle = [i for i in range(NODES) if i not in hosts]
    assert not any(answers(devnet.workload_host(i)) for i in idle)  # nothing runs unassigned
    for i in hosts:  # each host's agent reports its workload to its node
        wait_until(
            partial(reported, devnet, i, ["running"]), 10, f"node{i} runs web1", nodes=devnet
        )
    agent = devnet.get(hosts[0], "/agent")
    assert agent["workloads"][0]["ports"] == [f"{devnet.workload_host(hosts[0])}:{PORT}"]
    assert agent["problem"] is None and agent["capacity"]["cores"] >= 1

    victim = hosts[-1]
    via = idle[0]
    killed_height = devnet.height(via)
    killed_at = time.monotonic()
    devnet.kill_host(victim)
    wait_until(
        lambda: (
            victim not in (now := hosts_of(devnet, "web1", via)) and serving(devnet, "web1", now)
        ),
        60,
        "the instance moved off the dead host and 3 answer again",
        nodes=devnet,
    )
    elapsed = time.monotonic() - killed_at
    new_hosts = hosts_of(devnet, "web1", via)
    victim_id = next(k for k, v in node_index(devnet).items() if v == victim)
    victim_node = devnet.get(via, f"/nodes/{victim_id}")
    assert victim_node["status"] == "down"
    down_at = moved_at = 0
    for height in range(killed_height, devnet.height(via) + 1):
        for event in devnet.get(via, f"/blocks/{height}")["events"]:
            if event["kind"] == "node_down" and event["node_id"] == victim_id:
                down_at = height
            if event["kind"] == "assigned" and event["name"] == "web1":
                moved_at = height
    assert down_at and moved_at == down_at, (down_at, moved_at)  # moved in the same block
    print(
        f"failover: node{victim} killed at height {killed_height}, marked down and its "
        f"instance moved to node{sorted(set(new_hosts) - set(hosts))} at height {down_at} "
        f"({down_at - killed_height} blocks); 3 instances answering again {elapsed:.1f}s "
        f"after the SIGKILL"
    )
    assert elapsed <= FAILOVER_TARGET_S, f"failover took {elapsed:.1f}s"


def read_spec(net: Devnet, path: Path, owner: SigningKey) -> AppSpec:
    """The app spec in `path`, owned by `owner`, as the wallet reads it."""
    params = net.genesis.params
    obj = builders.with_owner(
        builders.read_spec_file(path), encode_address(address_of(owner.public_key), "tflux")
    )
    return builders.parse_spec(obj, params, str(path))


def marked_down(net: Devnet, node_id: str, since: int, via: int = 0) -> bool:
    """Whether a block from height `since` on (as node `via` holds them) marked the node
    down."""
    return any(
        event["kind"] == "node_down" and event["node_id"] == node_id
        for height in range(since, net.height(via) + 1)
        for event in net.get(via, f"/blocks/{height}")["events"]
    )


def processes_of(net: Devnet, i: int) -> list[str]:
    """Live processes working in node i's workload directories (its agent started them)."""
    root = str(net.homes[i] / "agent" / "process")
    out = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if str(cwd.readlink()).startswith(root):
                out.append(f"{cwd.parent.name}: {(cwd.parent / 'cmdline').read_bytes()!r}")
        except OSError:
            continue
    return out


def test_agent_restart_and_loss_the_node_follows_its_agent(devnet: Devnet, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "wallet", devnet.url(0))
    cli.import_devnet()
    cli.run("app", "register", str(write_app(tmp_path / "web2.yaml", "web2")), "-a", "account6")
    wait_until(
        lambda: serving(devnet, "web2", hosts_of(devnet, "web2")), 30, "web2 up", nodes=devnet
    )
    hosts = hosts_of(devnet, "web2")
    victim, via = hosts[0], next(i for i in range(NODES) if i not in hosts)
    ids = {v: k for k, v in node_index(devnet).items()}
    host = devnet.workload_host(victim)
    before = devnet.workload_pids(victim)

    # A crashed workload is restarted by its agent (with backoff) and counted.
    os.killpg(before["web_web2"], signal.SIGKILL)
    wait_until(
        lambda: answers(host) and devnet.workload_pids(victim).get("web_web2", 0) > 0,
        20,
        "web2 restarted after its crash",
        nodes=devnet,
    )
    wait_until(
        lambda: [w["restarts"] for w in devnet.get(victim, "/agent")["workloads"]] == [1],
        10,
        "the restart reported",
        nodes=devnet,
    )
    before = devnet.workload_pids(victim)

    # Agent restart: while it is away an app pinned to its node is registered; back, it
    # starts that one and adopts the running one (same process, no duplicate). A restart
    # is short: past STALE_S of silence the node is rightly marked down and its apps move
    # (the next part). So the register is signed and the next agent's imports done before
    # the agent stops; only the tx's confirmation and the agent's start are timed (under
    # load a wallet run took 14 s, importing the CLI 10 s: the node marked itself down).
    pinned = ", ".join(ids[i] for i in [victim, *[i for i in range(NODES) if i != victim][:2]])
    spec = write_app(tmp_path / "web3.yaml", "web3", port=PORT + 1, pinned=pinned)
    signer = ApiSigner(devnet, via=0)
    register = app_register(signer, OWNER, read_spec(devnet, spec, OWNER))
    devnet.ready_agent(victim)
    away_height, away_at = devnet.height(0), time.monotonic()
    devnet.stop_agent(victim)
    signer.settle([register])
    assert victim in hosts_of(devnet, "web3")
    assert not answers(host, PORT + 1)
    devnet.start_agent(victim)
    wait_until(
        lambda: answers(host, PORT + 1), 20, "web3 started by the restarted agent", nodes=devnet
    )
    away = time.monotonic() - away_at
    assert not marked_down(devnet, ids[victim], away_height), (
        f"node{victim} marked down while its agent was away {away:.1f} s: not a restart "
        f"(a node whose agent is silent {STALE_S:.0f} s is down)"
    )
    assert devnet.workload_pids(victim)["web_web2"] == before["web_web2"]
    assert len(processes_of(devnet, victim)) == 2, processes_of(devnet, victim)  # no duplicate
    wait_until(
        partial(reported, devnet, victim, ["running", "running"]),
        10,
        "both reported running",
        nodes=devnet,
    )

    # Agent gone: the node is unhealthy, its checkers report it down, its apps move, and
    # it earns nothing until the agent returns.
    devnet.stop_agent(victim, signal.SIGKILL)
    wait_until(lambda: not healthy(devnet, victim), 20, f"node{victim} unhealthy", nodes=devnet)
    health = urllib_json(devnet.url(victim) + "/health")
    assert health["healthy"] is False and "agent" in health["problem"], health
    wait_until(
        lambda: devnet.get(via, f"/nodes/{ids[victim]}")["status"] == "down",
        40,
        "down",
        nodes=devnet,
    )
    wait_until(
        lambda: (
            victim not in hosts_of(devnet, "web2", via)
            and serving(devnet, "web2", hosts_of(devnet, "web2", via))
        ),
        30,
        "web2 moved off the node without an agent and answering on 3 others",
        nodes=devnet,
    )
    assert victim not in hosts_of(devnet, "web3", via)
    paid = devnet.get(via, f"/nodes/{ids[victim]}")["paid_total"]
    devnet.wait_height([via], devnet.height(via) + 6, timeout=30)
    assert devnet.get(via, f"/nodes/{ids[victim]}")["paid_total"] == paid

    # The agent returns: it stops what is no longer assigned, the node confirms again and
    # hosts again (web3 may only run on its pinned nodes, so it comes back here).
    devnet.start_agent(victim)
    wait_until(lambda: not answers(host, PORT), 20, "web2 leftover stopped", nodes=devnet)
    wait_until(
        lambda: devnet.get(via, f"/nodes/{ids[victim]}")["status"] == "confirmed",
        40,
        f"node{victim} confirmed again",
        nodes=devnet,
    )
    wait_until(
        lambda: victim in hosts_of(devnet, "web3", via) and answers(host, PORT + 1),
        40,
        "web3 placed on the recovered node and running there",
        nodes=devnet,
    )
    assert len(processes_of(devnet, victim)) == 1, processes_of(devnet, victim)
