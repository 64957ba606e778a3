"""`fluxchain devnet up` as the README runs it: nodes and agents start, the chain moves,
every node is healthy (its agent reports), and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_devnet_agents import answers, write_app
from tests.integration.harness import ROOT
from tests.support.ports import lease_ports
from tests.support.wait import NodeStatus, status_from_api, wait_until
from tests.wallet.conftest import Cli

pytestmark = pytest.mark.slow


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def through_gateway(address: str, host: str) -> int:
    """The HTTP status of GET / at the gateway `address` with `Host: host` (0: no answer)."""
    request = urllib.request.Request(f"http://{address}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_devnet_up_runs_nodes_with_agents_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    # The genesis names each node's API endpoint: runs of ports leased before the launch.
    p2p_ports, api_ports = lease_ports(3, contiguous=True), lease_ports(3, contiguous=True)
    p2p_base, api_base = p2p_ports.ports[0], api_ports.ports[0]
    gateway_port = lease_ports(1)
    home = tmp_path / "devnet"
    cmd = [sys.executable, "-P", "-m", "fluxchain.cli", "devnet", "up", "--nodes", "3"]
    cmd += ["--home", str(home), "--p2p-base", str(p2p_base), "--api-base", str(api_base)]
    cmd += ["--gateway-port", str(gateway_port.ports[0])]
    log = (tmp_path / "devnet.log").open("wb")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    apis = [f"http://127.0.0.1:{api_base + i}" for i in range(3)]

    def node_statuses() -> list[NodeStatus]:
        return [
            status_from_api(f"node{i}", proc.poll() is None, get(api + "/status"))
            for i, api in enumerate(apis)
        ] + [NodeStatus("launcher", proc.poll() is None, logs=(tmp_path / "devnet.log",))]

    def all_healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "devnet.log").read_text()
        healths[:] = [get(api + "/health") for api in apis]
        return all(h is not None and h["healthy"] and h["height"] >= 3 for h in healths)

    healths: list[Any] = []
    try:
        wait_until(all_healthy, 60, "every node healthy at height 3", nodes=node_statuses)
        assert all(h["agent"]["runtime"] == "process" for h in healths)
        described = json.loads((home / "devnet.json").read_text())
        hosts = [n["apps_host"] for n in described["nodes"]]
        assert hosts == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
        started = children_of(proc.pid)
        assert len(started) == 7, "three nodes, three agents and the gateway"
        gateway = described["gateway"]
        assert gateway["http"] == f"127.0.0.1:{gateway_port.ports[0]}"
        assert gateway["domain"] == "apps.localhost"
        # an app on all three nodes: Ctrl-C must stop its processes too
        cli = Cli(tmp_path / "wallet", apis[0])
        cli.import_devnet()
        cli.run("app", "register", str(write_app(tmp_path / "app.yaml", "tour")), "-a", "account6")
        wait_until(
            lambda: all(answers(host) for host in hosts),
            30,
            "the app started on its three nodes",
            nodes=node_statuses,
        )
        # ... and answers at one address, through the devnet's gateway (docs/ingress.md)
        wait_until(
            lambda: through_gateway(gateway["http"], "tour.apps.localhost") == 200,
            30,
            "the app answering through the gateway",
            nodes=node_statuses,
        )
        haproxy = int((Path(gateway["state"]) / "haproxy.pid").read_text().split()[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]
        assert not Path(f"/proc/{haproxy}").exists(), "HAProxy outlived the devnet's gateway"
        assert not any(answers(host) for host in hosts)
        assert not [
            cwd for cwd in Path("/proc").glob("[0-9]*/cwd") if str(home) in str(_readlink(cwd))
        ], "a workload outlived the devnet"
        output = (tmp_path / "devnet.log").read_text()
        assert "apps answer on" in output and "127.0.1.2" in output
        assert "stopped 3 app workload(s)" in output
        # the launcher read what each node bound from the node's port file
        for i in range(3):
            assert (
                f"node{i} listening: p2p 127.0.0.1:{p2p_base + i}, "
                f"API http://127.0.0.1:{api_base + i}"
            ) in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children_of(proc.pid):
            os.kill(pid, signal.SIGKILL)
        p2p_ports.release()
        gateway_port.release()
        api_ports.release()
