"""Sealed secrets on a real 5-node devnet (process runtime): the owner seals a value, every
host's component gets it in its environment, no byte the chain, the API or a log serves
holds it, and it follows a failover with no owner action."""

from __future__ import annotations

import secrets as random_tokens
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.agent import test_devnet_agents as agents
from tests.integration.harness import Devnet
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli

pytestmark = pytest.mark.slow

devnet = agents.devnet  # the same 5-node devnet with agents (fixture)
APP = "vault"
WORKLOAD = f"web_{APP}"


def environment_of(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def component_sees(net: Devnet, i: int, entry: bytes) -> bool:
    """Node i's agent runs the app's component with `entry` ("NAME=value") in its env."""
    pid = net.workload_pids(i).get(WORKLOAD)
    return pid is not None and entry in environment_of(pid)


def served_bytes(net: Devnet, via: int, tx_ids: list[str]) -> bytes:
    """Every answer a user or the dashboard reads about the app: blocks, txs, the app's
    views, events, sealed secrets, nodes, agents and search."""
    paths = ["/apps", f"/apps/{APP}", f"/apps/{APP}/events", f"/apps/{APP}/secrets"]
    paths += [f"/search?q={APP}", "/nodes", "/agent"]
    paths += [f"/blocks/{h}" for h in range(1, net.height(via) + 1)]
    paths += [f"/txs/{tx_id}" for tx_id in tx_ids]
    for node in net.get(via, "/nodes")["nodes"]:
        paths.append(f"/nodes/{node['node_id']}/assignments")
    out = []
    for path in paths:
        body: Any = net.try_get(via, path)
        out.append(repr(body).encode())
    return b"\n".join(out)


def logs_of(net: Devnet) -> bytes:
    return b"".join(path.read_bytes() for home in net.homes for path in home.glob("*.log"))


def component_started(net: Devnet, i: int) -> bool:
    """Node i runs the component, and the kernel has set its environment (just after exec)."""
    pid = net.workload_pids(i).get(WORKLOAD)
    return pid is not None and environment_of(pid) not in ([], [b""])


def write_secret(path: Path, token: str) -> Path:
    path.write_text(f"web:\n  env:\n    DB_PASSWORD: {token}\n", encoding="utf-8")
    return path


def test_a_sealed_secret_reaches_every_host_and_follows_a_failover_unseen(
    devnet: Devnet, tmp_path: Path
) -> None:
    token = random_tokens.token_hex(16)
    print(f"secret token {token}")
    entry = f"DB_PASSWORD={token}".encode()
    cli = Cli(tmp_path / "wallet", devnet.url(0))
    cli.import_devnet()
    spec = agents.write_app(tmp_path / "app.yaml", APP)
    values = write_secret(tmp_path / "secrets.yaml", token)
    registered = cli.json("app", "register", str(spec), "--secrets", str(values), "-a", "account6")
    hosts = agents.hosts_of(devnet, APP)
    assert len(hosts) == 3
    for i in hosts:  # the app never ran without its secret: the first process has it
        wait_until(partial(component_started, devnet, i), 30, f"node{i} runs it", nodes=devnet)
        assert component_sees(devnet, i, entry), f"node{i} ran it without the secret"

    victim = hosts[-1]
    via = next(i for i in range(agents.NODES) if i not in hosts)
    devnet.kill_host(victim)
    wait_until(
        lambda: (
            victim not in agents.hosts_of(devnet, APP, via)
            and len(agents.hosts_of(devnet, APP, via)) == 3
        ),
        60,
        "the instance moved off the dead host",
        nodes=devnet,
    )
    (new_host,) = set(agents.hosts_of(devnet, APP, via)) - set(hosts)
    wait_until(
        partial(component_sees, devnet, new_host, entry),
        60,
        f"the new host node{new_host} got the secret from a surviving host",
        nodes=devnet,
    )
    view = devnet.get(via, f"/apps/{APP}/secrets")
    assert view["unsealed_hosts"] == []
    new_id = next(k for k, v in agents.node_index(devnet).items() if v == new_host)
    assert view["sealed"][new_id]["sealer"], "sealed by a host, not by the owner"

    # rotation: new values under a new key reach every host
    rotated_token = random_tokens.token_hex(16)
    rotated = write_secret(tmp_path / "rotated.yaml", rotated_token)
    rotation = cli.json("app", "secrets", APP, "--set", str(rotated), "-a", "account6")
    for i in agents.hosts_of(devnet, APP, via):
        wait_until(
            partial(component_sees, devnet, i, f"DB_PASSWORD={rotated_token}".encode()),
            30,
            f"node{i} has the rotated secret",
            nodes=devnet,
        )
    # the owner's re-seal path: seals the same secrets to every current host again
    resealed = cli.json("app", "secrets", APP, "-a", "account6")
    assert resealed["status"] == "confirmed"

    tx_ids = [registered["id"], rotation["id"], resealed["id"]]
    tx_ids += [sealed["id"] for sealed in registered["secrets"]]
    served = served_bytes(devnet, via, tx_ids)
    logs = logs_of(devnet)
    for secret in (token, rotated_token):
        assert secret.encode() not in served
        assert secret.encode() not in logs
        for i in agents.hosts_of(devnet, APP, via):
            agent_dir = devnet.homes[i] / "agent"
            records = b"".join(p.read_bytes() for p in agent_dir.rglob("*.json"))
            assert secret.encode() not in records, f"node{i}'s agent stored the secret"
