"""The agent's Docker runtime against a real engine: limits, ports, labels, crash,
adoption by a restarted agent, update, removal with the data volume; isolation (a fork
bomb stops at the PID limit, a writer past disk_gb is stopped, no-new-privileges and the
dropped capabilities as `docker inspect` shows them). Run by `make test-containers`
(scripts/test-containers.sh builds the image it uses)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxchain.agent.agent import DISK_QUOTA_EXCEEDED, Agent
from fluxchain.agent.docker import APP_CAPABILITIES, LABEL, PIDS_LIMIT, DockerRuntime
from fluxchain.agent.runtime import RuntimeUnavailableError, WorkloadError
from fluxchain.agent.workloads import PublishedPort, Workload
from fluxchain.core.appspec import Protocol
from tests.agent.component_app import DB_REPLY, two_components
from tests.agent.test_devnet_agents import answers
from tests.support.ports import leased_ports
from tests.support.wait import wait_until_async

IMAGE = os.environ.get("FLUX_E2E_IMAGE", "fluxchain:e2e")
URL = "unix:///var/run/docker.sock"
HOST = "127.0.0.1"


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.fixture
def tag() -> Iterator[str]:
    """A node tag of this test's own; every container and volume under it is removed."""
    name = f"rt{os.getpid()}"
    try:
        yield name
    finally:
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}.node={name}").split()
        if ids:
            docker("rm", "-f", *ids)
        volumes = docker("volume", "ls", "-q", "--filter", f"name=flux-{name}-").split()
        if volumes:
            docker("volume", "rm", "-f", *volumes)
        networks = docker("network", "ls", "-q", "--filter", f"label={LABEL}.node={name}").split()
        if networks:
            docker("network", "rm", *networks)


def web(port: int) -> Workload:
    return Workload(
        key="web_rtapp",
        app="rtapp",
        instance=1,
        component="web",
        image=IMAGE,
        command=("python3", "-m", "http.server", "--bind", "$HOST", "$PORT"),
        environment=("GREETING=hi",),
        ports=(PublishedPort(port, 8080, Protocol.TCP),),
        data_path="/data",
        cpu_tenths=5,
        ram_mb=256,
        disk_gb=1,
    )


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback port leased for this test (tests/support/ports.py); Docker publishes on it."""
    with leased_ports(1) as ports:
        yield ports[0]


def test_docker_runtime_end_to_end(tag: str, tmp_path: Path, port: int) -> None:
    w = web(port)
    name = f"flux-{tag}-{w.key}"

    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            await runtime.check()
            capacity = await runtime.capacity()
            assert capacity.cores >= 1 and capacity.ram_mb > 0
            await runtime.start(w)
            await wait_until_async(
                lambda: answers(HOST, port), 30, f"the app answers on {HOST}:{port}"
            )
            inspect = docker(
                "inspect",
                name,
                "--format",
                "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{index .Config.Labels "
                f'"{LABEL}.fingerprint"}}}} {{{{json .HostConfig.PortBindings}}}}',
            )
            nano, memory, fingerprint, bindings = inspect.split(" ", 3)
            assert (int(nano), int(memory)) == (500_000_000, 256 * 1024 * 1024)
            assert fingerprint == w.fingerprint
            assert f'"HostIp":"{HOST}","HostPort":"{port}"' in bindings
            env = docker("inspect", name, "--format", "{{json .Config.Env}}")
            assert "GREETING=hi" in env and "PORT=8080" in env and "FLUX_APP=rtapp" in env
            isolation = docker(
                "inspect",
                name,
                "--format",
                "{{json .HostConfig.SecurityOpt}} {{json .HostConfig.CapDrop}} "
                "{{json .HostConfig.CapAdd}} {{.HostConfig.PidsLimit}} "
                "{{.HostConfig.MemorySwap}}",
            )
            security, cap_drop, cap_add, pids, swap = isolation.split(" ")
            assert json.loads(security) == ["no-new-privileges"]
            assert json.loads(cap_drop) == ["ALL"]
            assert sorted(c.removeprefix("CAP_") for c in json.loads(cap_add)) == sorted(
                APP_CAPABILITIES
            )
            assert (int(pids), int(swap)) == (PIDS_LIMIT, 256 * 1024 * 1024)
            # …and as the kernel applies them to the app's process
            status = docker("exec", name, "cat", "/proc/1/status")
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            assert fields["NoNewPrivs"].strip() == "1"
            assert not int(fields["CapBnd"], 16) & (1 << 13)  # CAP_NET_RAW is gone

            # a restarted agent finds its container by label
            again = DockerRuntime(URL, tag, HOST, tmp_path)
            seen = await again.observe()
            assert list(seen) == [w.key] and seen[w.key].running
            stranger = DockerRuntime(URL, "someone-else", HOST, tmp_path)
            assert await stranger.observe() == {}
            await stranger.close()
            await again.close()

            docker("kill", name)  # a crash

            async def stopped() -> bool:
                return not (await runtime.observe())[w.key].running

            await wait_until_async(stopped, 20, "the runtime sees the container stopped")

            # replaced (an update, or a restart after a crash) keeps the data volume
            await runtime.remove(w.key, keep_data=True)
            assert docker("volume", "ls", "-q", "--filter", f"name={name}") == name
            await runtime.start(replace(w, environment=("GREETING=updated",)))
            await wait_until_async(
                lambda: answers(HOST, port), 30, f"the app answers on {HOST}:{port}"
            )
            await runtime.remove(w.key, keep_data=False)
            assert await runtime.observe() == {}
            assert not answers(HOST, port)
            assert docker("volume", "ls", "-q", "--filter", f"name={name}") == ""
        finally:
            await runtime.close()

    asyncio.run(scenario())


def get_json(url: str) -> tuple[int, Any]:
    """(status, JSON body) of a GET, or (0, None) while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def test_an_apps_components_resolve_each_other_by_name_on_a_network_of_their_own(
    tag: str, tmp_path: Path
) -> None:
    """docs/apps.md's WordPress + MySQL shape on the real engine: `db` publishes no port
    and listens on 3306 in its container; `web` is told `DB_HOST=db` (as WordPress is told
    `WORDPRESS_DB_HOST=db`) and reads from it by name. Another app on the same node
    cannot resolve `db`, nor reach the container at its address."""

    async def scenario(web_port: int, other_port: int) -> None:
        web, db = two_components(
            "rtshop",
            python="python3",
            image=IMAGE,
            web_ports=((web_port, 8080),),
            web_environment=("DB_HOST=db",),
        )
        network = f"flux-{tag}-rtshop"
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            await runtime.start(db)
            await runtime.start(web)
            url = f"http://{HOST}:{web_port}/"
            await wait_until_async(
                lambda: get_json(url)[0] == 200, 30, "web answers with what db sent it"
            )
            _, body = get_json(url)
            assert body["db"] == DB_REPLY and body["host"] == "db" and body["port"] == 3306
            assert body["env"] == {"FLUX_DB_HOST": "db"}  # db publishes no port
            members = json.loads(
                docker("network", "inspect", network, "--format", "{{json .Containers}}")
            )
            assert sorted(m["Name"] for m in members.values()) == [
                f"flux-{tag}-db_rtshop",
                f"flux-{tag}-web_rtshop",
            ]
            db_ip = next(m["IPv4Address"] for m in members.values() if "db_" in m["Name"])
            db_ip = db_ip.split("/")[0]
            # on this network only: not on the default bridge, where every app could see it
            nets = docker(
                "inspect", f"flux-{tag}-db_rtshop", "--format", "{{json .NetworkSettings.Networks}}"
            )
            assert list(json.loads(nets)) == [network]

            # another app on the same node: `db` means nothing there, the address is closed
            other_url = f"http://{HOST}:{other_port}/"
            for target in ("db", db_ip):
                other, _ = two_components(
                    "rtother",
                    python="python3",
                    image=IMAGE,
                    web_ports=((other_port, 8080),),
                    web_environment=(f"DB_HOST={target}",),
                )
                await runtime.start(other)
                await wait_until_async(
                    lambda: get_json(other_url)[0] != 0, 30, "the other app answers"
                )
                status, answer = get_json(other_url)
                assert status == 502 and answer["db"].startswith("error"), answer
                await runtime.remove(other.key, keep_data=False)
            names = docker("network", "ls", "--format", "{{.Name}}").split()
            assert f"flux-{tag}-rtother" not in names  # gone with its only container

            # the network goes with the app's last container, not before
            await runtime.remove(web.key, keep_data=False)
            assert docker("network", "ls", "-q", "--filter", f"name=^{network}$") != ""
            await runtime.remove(db.key, keep_data=False)
            assert docker("network", "ls", "-q", "--filter", f"name=^{network}$") == ""
        finally:
            await runtime.close()

    with leased_ports(2) as ports:
        asyncio.run(scenario(*ports))


def test_an_engine_that_does_not_answer_makes_the_runtime_unavailable(tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime = DockerRuntime(f"unix://{tmp_path}/no.sock", "x", HOST, tmp_path)
        try:
            with pytest.raises(RuntimeUnavailableError, match="Docker Engine at"):
                await runtime.check()
            with pytest.raises(RuntimeUnavailableError):
                await runtime.observe()
        finally:
            await runtime.close()

    asyncio.run(scenario())


def test_a_missing_image_fails_that_workload_not_the_runtime(
    tag: str, tmp_path: Path, port: int
) -> None:
    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            with pytest.raises(WorkloadError, match="docker"):
                await runtime.start(replace(web(port), image="no-such/image:0"))
            await runtime.check()
        finally:
            await runtime.close()

    asyncio.run(scenario())


FORK_BOMB = """
import os, sys
forks = 0
try:
    while True:
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "600"])
        forks += 1
except OSError as exc:
    print("forks", forks, exc.errno, flush=True)
os.execv("/bin/sleep", ["sleep", "600"])
"""


def test_a_fork_bomb_is_bounded_by_the_pid_limit(tag: str, tmp_path: Path, port: int) -> None:
    bomb = replace(
        web(port),
        key="bomb_rtapp",
        command=("python3", "-c", FORK_BOMB),
        ram_mb=512,
    )
    name = f"flux-{tag}-{bomb.key}"

    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            await runtime.start(bomb)
            await wait_until_async(
                lambda: "forks" in docker("logs", name), 60, "the bomb's first forks"
            )
            words = docker("logs", name).split()
            forks = int(words[words.index("forks") + 1])
            assert 10 < forks < PIDS_LIMIT, forks
            assert int(docker("inspect", name, "--format", "{{.HostConfig.PidsLimit}}")) == (
                PIDS_LIMIT
            )
            assert (await runtime.observe())[bomb.key].running  # bounded, not crashed
            await runtime.remove(bomb.key, keep_data=False)
        finally:
            await runtime.close()

    asyncio.run(scenario())


FILL_DISK = """
import os, time
for i in range(2):
    fd = os.open(f"fill{i}", os.O_CREAT | os.O_WRONLY)
    try:
        os.posix_fallocate(fd, 0, 600 * 2**20)
    except OSError as exc:
        print("refused", exc.errno, flush=True)
        time.sleep(600)
    os.close(fd)
print("filled", flush=True)
time.sleep(600)
"""


def test_a_writer_past_disk_gb_is_stopped(tag: str, tmp_path: Path, port: int) -> None:
    """Two 600 MiB files in the container's writable layer against a 1 GB spec: where
    the engine has storage quotas the second is refused, elsewhere the agent's watchdog
    stops the container and reports disk_quota_exceeded."""
    writer = replace(web(port), key="fill_rtapp", command=("python3", "-c", FILL_DISK))
    name = f"flux-{tag}-{writer.key}"

    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        agent = Agent("http://127.0.0.1:9", "t", "00" * 33, runtime, tmp_path / "a.json", HOST)
        try:
            await runtime.start(writer)
            await wait_until_async(
                lambda: any(w in docker("logs", name) for w in ("filled", "refused")),
                30,
                "the writer filled its layer or was refused",
            )
            if runtime.storage_quota:
                assert "refused" in docker("logs", name)
                return
            assert "filled" in docker("logs", name)
            desired = {writer.key: writer}
            assert await agent.enforce_disk_quotas(desired) == [writer.key]
            assert await runtime.observe() == {}  # the container is gone
            agent.desired = desired
            (item,) = agent.report_body()["workloads"]
            assert (item["state"], item["reason"]) == ("failed", DISK_QUOTA_EXCEEDED)
        finally:
            await runtime.close()

    asyncio.run(scenario())
