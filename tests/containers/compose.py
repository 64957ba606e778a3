"""The container devnet (docker-compose.yml) driven from the host, for the e2e suite.

`ComposeDevnet` brings the compose file up under a project name of its own with the node
APIs published on leased 127.0.0.1 ports (tests/support/ports.py), talks to each node
over its API, kills and starts containers with the Docker CLI, and waits for conditions
with `tests.support.wait.wait_until(..., nodes=devnet)`: on a timeout it fails with every
node's height, peers, round, head, container state and log excerpts. `down()` removes the
project's containers, network and volumes, then the app containers (and their volumes
and networks) that its agents started, and the agents' volume directories on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.support.ports import lease_ports
from tests.support.wait import NodeStatus, describe_nodes, status_from_api, wait_until
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

REPO = Path(__file__).resolve().parents[2]
NODES = ("node0", "node1", "node2", "node3", "node4")
VALIDATORS = NODES[:4]
AGENTS = ("agent0", "agent1", "agent2", "agent3")  # agent i serves validator node i
DOCKER_SOCKET = Path("/var/run/docker.sock")
WORKLOAD_LABEL = "io.fluxchain"  # fluxchain.agent.docker labels: .node (tag), .app, .key


def validator_key(index: int) -> str:
    """Validator i's node key: node key i of the published test mnemonic (the init script)."""
    return derive_key(INSECURE_TEST_MNEMONIC, node_key_path(index)).public_key.hex()


def node_tag(index: int) -> str:
    """How validator i's agent tags its containers (`io.fluxchain.node`)."""
    return validator_key(index)[:12]


def apps_host(index: int) -> str:
    """Where validator i's agent publishes its apps' ports (the init script's --agent-bind)."""
    return f"127.0.1.{index + 1}"


COMPOSE_TIMEOUT_S = 240.0  # `up` creates 6 containers on a 2-core machine
DOCKER_TIMEOUT_S = 60.0
POLL_S = 0.25


class ComposeError(AssertionError):
    """A compose or docker command failed; carries the command and its output."""


class ComposeDevnet:
    """The compose devnet of this repository, as project `project` running `image`."""

    def __init__(self, project: str, image: str) -> None:
        self.project = project
        self.image = image
        # agent i's apps' declared volumes: <volumes_root>/agentI on the host, mounted at
        # that same path in its container (docker-compose.yml)
        self.volumes_root = Path(os.environ.get("FLUX_VOLUMES_ROOT", f"/var/tmp/{project}-volumes"))
        # Docker publishes the node APIs on these: leased, so no other test binds them.
        self._ports = lease_ports(len(NODES))
        self.api_ports = dict(zip(NODES, self._ports.ports, strict=True))

    @classmethod
    def from_env(cls) -> ComposeDevnet:
        """Project and image named by scripts/test-containers.sh (which tears them down too)."""
        return cls(
            os.environ.get("FLUX_E2E_PROJECT", f"fluxchain-e2e-{os.getpid()}"),
            os.environ.get("FLUX_E2E_IMAGE", "fluxchain:e2e"),
        )

    # -- commands --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ, FLUX_IMAGE=self.image, FLUX_VOLUMES_ROOT=str(self.volumes_root))
        env["DOCKER_GID"] = str(DOCKER_SOCKET.stat().st_gid)  # the agents join it
        for name, port in self.api_ports.items():
            env[f"{name.upper()}_API_PORT"] = str(port)
        return env

    def compose(
        self, *args: str, timeout: float = COMPOSE_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(REPO / "scripts" / "compose.sh"),
            "-p",
            self.project,
            "-f",
            str(REPO / "docker-compose.yml"),
            *args,
        ]
        return self._run(command, timeout, check)

    def docker(
        self, *args: str, timeout: float = DOCKER_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._run(["docker", *args], timeout, check)

    def _run(
        self, command: Sequence[str], timeout: float, check: bool
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            command,
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ComposeError(
                f"{' '.join(command)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def up(self) -> None:
        self.compose("up", "-d")

    def down(self) -> None:
        """The project, then its agents' apps: agents first, or they would restart them."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        for index in range(len(VALIDATORS)):
            tag = node_tag(index)
            ids = self.docker(
                "ps", "-aq", "--filter", f"label={WORKLOAD_LABEL}.node={tag}"
            ).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            volumes = self.docker("volume", "ls", "-q", "--filter", f"name=flux-{tag}-")
            if volumes.stdout.split():
                self.docker("volume", "rm", *volumes.stdout.split(), check=False)
            networks = self.docker(
                "network", "ls", "-q", "--filter", f"label={WORKLOAD_LABEL}.node={tag}"
            ).stdout.split()
            if networks:
                self.docker("network", "rm", *networks, check=False)
        shutil.rmtree(self.volumes_root, ignore_errors=True)  # the suite runs as root
        self._ports.release()

    def workloads(self, app: str) -> dict[str, str]:
        """The app's containers on the engine: node tag → container state (running, exited)."""
        out = self.docker(
            "ps",
            "-a",
            "--filter",
            f"label={WORKLOAD_LABEL}.app={app}",
            "--format",
            '{{.Label "io.fluxchain.node"}} {{.State}}',
        ).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())

    def kill_workloads(self, index: int) -> None:
        """SIGKILL every app container of validator `index` (its machine is gone)."""
        ids = self.docker(
            "ps", "-q", "--filter", f"label={WORKLOAD_LABEL}.node={node_tag(index)}"
        ).stdout.split()
        if ids:
            self.docker("kill", *ids)

    # -- containers ------------------------------------------------------------------------

    def container(self, service: str) -> str:
        """The id of the service's container, running or not (compose v1 and v2 label both)."""
        ids = self.docker(
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).stdout.split()
        assert len(ids) == 1, f"expected one container for {service}, found {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        out = self.docker("inspect", self.container(service)).stdout
        state: dict[str, Any] = json.loads(out)[0]
        return state

    def is_running(self, service: str) -> bool:
        return bool(self.inspect(service)["State"]["Running"])

    def health(self, service: str) -> str:
        """The container's HEALTHCHECK status: starting, healthy or unhealthy."""
        return str(self.inspect(service)["State"].get("Health", {}).get("Status", "none"))

    def kill(self, service: str) -> None:
        """SIGKILL the service's container, as a crashed machine would stop."""
        self.docker("kill", self.container(service))

    def start(self, service: str) -> None:
        self.docker("start", self.container(service))

    def logs(self, service: str, lines: int = 15) -> str:
        proc = self.docker("logs", "--tail", str(lines), self.container(service), check=False)
        return proc.stdout + proc.stderr

    # -- API -------------------------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.api_ports[service]}"

    def get(self, service: str, path: str, timeout: float = 3.0) -> Any:
        with urllib.request.urlopen(self.url(service) + path, timeout=timeout) as response:
            return json.loads(response.read())

    def try_get(self, service: str, path: str) -> Any:
        try:
            return self.get(service, path)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def height(self, service: str) -> int:
        status = self.try_get(service, "/status")
        return -1 if status is None else int(status["height"])

    def block(self, service: str, height: int) -> dict[str, Any] | None:
        block: dict[str, Any] | None = self.try_get(service, f"/blocks/{height}")
        return block

    # -- waiting ---------------------------------------------------------------------------

    def wait_height(self, services: Sequence[str], height: int, timeout: float) -> float:
        return wait_until(
            lambda: all(self.height(s) >= height for s in services),
            timeout,
            f"{list(services)} at height >= {height}",
            nodes=self,
        )

    def settled(self) -> bool:
        """Every validator confirmed on chain and in the validator set, every node healthy.

        Right after genesis, or after a validator's restart, a node can be reported down
        for a while (its checkers probed it before it was up); the kill tests start from a
        settled network so that losing one validator leaves more than 2/3 of the power.
        """
        nodes = self.try_get("node4", "/nodes")
        validators = self.try_get("node4", "/validators")
        if nodes is None or validators is None:
            return False
        keys = {validator_key(i) for i in range(len(VALIDATORS))}
        confirmed = {n["node_key"] for n in nodes["nodes"] if n["status"] == "confirmed"}
        in_set = {v["pubkey"] for v in validators["validators"]}
        return (
            keys <= confirmed
            and in_set == keys
            and all(self.health(service) == "healthy" for service in NODES)
        )

    def chain_view(self) -> str:
        """Each validator's status on chain (as node4 sees it) and the validator set."""
        nodes = self.try_get("node4", "/nodes")
        validators = self.try_get("node4", "/validators")
        if nodes is None or validators is None:
            return "--- chain view: node4 does not answer"
        names = {validator_key(i): VALIDATORS[i] for i in range(len(VALIDATORS))}
        statuses = " ".join(
            f"{names.get(n['node_key'], n['node_id'][:8])}={n['status']}"
            f"@{n['status_height']}/confirmed@{n['last_confirm_height']}"
            for n in nodes["nodes"]
        )
        in_set = sorted(names.get(v["pubkey"], v["pubkey"][:12]) for v in validators["validators"])
        return f"--- chain view: {statuses}; validator set {in_set}"

    def wait_settled(self, timeout: float) -> float:
        return wait_until(
            self.settled, timeout, "every validator confirmed, in the set, and healthy", nodes=self
        )

    def assert_agree(self, services: Sequence[str], upto: int) -> None:
        """Every service has the same block hash at every height 1..upto."""
        for h in range(1, upto + 1):
            hashes = {}
            for s in services:
                block = self.block(s, h)
                hashes[s] = None if block is None else block["header"]["hash"]
            assert len(set(hashes.values())) == 1 and None not in hashes.values(), (
                f"nodes disagree at height {h}: {hashes}\n{self.describe()}"
            )

    def node_statuses(self) -> list[NodeStatus]:
        """Every container's view (tests.support.wait dumps it when a wait times out)."""
        out = [NodeStatus("chain", True, extra=self.chain_view())]
        for service in (*NODES, *AGENTS):
            status = self.try_get(service, "/status") if service in self.api_ports else None
            try:
                state = self.inspect(service)["State"]["Status"]
                log = self.logs(service)
            except (ComposeError, AssertionError, subprocess.TimeoutExpired) as exc:
                state, log = "unknown", str(exc)
            view = status_from_api(service, state == "running", status)
            out.append(replace(view, extra=f"container={state}", log_lines=tuple(log.splitlines())))
        return out

    def describe(self) -> str:
        return describe_nodes(self)
