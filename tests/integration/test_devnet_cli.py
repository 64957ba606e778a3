"""`fluxchain devnet up` as the README runs it: nodes and agents start, the chain moves,
every node is healthy (its agent reports), and Ctrl-C stops every process it started.
The tour's kill step: a node whose processes are SIGKILLed is named, the others run on,
and `fluxchain devnet start NODE` brings it back to catch up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from stat import S_IMODE
from typing import Any

import pytest

from fluxchain.node.devnet import create_devnet, stop_workloads
from fluxchain.node.supervisor import Program, Supervisor, describe_exit, stop
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


def kill_launcher(proc: subprocess.Popen[bytes], home: Path, nodes: int) -> None:
    """After a failed test: SIGKILL the launcher and what it started, then the apps its
    agents left running (in sessions of their own, as on a real node)."""
    if proc.poll() is None:
        started = children_of(proc.pid)  # before the launcher dies and they are orphaned
        proc.kill()
        proc.wait()
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if (home / "devnet.json").exists():
        stop_workloads([home / f"node{i}" for i in range(nodes)])


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
        kill_launcher(proc, home, 3)
        p2p_ports.release()
        gateway_port.release()
        api_ports.release()


def devnet_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`fluxchain devnet ARGS` from another terminal, as the README runs it."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "fluxchain.cli", "devnet", *args],
        check=False,  # the tests read the exit status
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def processes_of(home: Path, launcher: int) -> dict[str, int]:
    """The launcher's children that serve `home` ("run" / "agent" -> pid), as `ps` shows."""
    out = {}
    for pid in children_of(launcher):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(home).encode() in argv:
            out[argv[argv.index(b"fluxchain.cli") + 1].decode()] = pid
    return out


def test_a_killed_devnet_node_is_named_and_devnet_start_brings_it_back(tmp_path: Path) -> None:
    # Four validators, as the tour runs: three of them still hold more than 2/3 of the power.
    p2p_ports, api_ports = lease_ports(4, contiguous=True), lease_ports(4, contiguous=True)
    p2p_base, api_base = p2p_ports.ports[0], api_ports.ports[0]
    home = tmp_path / "devnet"
    cmd = [sys.executable, "-P", "-m", "fluxchain.cli", "devnet", "up", "--nodes", "4"]
    cmd += ["--home", str(home), "--p2p-base", str(p2p_base), "--api-base", str(api_base)]
    launcher_log = tmp_path / "devnet.log"
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=launcher_log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    apis = [f"http://127.0.0.1:{api_base + i}" for i in range(4)]

    def node_statuses() -> list[NodeStatus]:
        return [
            replace(
                status_from_api(f"node{i}", proc.poll() is None, get(api + "/status")),
                logs=(home / f"node{i}" / "node.log", home / f"node{i}" / "agent.log"),
            )
            for i, api in enumerate(apis)
        ] + [NodeStatus("launcher", proc.poll() is None, logs=(launcher_log,))]

    def heights(nodes: range) -> list[int]:
        assert proc.poll() is None, launcher_log.read_text()
        bodies = [get(apis[i] + "/status") for i in nodes]
        return [-1 if b is None else int(b["height"]) for b in bodies]

    def healthy(i: int) -> bool:
        body = get(apis[i] + "/health")
        return body is not None and bool(body["healthy"])

    try:
        wait_until(
            lambda: min(heights(range(4))) >= 3 and all(healthy(i) for i in range(4)),
            90,
            "every node healthy at height 3",
            nodes=node_statuses,
        )
        # an app on three of the four nodes: the kill must not take its instances down
        hosts = [f"127.0.1.{i + 1}" for i in range(4)]
        cli = Cli(tmp_path / "wallet", apis[0])
        cli.import_devnet()
        cli.run("app", "register", str(write_app(tmp_path / "app.yaml", "tour")), "-a", "account6")
        wait_until(
            lambda: sum(answers(host) for host in hosts) == 3,
            30,
            "the app answers on three nodes",
            nodes=node_statuses,
        )
        serving = [host for host in hosts if answers(host)]
        victim = processes_of(home / "node3", proc.pid)
        assert set(victim) == {"run", "agent"}, victim
        for pid in victim.values():
            os.kill(pid, signal.SIGKILL)  # the tour's `kill -9` of node3's run and agent

        # the launcher names the dead node and how it died, and stays up
        deaths = [
            f"node3 run (pid {victim['run']}) killed by SIGKILL",
            f"node3 agent (pid {victim['agent']}) killed by SIGKILL",
            "node3 is down; the others keep running",
        ]
        wait_until(
            lambda: all(death in launcher_log.read_text() for death in deaths),
            10,
            "the launcher reports both of node3's processes dead",
            nodes=node_statuses,
        )
        output = launcher_log.read_text()
        assert f"fluxchain devnet start node3 --home {home}" in output
        # the other three keep committing and serving
        at_kill = max(heights(range(3)))
        wait_until(
            lambda: min(heights(range(3))) >= at_kill + 3,
            30,
            "nodes 0-2 commit three more blocks without node3",
            nodes=node_statuses,
        )
        assert get(apis[3] + "/status") is None
        assert all(answers(host) for host in serving), "an instance stopped with node3"
        assert proc.poll() is None
        status = devnet_cli("status", "--home", str(home))
        assert status.returncode == 0, status.stderr
        assert "node3: run down, agent down" in status.stdout
        assert "node0: run pid" in status.stdout

        # its control socket is the devnet user's only; junk on it is refused, not fatal
        control = home / "control.sock"
        assert S_IMODE(control.stat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as junk:
            junk.connect(str(control))
            junk.sendall(b"\xff not json\n")
            reply = json.loads(junk.makefile("rb").readline())
        assert reply["ok"] is False and "bad control request" in reply["message"]
        # a second launcher on the same devnet refuses to start its nodes twice
        second = devnet_cli("up", "--home", str(home))
        assert second.returncode == 1
        assert f"another devnet supervisor already runs in {home}" in second.stderr
        # a name the devnet does not have is refused with what it has
        unknown = devnet_cli("start", "node9", "--home", str(home))
        assert unknown.returncode == 1
        assert "no 'node9' in this devnet; it has: node0, node1, node2, node3" in unknown.stderr

        started = devnet_cli("start", "node3", "--home", str(home))
        assert started.returncode == 0, started.stderr
        assert "started node3: run (pid" in started.stdout and "agent (pid" in started.stdout
        back = processes_of(home / "node3", proc.pid)
        assert set(back) == {"run", "agent"} and not set(back.values()) & set(victim.values())
        # it catches up with the others and its agent reports again
        wait_until(
            lambda: heights(range(4))[3] >= max(heights(range(3))) - 1 and healthy(3),
            60,
            "node3 catches up and is healthy",
            nodes=node_statuses,
        )
        again = devnet_cli("start", "node3", "--home", str(home))
        assert again.returncode == 0 and "node3 is already running" in again.stdout
        # `devnet kill` does what the tour's kill -9 does; `devnet stop` asks them to exit
        killed = devnet_cli("kill", "node3", "--home", str(home))
        assert killed.returncode == 0, killed.stderr
        assert f"killed node3: run (pid {back['run']}, killed by SIGKILL)" in killed.stdout
        assert "node3: run down, agent down" in devnet_cli("status", "--home", str(home)).stdout
        assert devnet_cli("start", "node3", "--home", str(home)).returncode == 0
        stopped = devnet_cli("stop", "node3", "--home", str(home))
        assert stopped.returncode == 0 and "stopped node3: run (pid" in stopped.stdout
        assert devnet_cli("start", "node3", "--home", str(home)).returncode == 0
        back = processes_of(home / "node3", proc.pid)
        # what the launcher said was the supervisor's doing is not reported as a death
        assert launcher_log.read_text().count("node3 is down") == 1

        # Ctrl-C stops everything, the restarted node included
        everything = children_of(proc.pid)
        assert set(back.values()) <= set(everything)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert not [pid for pid in everything if Path(f"/proc/{pid}").exists()]
        assert not (home / "control.sock").exists()
        after = devnet_cli("start", "node3", "--home", str(home))
        assert after.returncode == 1
        assert f"the devnet in {home} is not running" in after.stderr
    finally:
        kill_launcher(proc, home, 4)
        p2p_ports.release()
        api_ports.release()


def test_devnet_start_without_a_running_devnet_says_so(tmp_path: Path) -> None:
    missing = devnet_cli("start", "node1", "--home", str(tmp_path / "nothing"))
    assert missing.returncode == 1
    assert f"no devnet in {tmp_path / 'nothing'}" in missing.stderr
    # a devnet that was created but does not run now, with the socket a killed launcher left
    home = tmp_path / "devnet"
    create_devnet(home, 1, agents=False)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(home / "control.sock"))
    for command in ("start", "kill"):
        result = devnet_cli(command, "node0", "--home", str(home))
        assert result.returncode == 1
        assert f"the devnet in {home} is not running" in result.stderr


def test_the_supervisor_refuses_malformed_control_requests(tmp_path: Path) -> None:
    never_started = Program("node0", "run", ("true",), tmp_path / "node.log")
    supervisor = Supervisor(tmp_path, [never_started], say=lambda line: None)
    for request, reason in (
        ("start node0", "a control request is a JSON object"),
        ({"command": "explode", "group": "node0"}, "unknown command 'explode'"),
        ({"command": "start", "group": ["node0"]}, "no ['node0'] in this devnet"),
        ({"command": "kill"}, "no None in this devnet; it has: node0"),
    ):
        reply = supervisor.handle(request)
        assert reply["ok"] is False and reason in reply["message"], reply
    assert supervisor.handle({"command": "status"})["groups"] == {"node0": {"run": None}}
    assert supervisor.running == {}  # nothing was started by any of them


def test_a_death_is_told_by_signal_name_or_exit_status() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(0) == "exited with status 0"


def test_each_death_is_named_and_its_node_reported_partly_then_wholly_down(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    sleeper = ("sleep", "60")
    programs = [
        Program("node0", "run", sleeper, tmp_path / "run0.log"),
        Program("node0", "agent", sleeper, tmp_path / "agent0.log"),
        Program("node1", "run", sleeper, tmp_path / "run1.log"),
    ]
    supervisor = Supervisor(tmp_path, programs, say=said.append)
    try:
        supervisor.start_group("node0")
        supervisor.start_group("node1")
        run0, agent0, run1 = (supervisor.running[p] for p in programs)
        said.clear()

        run0.kill()
        run0.wait()
        supervisor.reap()
        assert said == [
            f"node0 run (pid {run0.pid}) killed by SIGKILL; its log: {tmp_path / 'run0.log'}",
            "node0 is partly down (agent still running); the others keep running. "
            f"Start it again with: fluxchain devnet start node0 --home {tmp_path}",
        ]
        said.clear()
        agent0.terminate()
        agent0.wait()
        supervisor.reap()
        supervisor.reap()  # nothing new: nothing more said
        assert said[0].startswith(f"node0 agent (pid {agent0.pid}) killed by SIGTERM")
        assert said[1].startswith("node0 is down; the others keep running.")
        assert len(said) == 2
        assert supervisor.status() == {
            "node0": {"run": None, "agent": None},
            "node1": {"run": run1.pid},
        }
    finally:
        stop(list(supervisor.running.values()), timeout=5.0)


def test_a_control_client_trickling_its_request_cannot_stall_supervision(tmp_path: Path) -> None:
    """The attack: any process of the devnet's user (an app of the process runtime runs as
    that user) connects to the control socket and sends its request one byte every 1.5 s.
    The 2 s timeout is per read, so the one-threaded supervisor sits in that read for up
    to 4,096 x 1.5 s: meanwhile a node that dies is neither reaped nor reported, and
    Ctrl-C waits too. A request has a deadline as a whole; supervision goes on."""
    said: list[str] = []
    node = Program("node0", "run", ("sleep", "60"), tmp_path / "run0.log")
    supervisor = Supervisor(tmp_path, [node], say=said.append)
    outcome: dict[str, Any] = {}

    def attacker() -> None:
        try:
            wait_until(lambda: node in supervisor.running, 10, "node0 started")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(tmp_path / "control.sock"))
                client.sendall(b"{")
                time.sleep(0.7)  # the supervisor is reading this request now
                supervisor.running[node].kill()
                killed = time.monotonic()
                while time.monotonic() - killed < 6 and not any("killed" in s for s in said):
                    with contextlib.suppress(OSError):
                        client.sendall(b" ")
                    time.sleep(1.5)
                outcome["noticed_after_s"] = (
                    time.monotonic() - killed if any("killed" in s for s in said) else None
                )
        except Exception as exc:  # reported below, in the test's thread
            outcome["error"] = exc
        finally:
            supervisor.stopping = True

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    supervisor.run()
    thread.join(30)
    assert "error" not in outcome, outcome
    assert outcome["noticed_after_s"] is not None, (
        f"node0 died 6 s ago and the supervisor, held by a trickling client, said: {said}"
    )
