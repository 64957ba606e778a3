"""Replicated volumes, the agent's pure rules: which host is primary, whose Syncthing
device is trusted, and where a volume may live on the host."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fluxchain.agent.agent import Agent
from fluxchain.agent.docker import DockerRuntime, container_config
from fluxchain.agent.process import ProcessRuntime
from fluxchain.agent.runtime import GIB, WorkloadError, volume_dir
from fluxchain.agent.syncthing import device_claim_digest, resolve_ipv4
from fluxchain.agent.volumes import Host, primary_index, verified_device
from fluxchain.api.server import create_app
from fluxchain.cli import build_agent
from fluxchain.core.crypto import SigningKey
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.agent_link import AgentLink
from fluxchain.node.home import NodeConfig, init_home
from fluxchain.node.service import NodeService
from tests.agent.test_agent_link import report
from tests.agent.test_docker_config import web
from tests.agent.test_process_runtime import workload
from tests.support.chain import open_chain

CHAIN = "fluxchain-test"
DEVICE = "UEWMZKS-3AFSZAR-BUDEIVC-PNHJ5QJ-STWZNE6-55BCBKD-HFEIXNE-SYFDFAS"  # check digits hold
ADDRESS = "tcp://127.0.1.2:22000"


def host(key: SigningKey, index: int = 1, status: str = "confirmed") -> Host:
    return Host(index, "ab" * 20, key.public_key.hex(), "127.0.0.1:26701", status)


def claim(key: SigningKey, chain: str = CHAIN, device: str = DEVICE) -> dict[str, str]:
    digest = device_claim_digest(chain, key.public_key, device, ADDRESS)
    return {
        "node_key": key.public_key.hex(),
        "device_id": device,
        "address": ADDRESS,
        "signature": key.sign(digest).hex(),
    }


def test_the_primary_is_the_lowest_instance_on_a_confirmed_node() -> None:
    key = SigningKey.generate()
    hosts = [host(key, 2), host(key, 0, "down"), host(key, 1)]
    assert primary_index(hosts) == 1
    assert primary_index([host(key, 0, "down")]) is None


def test_a_device_claim_signed_by_the_placed_node_is_accepted() -> None:
    key = SigningKey.generate()
    assert verified_device(claim(key), host(key), CHAIN) == (DEVICE, ADDRESS)


def test_a_device_claim_not_signed_by_the_placed_node_is_refused() -> None:
    """A node that does not host the app signs its own device as if it were a host's."""
    placed, intruder = SigningKey.generate(), SigningKey.generate()
    forged = claim(intruder)
    assert verified_device(forged, host(placed), CHAIN) is None
    forged["node_key"] = placed.public_key.hex()  # naming the host's key does not help
    assert verified_device(forged, host(placed), CHAIN) is None


def test_a_device_claim_of_another_chain_or_a_down_node_is_refused() -> None:
    key = SigningKey.generate()
    assert verified_device(claim(key, chain="another-chain"), host(key), CHAIN) is None
    assert verified_device(claim(key), host(key, status="down"), CHAIN) is None
    tampered = claim(key) | {"address": "tcp://10.0.0.9:22000"}
    assert verified_device(tampered, host(key), CHAIN) is None
    assert verified_device(claim(key, device="not-a-device"), host(key), CHAIN) is None
    assert verified_device("junk", host(key), CHAIN) is None
    assert verified_device({"device_id": DEVICE}, host(key), CHAIN) is None


@pytest.mark.parametrize("mount", ["/../etc", "/a/../../etc", "/", "//"])
def test_a_volume_mount_escaping_the_workload_directory_is_refused(
    tmp_path: Path, mount: str
) -> None:
    # the spec rules refuse these already; the runtime checks again before any mkdir
    with pytest.raises(WorkloadError):
        volume_dir(tmp_path / "web_app1", mount)
    assert volume_dir(tmp_path / "web_app1", "/var/lib/kv") == tmp_path / "web_app1/var/lib/kv"


def test_a_replicated_volume_counts_against_the_disk_quota(tmp_path: Path) -> None:
    """Its copy lives in the workload's directory, which the disk watchdog measures."""
    runtime = ProcessRuntime(tmp_path / "process", "127.0.0.1")
    sleeper = (sys.executable, "-c", "import time; time.sleep(60)")
    w = workload(31000, command=sleeper, volumes=(("/kv", "replicated"),))

    async def scenario() -> None:
        await runtime.start(w)
        try:
            volume = runtime.volume_path(w.key, "/kv")
            assert volume.is_dir()
            (volume / "blob").write_bytes(b"x" * (8 * 1024 * 1024))
            used = (await runtime.disk_usage())[w.key]
            assert 8 * 1024 * 1024 <= used < GIB
        finally:
            await runtime.remove(w.key, keep_data=False)
        assert not runtime.volume_path(w.key, "/kv").exists()

    asyncio.run(scenario())


def test_the_node_publishes_its_agents_device_signed_with_its_node_key(tmp_path: Path) -> None:
    """What other hosts verify: 404 until the agent reports Syncthing; then the device,
    signed by this node's key; a malformed device in a report is refused."""
    chain = open_chain(tmp_path / "home")
    key = SigningKey.generate()
    service = NodeService(chain, agent=AgentLink("secret", expected=True), node_key=key)
    bearer = {"Authorization": "Bearer secret"}

    async def scenario() -> None:
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        try:
            missing = await client.get("/volumes/device")
            assert missing.status == 404
            assert (await missing.json())["error"]["reason"] == "no_volume_device"
            for bad in ({"device_id": "X", "address": ADDRESS}, {"device_id": DEVICE}):
                refused = await client.post(
                    "/agent/report", json=report(syncthing=bad), headers=bearer
                )
                assert refused.status == 400
            device = {"device_id": DEVICE, "address": ADDRESS}
            ok = await client.post("/agent/report", json=report(syncthing=device), headers=bearer)
            assert ok.status == 200
            published = await (await client.get("/volumes/device")).json()
            placed = Host(0, "ab" * 20, key.public_key.hex(), "", "confirmed")
            assert verified_device(published, placed, chain.params.chain_id) == (DEVICE, ADDRESS)
        finally:
            await client.close()

    try:
        asyncio.run(scenario())
    finally:
        chain.close()


def test_a_container_gets_its_declared_volumes_as_host_directories(tmp_path: Path) -> None:
    """Docker: data_path stays a named volume; each declared volume is a bind mount of the
    agent's directory for it (where Syncthing keeps a replicated one)."""
    runtime = DockerRuntime("unix:///nowhere", "n1", "127.0.1.1", tmp_path)
    w = web(volumes=(("/var/lib/kv", "replicated"), ("/cache", "local")))
    dirs = {mount: runtime.volume_path(w.key, mount) for mount, _ in w.volumes}
    body = container_config(
        w, "n1", "127.0.1.1", "flux-n1-web_app1", storage_quota=False, volume_dirs=dirs
    )
    assert body["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Source": "flux-n1-web_app1", "Target": "/data"},
        {"Type": "bind", "Source": str(tmp_path / "volumes/web_app1/cache"), "Target": "/cache"},
        {
            "Type": "bind",
            "Source": str(tmp_path / "volumes/web_app1/var/lib/kv"),
            "Target": "/var/lib/kv",
        },
    ]
    assert w.replicated_mounts == ("/var/lib/kv",)


def test_an_agent_in_a_container_keeps_volumes_on_the_shared_host_path(tmp_path: Path) -> None:
    """docker-compose.yml's agents: declared volumes under --volumes-dir (a host directory
    mounted at the same path, so a bind source the agent names is the engine's too), and
    Syncthing on the address --sync-bind resolves to (its compose network's), not the
    apps' bind address."""
    shared = tmp_path / "host-volumes" / "agent0"
    runtime = DockerRuntime("unix:///nowhere", "n1", "127.0.1.1", tmp_path / "agent", shared)
    w = web(volumes=(("/var/lib/kv", "replicated"),))
    dirs = runtime.prepare_volumes(w)
    assert dirs == {"/var/lib/kv": shared / "web_app1/var/lib/kv"} and dirs["/var/lib/kv"].is_dir()
    body = container_config(w, "n1", "127.0.1.1", "v", storage_quota=False, volume_dirs=dirs)
    assert {
        "Type": "bind",
        "Source": str(shared / "web_app1/var/lib/kv"),
        "Target": "/var/lib/kv",
    } in (body["HostConfig"]["Mounts"])
    assert resolve_ipv4("localhost") == "127.0.0.1" and resolve_ipv4("10.0.0.7") == "10.0.0.7"

    genesis = new_devnet_genesis(1, chain_id="volumes-test")
    home = init_home(tmp_path / "home", genesis, NodeConfig(), SigningKey.generate())
    agent = build_agent(
        home, home.config(), "docker", "127.0.1.1", volumes_dir=shared, sync_bind="10.0.0.7"
    )
    assert isinstance(agent.runtime, DockerRuntime) and agent.runtime.volumes_root == shared
    assert agent.volumes is not None and agent.volumes.syncthing.bind == "10.0.0.7"


def test_a_symlink_planted_in_a_volume_cannot_become_a_docker_mount_source(tmp_path: Path) -> None:
    """The engine follows a bind source's symlinks on its host. An app that had `/a` as a
    volume plants `a/b -> /`, then updates its spec to a volume `/b`-inside-`/a`: the
    runtime refuses to mount it instead of handing the host's root to the container."""
    runtime = DockerRuntime("unix:///nowhere", "n1", "127.0.1.1", tmp_path)
    runtime.prepare_volumes(web(volumes=(("/a", "local"),)))
    planted = runtime.volume_path("web_app1", "/a") / "b"
    planted.symlink_to("/")
    with pytest.raises(WorkloadError, match="symlink"):
        runtime.prepare_volumes(web(volumes=(("/a/b", "replicated"),)))
    (tmp_path / "volumes" / "web_app2").symlink_to(tmp_path / "volumes" / "web_app1")
    with pytest.raises(WorkloadError, match="symlink"):  # the workload's own directory too
        runtime.prepare_volumes(web(key="web_app2", app="app2", volumes=(("/c", "local"),)))


def test_volumes_that_would_nest_on_the_host_are_refused(tmp_path: Path) -> None:
    """`/./a` and `/a/b` are one directory inside another on the host: one file would
    belong to two volumes (and the outer one's owner could swap the inner one's
    directory). The spec rules refuse them; the runtime refuses them again."""
    runtime = DockerRuntime("unix:///nowhere", "n1", "127.0.1.1", tmp_path)
    with pytest.raises(WorkloadError, match="overlap"):
        runtime.prepare_volumes(web(volumes=(("/./a", "local"), ("/a/b", "replicated"))))
    assert not (tmp_path / "volumes" / "web_app1" / "a").exists()  # nothing was created


def test_a_standby_copy_past_disk_gb_is_never_measured(tmp_path: Path) -> None:
    """Attack: the operator of an app's primary host (or the app, through files it
    writes and rewrites) fills the sendonly folder: every standby's Syncthing writes it
    all into its copy, on a disk shared with the node's LevelDB and other apps. The
    disk watchdog measures only workloads the runtime started (`disk_usage` lists the
    process records), and a standby's workload never starts, so its copy grows past the
    spec's `disk_gb` unseen on every standby host. Should: a standby's copy is measured
    with its workload's quota and, past it, the folder is stopped (paused or dropped)
    and the workload held and reported `disk_quota_exceeded`, as on the primary."""
    runtime = ProcessRuntime(tmp_path / "process", "127.0.0.1")
    agent = Agent("http://127.0.0.1:1", "t", "key", runtime, tmp_path / "state.json", "127.0.0.1")
    standby = workload(31000, instance=1, disk_gb=1, volumes=(("/kv", "replicated"),))
    copy = runtime.volume_path(standby.key, "/kv")
    copy.mkdir(parents=True)
    received = copy / "blob"  # what the standby's Syncthing wrote from the primary's folder
    size = GIB + GIB // 4
    try:
        with received.open("wb") as f:
            os.posix_fallocate(f.fileno(), 0, size)  # allocated on disk, as written data is
        stopped = asyncio.run(agent.enforce_disk_quotas({standby.key: standby}))
        measured = asyncio.run(runtime.disk_usage())
    finally:
        received.unlink()
    assert standby.key in stopped, (
        f"a standby's copy of {size} bytes past disk_gb=1 goes unmeasured: {measured}"
    )
