"""`fluxchain devnet up` as the README runs it: nodes and agents start, the chain moves,
every node is healthy (its agent reports), and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fluxchain.node.devnet import free_ports
from tests.agent.test_devnet_agents import answers, write_app
from tests.integration.harness import ROOT
from tests.wallet.conftest import Cli

pytestmark = pytest.mark.slow


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


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
    p2p_base, api_base = 20_000 + free_ports(1)[0] % 10_000, 40_000 + free_ports(1)[0] % 10_000
    home = tmp_path / "devnet"
    cmd = [sys.executable, "-P", "-m", "fluxchain.cli", "devnet", "up", "--nodes", "3"]
    cmd += ["--home", str(home), "--p2p-base", str(p2p_base), "--api-base", str(api_base)]
    log = (tmp_path / "devnet.log").open("wb")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    apis = [f"http://127.0.0.1:{api_base + i}" for i in range(3)]
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "devnet.log").read_text()
            healths = [get(api + "/health") for api in apis]
            if all(h is not None and h["healthy"] and h["height"] >= 3 for h in healths):
                break
            assert time.monotonic() < deadline, f"not healthy in time: {healths}"
            time.sleep(0.2)
        assert all(h["agent"]["runtime"] == "process" for h in healths)
        described = json.loads((home / "devnet.json").read_text())
        hosts = [n["apps_host"] for n in described["nodes"]]
        assert hosts == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
        started = children_of(proc.pid)
        assert len(started) == 6, "three nodes and three agents"
        # an app on all three nodes: Ctrl-C must stop its processes too
        cli = Cli(tmp_path / "wallet", apis[0])
        cli.import_devnet()
        cli.run("app", "register", str(write_app(tmp_path / "app.yaml", "tour")), "-a", "account6")
        deadline = time.monotonic() + 30
        while not all(answers(host) for host in hosts):
            assert time.monotonic() < deadline, "the app did not start on its three nodes"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]
        assert not any(answers(host) for host in hosts)
        assert not [
            cwd for cwd in Path("/proc").glob("[0-9]*/cwd") if str(home) in str(_readlink(cwd))
        ], "a workload outlived the devnet"
        output = (tmp_path / "devnet.log").read_text()
        assert "apps answer on" in output and "127.0.1.2" in output
        assert "stopped 3 app workload(s)" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children_of(proc.pid):
            os.kill(pid, signal.SIGKILL)
