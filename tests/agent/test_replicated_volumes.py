"""A stateful app keeps its data when its primary host dies: a key-value service whose
volume is replicated by the agents' Syncthing, on a real 5-node devnet (process runtime).

The app (a `store` component with the volume, and a `sidecar` without one, which runs
where its app's primary runs) writes a journal record every 100 ms. Its primary host
(node, agent, workloads and Syncthing) is SIGKILLed; the chain moves the instance; the
new primary starts with the data. The test prints the recovery point (how many seconds
of writes before the kill survived, how many were lost) and the failover time (kill to
the new primary answering).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_devnet_agents import NODES, agent_devnet, hosts_of
from tests.integration.harness import Devnet
from tests.support.ports import lease_app_ports
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli

pytestmark = pytest.mark.slow

KV_APP = Path(__file__).with_name("kv_app.py")
PORT = lease_app_ports(1).ports[0]
KEY = "store_kv"  # the workload: component "store" of app "kv"
STANDBY = ["standby", "standby"]  # a standby's report: sidecar_kv, store_kv
SPEC = f"""\
name: kv
description: a key-value service with a replicated volume
instances: 3
expire: 5000
components:
  - name: store
    image: python:3.11-slim
    ports: [{PORT}]
    container_ports: [8080]
    command: ["{sys.executable}", "{KV_APP}", "$HOST", "$PORT"]
    volumes:
      - mount: /kv
        mode: replicated
    cpu: 0.5
    ram_mb: 256
    disk_gb: 1
  - name: sidecar          # no volume: it runs where its app's primary runs
    image: python:3.11-slim
    command: ["{sys.executable}", "-c", "import time; time.sleep(3600)"]
    cpu: 0.1
    ram_mb: 100
    disk_gb: 1
"""
# What the test holds the failover to: the chain's down verdict and move (the devnet
# failover test's 30 s), then the new host's pull and start.
FAILOVER_LIMIT_S = 90.0
# Writes of the last seconds before the kill may be lost (the watcher's delay, a scan and
# the transfer); more than this would mean replication is not continuous.
LOST_LIMIT_S = 10.0


def syncthings_under(root: Path) -> list[str]:
    """Live Syncthing processes whose home is under `root`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"syncthing") and any(str(root).encode() in a for a in argv):
            found.append(f"{cmdline.parent.name}: {b' '.join(argv)!r}")
    return found


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    try:
        with agent_devnet(tmp_path / "net", NODES) as net:
            yield net
    finally:
        # every agent's Syncthing went with its agent
        wait_until(lambda: not syncthings_under(tmp_path), 20, "no Syncthing left running")


def journal(net: Devnet, i: int) -> list[tuple[int, float]]:
    """Node i's copy of the app's journal: (seq, time) of every complete record."""
    path = net.homes[i] / "agent" / "process" / KEY / "kv" / "journal"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            out.append((int(parts[0]), float(parts[1])))
    return out


def kv_status(net: Devnet, i: int) -> dict[str, Any] | None:
    """The app's /journal answer on node i's address, or None when nothing answers."""
    url = f"http://{net.workload_host(i)}:{PORT}/journal"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return dict(json.loads(response.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def states(net: Devnet, i: int) -> list[str]:
    return [w["state"] for w in net.get(i, "/agent")["workloads"]]


def one_primary(net: Devnet, hosts: list[int]) -> int | None:
    """The host running the app while the two others are standbys, if so."""
    running = [i for i in hosts if kv_status(net, i) is not None]
    standbys = [i for i in hosts if states(net, i) == STANDBY]
    if len(running) == 1 and len(standbys) == 2 and running[0] not in standbys:
        return running[0]
    return None


def standby_copy(net: Devnet, i: int, records: int) -> bool:
    data = net.homes[i] / "agent" / "process" / KEY / "kv" / "data" / "greeting"
    return len(journal(net, i)) >= records and data.exists()


def put(net: Devnet, i: int, key: str, value: bytes) -> None:
    url = f"http://{net.workload_host(i)}:{PORT}/k/{key}"
    request = urllib.request.Request(url, data=value, method="PUT")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 204


def get(net: Devnet, i: int, key: str) -> bytes:
    with urllib.request.urlopen(f"http://{net.workload_host(i)}:{PORT}/k/{key}", timeout=5) as r:
        return bytes(r.read())


def test_replicated_volume_survives_the_primary_host_being_killed(
    devnet: Devnet, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "wallet", devnet.url(0))
    cli.import_devnet()
    spec = tmp_path / "kv.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    cli.run("app", "register", str(spec), "-a", "account6")
    wait_until(lambda: len(hosts_of(devnet, "kv")) == 3, 30, "3 instances placed", nodes=devnet)
    hosts = hosts_of(devnet, "kv")
    primary: list[int] = []

    def found_primary() -> bool:
        primary[:] = [p] if (p := one_primary(devnet, hosts)) is not None else []
        return bool(primary)

    wait_until(found_primary, 60, "one primary running the app, two standbys", nodes=devnet)
    old = primary[0]
    wait_until(
        lambda: states(devnet, old) == ["running", "running"],
        30,
        "the primary running both components",
        nodes=devnet,
    )
    standbys = [i for i in hosts if i != old]
    put(devnet, old, "greeting", b"kept across the failover")
    # the standbys receive the journal continuously: both hold 5 s of records and the key
    for i in standbys:
        wait_until(
            partial(standby_copy, devnet, i, 50), 60, f"node{i}'s standby copy", nodes=devnet
        )

    killed_at = time.time()  # the failover is timed from the SIGKILL
    devnet.kill_host(old)
    dead_at = time.time()  # every process of the host is dead: its journal is final
    written = journal(devnet, old)  # what the dead primary had on disk at the kill
    assert written and written[-1][1] <= dead_at

    via = standbys[0]
    new: list[int] = []

    def recovered() -> bool:
        now = hosts_of(devnet, "kv", via)
        if old in now:
            return False
        for i in now:
            status = kv_status(devnet, i)
            if status is not None and status["records"] > 0:
                new[:] = [i]
                return True
        return False

    wait_until(recovered, FAILOVER_LIMIT_S, "a new primary answering with the data", nodes=devnet)
    failover_s = time.time() - killed_at
    took_over = new[0]
    assert journal(devnet, old) == written, "the dead primary wrote after its SIGKILL"
    assert get(devnet, took_over, "greeting") == b"kept across the failover"
    survived = [r for r in journal(devnet, took_over) if r[1] <= dead_at]
    seqs = [seq for seq, _ in survived]
    assert seqs == list(range(1, len(seqs) + 1)), "the surviving records have a hole"
    first_written, last_written = written[0][1], written[-1][1]
    last_survived = survived[-1][1]
    lost_s = last_written - last_survived
    print(
        f"recovery point: {last_survived - first_written:.1f}s of writes survived "
        f"({len(survived)} of {len(written)} records), the last {lost_s:.1f}s "
        f"({len(written) - len(survived)} records) before the kill were lost; "
        f"failover: node{old} killed, node{took_over} "
        f"({'a former standby' if took_over in standbys else 'a new host, after pulling'}) "
        f"answering with the data {failover_s:.1f}s after the SIGKILL"
    )
    assert lost_s <= LOST_LIMIT_S, f"{lost_s:.1f}s of writes lost"
    # the new primary goes on writing after the records it received
    wait_until(
        lambda: journal(devnet, took_over)[-1][0] > seqs[-1] + 10,
        20,
        "the new primary writing on",
        nodes=devnet,
    )
    others = [i for i in hosts_of(devnet, "kv", via) if i != took_over]
    for i in others:
        wait_until(
            partial(lambda i: states(devnet, i) == STANDBY, i),
            60,
            f"node{i} a standby of the new primary",
            nodes=devnet,
        )
