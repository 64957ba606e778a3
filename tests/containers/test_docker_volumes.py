"""A stateful app keeps its data when its primary host dies, on the container devnet: the
agents run it as Docker containers and replicate its volume with their Syncthing.

The app is tests/agent/kv_app.py in an image built from the suite's own (no registry): a
key-value service whose `store` component declares `/kv` as a `replicated` volume and
writes a journal record there every 100 ms. The chain places 3 instances; the primary's
agent runs the container on the data, the two standbys' agents hold receive-only copies.
Then the primary's machine dies (its node, agent and app containers: docker kill, SIGKILL);
the chain moves the instance; the new primary pulls and starts with the data. The test
prints the recovery point (seconds of writes before the kill that survived, and lost) and
the failover time (kill to the new primary answering with the data).

Where a copy lives (docker-compose.yml): agent i keeps its apps' volumes in the host
directory <volumes_root>/agentI, mounted into its container at the same path, so the bind
source it names is the one the engine mounts; the test reads each host's copy there.

A second test runs the agent's Docker runtime alone: an app plants a symlink in its volume
to have the engine mount the host's root at its next start; the runtime refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fluxchain.agent.docker import DockerRuntime
from fluxchain.agent.runtime import WorkloadError
from tests.agent.test_devnet_agents import answers
from tests.containers.compose import AGENTS, WORKLOAD_LABEL, ComposeDevnet, apps_host, node_tag
from tests.containers.conftest import SETTLE_DEADLINE_S
from tests.containers.test_apps import free_app_port, hosts_of
from tests.containers.test_docker_runtime import HOST, URL, docker, port, tag, web
from tests.containers.test_gateway import build_image
from tests.support.wait import wait_until, wait_until_async
from tests.wallet.conftest import Cli

__all__ = ["port", "tag"]  # fixtures of test_docker_runtime this module uses

APP = "kv-e2e"
KEY = f"store_{APP}"  # the workload: component `store` of the app
KV_APP = Path(__file__).resolve().parents[1] / "agent" / "kv_app.py"
KV_DOCKERFILE = """\
FROM {base}
COPY app.py /srv/kv_app.py
"""
SPEC = """\
name: {name}
description: a key-value service with a replicated volume, as Docker containers
instances: 3
expire: 5000
components:
  - name: store
    image: {image}
    ports: [{port}]
    container_ports: [8080]
    command: ["python3", "/srv/kv_app.py", "$HOST", "$PORT", "/kv"]
    volumes:
      - mount: /kv
        mode: replicated
    cpu: 0.5
    ram_mb: 256
    disk_gb: 1
"""
PLACE_DEADLINE_S = 120.0  # placed, Syncthing started on 3 agents, devices exchanged
COPY_DEADLINE_S = 60.0
# What a user would accept of a failover on this devnet: the chain's down verdict and move
# (two 5-block epochs of 1 s blocks, plus the checkers' probes), then the new host's
# Syncthing dialling a standby (every 2 s), pulling and the container's start; the process
# runtime's test holds the same 90 s.
FAILOVER_LIMIT_S = 90.0
# Writes of the last seconds before the kill may be lost: the primary's watcher waits 1 s
# after a write, then scans and sends. More than this would mean replication is not
# continuous (a user's recovery point objective of seconds, not of the whole run).
LOST_LIMIT_S = 10.0


@pytest.fixture(scope="module")
def kv_image(devnet: ComposeDevnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app's image: the suite's image with kv_app.py (removed after the module)."""
    image = f"{devnet.project}-kv:local"
    try:
        build_image(devnet, image, KV_DOCKERFILE, KV_APP.read_text(), tmp_path_factory.mktemp("kv"))
        yield image
    finally:
        devnet.docker("image", "rm", "-f", image, check=False)


def app_gone(devnet: ComposeDevnet) -> bool:
    """No container of the app on the engine and no copy of its volume on any host."""
    return not devnet.workloads(APP) and not any(
        copy_dir(devnet, i).exists() for i in range(len(AGENTS))
    )


@pytest.fixture
def wallet(devnet: ComposeDevnet, tmp_path: Path) -> Iterator[Cli]:
    """A host wallet with the devnet's accounts. Afterwards, pass or fail, the app is
    cancelled and every validator runs again: the next tests need the devnet whole and
    the capacity the app holds (the gateway's app fills a validator's 2 cores)."""
    cli = Cli(tmp_path / "wallet", devnet.url("node4"))
    cli.import_devnet()
    try:
        yield cli
    finally:
        for service in (*(f"node{i}" for i in range(len(AGENTS))), *AGENTS):
            if not devnet.is_running(service):
                devnet.start(service)
        if not app_gone(devnet):
            with contextlib.suppress(AssertionError):  # cancelled already, or never placed
                cli.run("app", "cancel", APP, "--yes", "-a", "account5")
            wait_until(
                partial(app_gone, devnet),
                SETTLE_DEADLINE_S,
                f"{APP} removed everywhere",
                nodes=devnet,
            )


def copy_dir(devnet: ComposeDevnet, host: int) -> Path:
    """Validator `host`'s copy of the app's volume, on the host's filesystem."""
    return devnet.volumes_root / f"agent{host}" / KEY / "kv"


def journal(devnet: ComposeDevnet, host: int) -> list[tuple[int, float]]:
    """(seq, time) of every complete record of validator `host`'s copy of the journal."""
    try:
        lines = (copy_dir(devnet, host) / "journal").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            out.append((int(parts[0]), float(parts[1])))
    return out


def kv(host: int, port: int, path: str, data: bytes | None = None) -> Any:
    """The app on validator `host`'s address: JSON of GET /journal, bytes of /k/<key>."""
    url = f"http://{apps_host(host)}:{port}{path}"
    request = urllib.request.Request(url, data=data, method="PUT" if data else "GET")
    with urllib.request.urlopen(request, timeout=3) as response:
        body = response.read()
    return json.loads(body) if path == "/journal" else body


def answering(host: int, port: int) -> bool:
    try:
        return int(kv(host, port, "/journal")["records"]) > 0
    except (urllib.error.URLError, OSError, ValueError):
        return False


def standby_copy(devnet: ComposeDevnet, host: int) -> bool:
    """5 s of records and the key written before: the standby receives continuously."""
    return len(journal(devnet, host)) >= 50 and (copy_dir(devnet, host) / "data/greeting").exists()


def agent_states(devnet: ComposeDevnet, host: int) -> list[str]:
    """What validator `host`'s agent reports of this app's workloads (other tests' apps
    may run there too)."""
    report = devnet.try_get(f"node{host}", "/agent")
    workloads = [] if report is None else report.get("workloads", [])
    return [w["state"] for w in workloads if w["app"] == APP]


def running(devnet: ComposeDevnet) -> set[str]:
    return {tag for tag, state in devnet.workloads(APP).items() if state == "running"}


def one_primary(devnet: ComposeDevnet, hosts: list[int], port: int) -> int | None:
    """The one host running the app's container while the two others are standbys."""
    up = [i for i in hosts if node_tag(i) in running(devnet)]
    standbys = [i for i in hosts if agent_states(devnet, i) == ["standby"]]
    if len(up) == 1 and len(standbys) == 2 and up[0] not in standbys:
        return up[0] if answering(up[0], port) else None
    return None


def container_of(devnet: ComposeDevnet, host: int) -> str:
    (cid,) = devnet.docker(
        "ps",
        "-q",
        "--filter",
        f"label={WORKLOAD_LABEL}.app={APP}",
        "--filter",
        f"label={WORKLOAD_LABEL}.node={node_tag(host)}",
    ).stdout.split()
    return cid


def can_connect(devnet: ComposeDevnet, container: str, address: str) -> bool:
    """Whether a TCP connection from inside `container` reaches `address` (tcp://ip:port)."""
    ip, port = address.removeprefix("tcp://").rsplit(":", 1)
    probe = f"import socket; socket.create_connection(({ip!r}, {port}), timeout=3).close()"
    return devnet.docker("exec", container, "python3", "-c", probe, check=False).returncode == 0


def bind_sources(devnet: ComposeDevnet, container: str) -> list[str]:
    mounts = json.loads(devnet.docker("inspect", container, "--format", "{{json .Mounts}}").stdout)
    return sorted(m["Source"] for m in mounts if m["Type"] == "bind")


def assert_isolated(devnet: ComposeDevnet, primary: int, standbys: list[int]) -> None:
    """The attacks of docs/security.md's "Volumes (Docker)" rows, on the live devnet."""
    app_container = container_of(devnet, primary)
    # The app's container mounts its own copy and nothing else of any agent's.
    assert bind_sources(devnet, app_container) == [str(copy_dir(devnet, primary))]
    # No other container of the engine mounts this app's data, and each agent mounts its
    # own volume directory only (never the root holding the other agents').
    others = devnet.docker("ps", "-aq").stdout.split()
    copies = {str(copy_dir(devnet, i)) for i in (primary, *standbys)}
    for container in others:
        if container.startswith(app_container[:12]):
            continue
        for source in bind_sources(devnet, container):
            assert not any(source.startswith(c) for c in copies), (container, source)
    for i, agent in enumerate(AGENTS):
        shared = [
            s
            for s in bind_sources(devnet, devnet.container(agent))
            if s.startswith(str(devnet.volumes_root))
        ]
        assert shared == [str(devnet.volumes_root / f"agent{i}")], (agent, shared)
    # Each host's Syncthing listens where the other agents reach it, and the app's
    # container (on its app's network only) cannot reach any of them.
    for i in (primary, *standbys):
        address = devnet.get(f"node{i}", "/volumes/device")["address"]
        peer = next(j for j in (primary, *standbys) if j != i)
        assert can_connect(devnet, devnet.container(f"agent{peer}"), address), address
        assert not can_connect(devnet, app_container, address), f"app reaches {address}"


def test_a_replicated_volume_survives_its_primary_host_being_killed(
    devnet: ComposeDevnet, kv_image: str, wallet: Cli, tmp_path: Path
) -> None:
    devnet.wait_settled(SETTLE_DEADLINE_S)  # losing a host must leave > 2/3 of the power
    port = free_app_port()
    spec = tmp_path / "kv.yaml"
    spec.write_text(SPEC.format(name=APP, image=kv_image, port=port), encoding="utf-8")
    proc = wallet.run("app", "register", str(spec), "-a", "account5")
    assert "3 of 3 instances placed" in proc.stdout, proc.stdout
    hosts = hosts_of(devnet, APP)
    found: list[int] = []

    def primary_found() -> bool:
        found[:] = [p] if (p := one_primary(devnet, hosts, port)) is not None else []
        return bool(found)

    wait_until(primary_found, PLACE_DEADLINE_S, "one primary container, two standbys", nodes=devnet)
    old = found[0]
    standbys = [i for i in hosts if i != old]
    kv(old, port, "/k/greeting", b"kept across the failover")
    # the standbys receive the journal continuously: both hold 5 s of records and the key
    for i in standbys:
        wait_until(
            partial(standby_copy, devnet, i),
            COPY_DEADLINE_S,
            f"node{i}'s standby copy",
            nodes=devnet,
        )
    assert_isolated(devnet, old, standbys)

    # the machine dies: node, agent (with its Syncthing) and app container in one SIGKILL
    machine = [devnet.container(f"agent{old}"), devnet.container(f"node{old}")]
    devnet.docker("kill", *machine, container_of(devnet, old))
    killed_at = time.time()
    written = journal(devnet, old)  # what the dead primary had on disk at the kill
    assert written and written[-1][1] <= killed_at

    new: list[int] = []

    def recovered() -> bool:
        now = hosts_of(devnet, APP)
        new[:] = [i for i in now if i != old and answering(i, port)]
        return old not in now and len(new) == 1

    wait_until(recovered, FAILOVER_LIMIT_S, "a new primary answering with the data", nodes=devnet)
    failover_s = time.time() - killed_at
    took_over = new[0]
    assert kv(took_over, port, "/k/greeting") == b"kept across the failover"
    survived = [r for r in journal(devnet, took_over) if r[1] <= killed_at]
    seqs = [seq for seq, _ in survived]
    assert seqs == list(range(1, len(seqs) + 1)), "the surviving records have a hole"
    first_written, last_written = written[0][1], written[-1][1]
    last_survived = survived[-1][1]
    lost_s = max(0.0, last_written - last_survived)
    print(
        f"docker recovery point: {last_survived - first_written:.1f}s of writes survived "
        f"({len(survived)} of {len(written)} records), the last {lost_s:.1f}s "
        f"({len(written) - len(survived)} records) before the kill were lost; "
        f"failover: node{old} killed, node{took_over} "
        f"({'a former standby' if took_over in standbys else 'a new host, after pulling'}) "
        f"answering with the data {failover_s:.1f}s after the SIGKILL"
    )
    assert lost_s <= LOST_LIMIT_S, f"{lost_s:.1f}s of writes lost"
    wait_until(
        lambda: journal(devnet, took_over)[-1][0] > seqs[-1] + 10,
        20,
        "the new primary writing on after the records it received",
        nodes=devnet,
    )
    for i in [i for i in hosts_of(devnet, APP) if i != took_over]:
        wait_until(
            partial(lambda i: agent_states(devnet, i) == ["standby"], i),
            COPY_DEADLINE_S,
            f"node{i} a standby of the new primary",
            nodes=devnet,
        )

    # The app ends (its hosts stop it and drop its copies: no load left for the next
    # tests), and the machine comes back: its agent removes the dead instance's container
    # and data, and the session's devnet is whole again.
    wallet.run("app", "cancel", APP, "--yes", "-a", "account5")
    for service in (f"node{old}", f"agent{old}"):
        devnet.start(service)
    wait_until(
        partial(app_gone, devnet),
        SETTLE_DEADLINE_S,
        "every container and copy of the cancelled app removed",
        nodes=devnet,
    )
    devnet.wait_settled(SETTLE_DEADLINE_S)


def test_a_symlink_an_app_plants_in_its_volume_cannot_mount_a_host_path(
    tag: str, tmp_path: Path, port: int
) -> None:
    """The app (root in its container, as many images run) links `b -> /` inside its volume
    `/a`; its owner then updates the spec to a volume at `/a/b`. The engine would follow
    that link on its host and mount the host's root; the runtime refuses the workload
    before anything reaches the engine."""
    first = replace(web(port), volumes=(("/a", "local"),))
    name = f"flux-{tag}-{first.key}"

    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            await runtime.start(first)
            await wait_until_async(lambda: answers(HOST, port), 30, "the app answers")
            docker("exec", "--user", "0", name, "ln", "-s", "/", "/a/b")
            assert (runtime.volume_path(first.key, "/a") / "b").is_symlink()
            await runtime.remove(first.key, keep_data=True)  # the update: the data stays
            updated = replace(web(port), volumes=(("/a/b", "local"),))
            with pytest.raises(WorkloadError, match="symlink"):
                await runtime.start(updated)
            assert docker("ps", "-aq", "--filter", f"name={name}") == ""
        finally:
            await runtime.remove(first.key, keep_data=False)
            await runtime.close()

    asyncio.run(scenario())
