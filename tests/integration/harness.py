"""A real multi-process devnet on 127.0.0.1 for scenario tests.

Start N validator processes from a fresh genesis, talk to them over their HTTP APIs,
perturb them with signals, and wait for conditions with a deadline
(`tests.support.wait.wait_until(..., nodes=devnet)`): on a timeout the failure message
carries every node's height, peers, round, head hash and log excerpts. `close()` always
stops every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from fluxchain.core import vrf
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.genesis import GenesisNode
from fluxchain.core.params import Params, Tier
from fluxchain.core.tx import Hardware
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.node.devnet import workload_host
from fluxchain.node.home import BoundPorts, Home, NodeConfig, init_home
from p2p.netgroup import LOOPBACK_NETWORKS
from tests.support.chain import Builder, open_chain
from tests.support.ports import lease_ports, node_ports
from tests.support.wait import NodeStatus, describe_nodes, status_from_api, wait_until
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path

ROOT = Path(__file__).resolve().parents[2]
# The height a `devnet_at_epoch_start` node decides: the first that starts an epoch
# (`height % epoch_length == 0`) in the shortest epochs a genesis takes (one-block epochs
# hold no attestation: `nodes.max_active` is 0, genesis refuses them).
EPOCH_START = 2


class Devnet:
    """N validators (plus optional extra nodes) as real `fluxchain run` processes."""

    def __init__(
        self,
        root: Path,
        validators: int = 4,
        params: Params | None = None,
        *,
        agents: bool = False,
        fluxnodes: int = 0,
    ) -> None:
        self.root = root
        self.agents = agents  # each node expects an agent on the process runtime
        slots = validators + fluxnodes
        # Named before any node starts: the genesis holds each node's API endpoint and
        # every validator dials the others' p2p addresses; leased, so no one else binds them.
        # A node added later binds port 0 unless a tx must name its endpoint (`add_node`).
        self._leases = [lease_ports(2 * slots)]
        ports = self._leases[0].ports
        self.p2p_ports, self.api_ports = ports[:slots], ports[slots:]
        self._bound: dict[int, BoundPorts] = {}  # port-0 nodes: what their process bound
        params = params or replace(devnet_params(), confirm_window=20)
        self.genesis = new_devnet_genesis(
            validators,
            genesis_time_ms=int(time.time() * 1000),
            params=params,
        )
        # genesis endpoints point at the API ports the checkers will probe
        nodes = tuple(
            replace(n, endpoint=f"127.0.0.1:{self.api_ports[i]}")
            for i, n in enumerate(self.genesis.nodes)
        ) + tuple(self._genesis_fluxnode(validators + j) for j in range(fluxnodes))
        self.genesis = replace(self.genesis, nodes=nodes)
        self.validators = validators
        self.homes: list[Path] = []
        self.procs: list[subprocess.Popen[bytes] | None] = []
        self.agent_procs: list[subprocess.Popen[bytes] | None] = []
        self._ready_agents: dict[int, subprocess.Popen[bytes]] = {}  # `ready_agent`
        for i in range(validators + fluxnodes):
            self._init_node(derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)))

    def _genesis_fluxnode(self, i: int) -> GenesisNode:
        """Node i as a confirmed Cumulus FluxNode that is not in the first validator set
        (with `max_validators` equal to the validators, it stays out while they are all
        confirmed): a full node that has duties but never votes."""
        node_key = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i))
        vrf_key, vrf_proof = vrf.claim(node_key, self.genesis.chain_id)
        return GenesisNode(
            owner=address_of(derive_key(INSECURE_TEST_MNEMONIC, account_path(i)).public_key),
            node_key=node_key.public_key,
            vrf_key=vrf_key,
            vrf_proof=vrf_proof,
            tier=Tier.CUMULUS,
            endpoint=f"127.0.0.1:{self.api_ports[i]}",
            country="NL",
            continent="EU",
            hardware=Hardware(2, 8_192, 220),
            validator=False,
        )

    def _init_node(self, key: SigningKey | None) -> int:
        i = len(self.homes)
        peers = tuple(f"127.0.0.1:{self.p2p_ports[j]}" for j in range(self.validators) if j != i)
        config = NodeConfig(
            moniker=f"node{i}",
            p2p_port=self.p2p_ports[i],
            api_port=self.api_ports[i],
            persistent_peers=peers,
            p2p_uncapped_networks=LOOPBACK_NETWORKS,  # every node of it is 127.0.0.1
            log_level="info",
            agent=self.agents,
            agent_runtime="process",
            agent_bind=self.workload_host(i),
            reports_from_loopback=True,  # its hosts' endpoints are 127.0.0.1 too
        )
        home = self.root / f"node{i}"
        init_home(home, self.genesis, config, key)
        self.homes.append(home)
        self.procs.append(None)
        self.agent_procs.append(None)
        return i

    @staticmethod
    def workload_host(i: int) -> str:
        return workload_host(i)

    def add_node(self, *, announced: bool = False) -> int:
        """A fresh non-validator node (new key) that knows every validator as a peer.

        It binds port 0 for both listeners and writes what it got to its port file (nobody
        dials it; it dials the validators). `announced`: a tx will name its API endpoint,
        which must then be known before it starts and stay the same across restarts, so
        its ports are leased instead."""
        if announced:
            self._leases.append(lease_ports(2))
            p2p_port, api_port = self._leases[-1].ports
        else:
            p2p_port = api_port = 0
        self.p2p_ports.append(p2p_port)
        self.api_ports.append(api_port)
        return self._init_node(None)

    # -- processes -------------------------------------------------------------------------

    def _spawn(
        self, i: int, command: str, entry: tuple[str, ...] | None = None, *, ready: bool = False
    ) -> subprocess.Popen[bytes]:
        """`fluxchain <command> --home HOME` for node i; output in HOME/node.log or agent.log.

        `entry` runs `python -m <entry[0]> --home HOME <entry[1:]>` instead: a test-only
        node program (tests/integration/byzantine.py). `ready`: the command's imports done,
        it creates HOME/<command>.ready and waits for a line on its stdin
        (tests/integration/warm_start.py)."""
        name = "node" if command == "run" else command
        log = (self.homes[i] / f"{name}.log").open("ab")
        main = "tests.integration.warm_start" if ready else "fluxchain.cli"
        program = [main, command] if entry is None else [entry[0]]
        extra = [] if entry is None else list(entry[1:])
        ready_file = {"WARM_START_READY": str(self.homes[i] / f"{name}.ready")} if ready else {}
        return subprocess.Popen(
            [sys.executable, "-P", "-m", *program, "--home", str(self.homes[i]), *extra],
            stdin=subprocess.PIPE if ready else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **ready_file},
        )

    def start(self, i: int, entry: tuple[str, ...] | None = None) -> None:
        """Start node i: `fluxchain run`, or the test-only program `entry` (see `_spawn`)."""
        self.procs[i] = self._spawn(i, "run", entry)

    def start_all(self) -> None:
        for i in range(len(self.homes)):
            self.start(i)
            if self.agents:
                self.start_agent(i)

    def start_agent(self, i: int) -> None:
        """Start node i's agent: the one `ready_agent` readied, if any, else a new one."""
        ready = self._ready_agents.pop(i, None)
        if ready is None:
            self.agent_procs[i] = self._spawn(i, "agent")
            return
        assert ready.stdin is not None and ready.poll() is None, f"agent{i} readied and gone"
        ready.stdin.write(b"start\n")
        ready.stdin.close()
        self.agent_procs[i] = ready

    def ready_agent(self, i: int) -> None:
        """Ready node i's next agent, its imports done, for `start_agent`: an agent restart
        the test times must not wait for them (the node counts an agent silent for
        `agent_link.STALE_S` gone; on a loaded machine importing the CLI took as long)."""
        assert i not in self._ready_agents, f"agent{i} readied already"
        ready_file = self.homes[i] / "agent.ready"
        ready_file.unlink(missing_ok=True)
        self._ready_agents[i] = self._spawn(i, "agent", ready=True)
        wait_until(ready_file.exists, 60, f"agent{i}'s imports done", nodes=self)

    def stop_agent(self, i: int, sig: signal.Signals = signal.SIGTERM) -> None:
        proc = self.agent_procs[i]
        assert proc is not None and proc.poll() is None, f"agent{i} is not running"
        proc.send_signal(sig)
        proc.wait(20)
        self.agent_procs[i] = None

    def workload_pids(self, i: int) -> dict[str, int]:
        """Live workload processes of node i's agent, by workload key (from its records)."""
        out = {}
        for record in (self.homes[i] / "agent" / "process").glob("*.json"):
            pid = int(json.loads(record.read_text())["pid"])
            if Path(f"/proc/{pid}").exists():
                out[record.stem] = pid
        return out

    def kill_host(self, i: int) -> None:
        """The machine of node i dies: its node, its agent and its workloads, at once.

        Returns once every one of them is dead, so what they left on disk is final."""
        pids = self.workload_pids(i)
        for proc in (self.procs[i], self.agent_procs[i]):
            if proc is not None and proc.poll() is None:
                proc.kill()
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self._reap(i)
        agent = self.agent_procs[i]
        if agent is not None:
            agent.wait(30)
            self.agent_procs[i] = None
        # The workloads are the dead agent's children, not ours: SIGKILL only marks them,
        # and a thread may still run until the kernel next schedules it.
        wait_until(
            lambda: not any(map(_group_runs, pids.values())),
            30,
            f"node{i}'s workloads dead after SIGKILL",
        )

    def signal(self, i: int, sig: signal.Signals) -> None:
        proc = self.procs[i]
        assert proc is not None and proc.poll() is None, f"node{i} is not running"
        proc.send_signal(sig)

    def kill(self, i: int) -> None:
        self.signal(i, signal.SIGKILL)
        self._reap(i)

    def terminate(self, i: int, timeout: float = 20) -> int:
        self.signal(i, signal.SIGTERM)
        proc = self.procs[i]
        assert proc is not None
        code = proc.wait(timeout)
        self.procs[i] = None
        return code

    def _reap(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.wait(30)
            self.procs[i] = None

    def close(self) -> None:
        for ready in self._ready_agents.values():  # stdin closed: it exits, never started
            if ready.stdin is not None:
                ready.stdin.close()
            ready.wait(15)
        self._ready_agents.clear()
        workloads = [pid for i in range(len(self.homes)) for pid in self.workload_pids(i).values()]
        for proc in self.procs + self.agent_procs:
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for procs in (self.procs, self.agent_procs):
            for i, proc in enumerate(procs):
                if proc is None:
                    continue
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                procs[i] = None
        for pid in workloads:  # workloads outlive agents by design; the test's must not
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        for lease in self._leases:
            lease.release()  # every process that bound them has exited

    # -- API -------------------------------------------------------------------------------

    def api_port(self, i: int) -> int:
        """Node i's API port: configured, or (port 0) what its running process bound."""
        if self.api_ports[i]:
            return self.api_ports[i]
        proc = self.procs[i]
        assert proc is not None, f"node{i} binds port 0 and is not running"
        bound = self._bound.get(i)
        if bound is None or bound.pid != proc.pid:
            bound = node_ports(self.homes[i], proc, self.homes[i] / "node.log")
            self._bound[i] = bound
        return bound.api

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.api_port(i)}"

    def get(self, i: int, path: str, timeout: float = 3.0) -> Any:
        with urllib.request.urlopen(self.url(i) + path, timeout=timeout) as response:
            return json.loads(response.read())

    def try_get(self, i: int, path: str) -> Any:
        """GET `path` from node i; None if it does not answer (or, binding port 0, is not
        running: it has no port to ask)."""
        if not self.api_ports[i] and i not in self.running():
            return None
        try:
            return self.get(i, path)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def post(self, i: int, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            self.url(i) + path, data=data, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def height(self, i: int) -> int:
        status = self.try_get(i, "/status")
        return -1 if status is None else int(status["height"])

    def block_hash(self, i: int, height: int) -> str | None:
        block = self.try_get(i, f"/blocks/{height}")
        return None if block is None else str(block["header"]["hash"])

    def running(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    # -- waiting ---------------------------------------------------------------------------

    def wait_height(self, nodes: list[int], height: int, timeout: float = 30) -> float:
        return wait_until(
            lambda: all(self.height(i) >= height for i in nodes),
            timeout,
            f"nodes {nodes} at height >= {height}",
            nodes=self,
        )

    def assert_agree(self, nodes: list[int], upto: int) -> None:
        """Every node has the same block hash at every height 1..upto."""
        for h in range(1, upto + 1):
            hashes = {i: self.block_hash(i, h) for i in nodes}
            assert len(set(hashes.values())) == 1 and None not in hashes.values(), (
                f"nodes disagree at height {h}: {hashes}\n{self.describe()}"
            )

    def node_statuses(self) -> list[NodeStatus]:
        """Every node's view (tests.support.wait dumps it when a wait times out)."""
        running = self.running()
        out = []
        for i, home in enumerate(self.homes):
            logs = tuple(
                home / name for name in ("node.log", "agent.log") if (home / name).exists()
            )
            status = status_from_api(f"node{i}", i in running, self.try_get(i, "/status"))
            out.append(replace(status, logs=logs))
        return out

    def describe(self) -> str:
        return describe_nodes(self)


def devnet_at_epoch_start(root: Path) -> Devnet:
    """A 4-validator devnet (not started) whose first node, once started alone, decides a
    height that starts an epoch, `EPOCH_START`, without knowing the next height's set (as
    every node does once an epoch, `Driver._new_height`): two-block epochs, and the blocks
    before it signed by the devnet's validators and imported into that node's home."""
    params = replace(devnet_params(), confirm_window=20, epoch_length=EPOCH_START)
    devnet = Devnet(root, params=params)
    chain = open_chain(Home(devnet.homes[0]).data, devnet.genesis)
    try:
        builder = Builder(chain, time_ms=devnet.genesis.genesis_time_ms)
        for _ in range(EPOCH_START - 1):
            builder.commit()
    finally:
        chain.close()
    return devnet


def _group_runs(pgid: int) -> bool:
    """Does a thread of process group `pgid` still run? (A zombie or a dead one never will.)"""
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone while we looked
            continue
        state, _ppid, group = text[text.rindex(")") + 2 :].split()[:3]
        if state not in "ZX" and int(group) == pgid:
            return True
    return False
