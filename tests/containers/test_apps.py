"""Apps on the container devnet: the agents run them as Docker containers.

A user registers an app from the host with flux-wallet; the chain places its 3 instances
on 3 of the 4 validators, and each host's agent starts the app as a container on the
Docker Engine, answering on its node's own loopback address. The app here runs the
fluxchain image itself (`python3 -m http.server`), since no registry can be assumed.

Then a host's machine dies (its node, its agent and its app containers are killed): its
checkers report it down, the chain moves the instance to the idle validator in that same
block, and that validator's agent starts it. Started again, the dead host syncs, confirms
itself and is healthy; its agent removes the stale container of the instance it lost.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.containers.compose import (
    NODES,
    VALIDATORS,
    ComposeDevnet,
    apps_host,
    node_tag,
    validator_key,
)
from tests.containers.conftest import SETTLE_DEADLINE_S
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli

APP = "web-e2e"
PLACE_DEADLINE_S = 90.0
FAILOVER_DEADLINE_S = 120.0
FIRST_PORT = 37_000  # a corner of the app host ports (1024-65535) the other suites avoid
SPEC = """\
name: {name}
description: an HTTP server the agents run as containers of the fluxchain image
instances: 3
expire: 5000
components:
  - name: web
    image: {image}
    ports: [{port}]
    container_ports: [8080]
    command: ["python3", "-m", "http.server", "--bind", "$HOST", "$PORT"]
    cpu: 0.2
    ram_mb: 128
    disk_gb: 1
"""


def free_app_port() -> int:
    """The first port from FIRST_PORT that is free on every validator's apps address."""
    for port in range(FIRST_PORT, FIRST_PORT + 500):
        try:
            for index in range(len(VALIDATORS)):
                with socket.socket() as probe:
                    probe.bind((apps_host(index), port))
        except OSError:
            continue
        return port
    raise AssertionError(f"no free app port in {FIRST_PORT}..{FIRST_PORT + 499}")


def answers(index: int, port: int) -> bool:
    try:
        url = f"http://{apps_host(index)}:{port}/"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def hosts_of(devnet: ComposeDevnet, app: str) -> list[int]:
    """The validators (by index) the chain assigned the app's instances to."""
    index = {validator_key(i): i for i in range(len(VALIDATORS))}
    # /apps/{name} gathers each host's report (bounded per host), so it can take seconds on a
    # loaded machine; a user's client would wait, and so does this one
    nodes = {
        n["node_id"]: index[n["node_key"]]
        for n in devnet.get("node4", "/nodes", timeout=15)["nodes"]
    }
    status: dict[str, Any] = devnet.get("node4", f"/apps/{app}", timeout=15)
    return sorted(nodes[i["node_id"]] for i in status["instances"])


def running_on(devnet: ComposeDevnet, app: str, hosts: list[int], port: int) -> bool:
    """Exactly these hosts run the app as a container, and each answers on its address."""
    running = {tag for tag, state in devnet.workloads(app).items() if state == "running"}
    return (
        len(hosts) == 3
        and running == {node_tag(i) for i in hosts}
        and all(answers(i, port) for i in hosts)
    )


def test_an_app_runs_as_containers_and_moves_when_its_host_dies(
    devnet: ComposeDevnet, tmp_path: Path
) -> None:
    devnet.wait_settled(SETTLE_DEADLINE_S)  # losing a host must leave > 2/3 of the power
    port = free_app_port()
    spec = tmp_path / "app.yaml"
    spec.write_text(SPEC.format(name=APP, image=devnet.image, port=port), encoding="utf-8")
    cli = Cli(tmp_path / "wallet", devnet.url("node4"))
    cli.import_devnet()
    proc = cli.run("app", "register", str(spec), "-a", "account6")
    assert "3 of 3 instances placed" in proc.stdout, proc.stdout
    wait_until(
        lambda: running_on(devnet, APP, hosts_of(devnet, APP), port),
        PLACE_DEADLINE_S,
        "3 app containers running on the assigned validators and answering",
        nodes=devnet,
    )
    hosts = hosts_of(devnet, APP)
    (idle,) = [i for i in range(len(VALIDATORS)) if i not in hosts]
    assert not answers(idle, port)  # nothing runs where nothing is assigned

    victim = hosts[-1]
    killed_height = devnet.height("node4")
    for service in (f"agent{victim}", f"node{victim}"):
        devnet.kill(service)
    devnet.kill_workloads(victim)
    wait_until(
        lambda: (
            (now := hosts_of(devnet, APP)) == sorted([*hosts[:-1], idle])
            and running_on(devnet, APP, now, port)
        ),
        FAILOVER_DEADLINE_S,
        f"node{victim}'s instance to move to node{idle} and run there as a container",
        nodes=devnet,
    )
    victim_key = validator_key(victim)
    victim_id = next(
        n["node_id"] for n in devnet.get("node4", "/nodes")["nodes"] if n["node_key"] == victim_key
    )
    down_at = moved_at = 0
    for height in range(killed_height, devnet.height("node4") + 1):
        for event in devnet.get("node4", f"/blocks/{height}")["events"]:
            if event["kind"] == "node_down" and event["node_id"] == victim_id:
                down_at = height
            if event["kind"] == "assigned" and event["name"] == APP:
                moved_at = height
    assert down_at and moved_at == down_at, (down_at, moved_at)  # moved in that very block

    # the machine comes back: the node syncs and confirms itself, its agent reports again
    for service in (f"node{victim}", f"agent{victim}"):
        devnet.start(service)
    head = devnet.height("node4")
    devnet.wait_height([f"node{victim}"], head, timeout=FAILOVER_DEADLINE_S)
    wait_until(
        lambda: (
            devnet.health(f"node{victim}") == "healthy"
            and all(devnet.health(s) == "healthy" for s in NODES)
        ),
        FAILOVER_DEADLINE_S,
        f"node{victim} healthy again",
        nodes=devnet,
    )
    # its agent drops the container of the instance it no longer hosts
    wait_until(
        lambda: node_tag(victim) not in devnet.workloads(APP),
        FAILOVER_DEADLINE_S,
        f"node{victim}'s agent to remove the stale app container",
        nodes=devnet,
    )
    assert running_on(devnet, APP, hosts_of(devnet, APP), port)
