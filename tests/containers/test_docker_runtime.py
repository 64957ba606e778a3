"""The agent's Docker runtime against a real engine: limits, ports, labels, crash,
adoption by a restarted agent, update, removal with the data volume. Run by
`make test-containers` (scripts/test-containers.sh builds the image it uses)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.agent.docker import LABEL, DockerRuntime
from fluxchain.agent.runtime import RuntimeUnavailableError, WorkloadError
from fluxchain.agent.workloads import Workload
from fluxchain.node.devnet import free_ports
from tests.agent.test_devnet_agents import answers

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


def web(port: int) -> Workload:
    return Workload(
        key="web_rtapp",
        app="rtapp",
        instance=1,
        component="web",
        image=IMAGE,
        command=("python3", "-m", "http.server", "--bind", "$HOST", "$PORT"),
        environment=("GREETING=hi",),
        ports=((port, 8080),),
        data_path="/data",
        cpu_tenths=5,
        ram_mb=256,
        disk_gb=1,
    )


async def until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def test_docker_runtime_end_to_end(tag: str, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    w = web(port)
    name = f"flux-{tag}-{w.key}"

    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            await runtime.check()
            capacity = await runtime.capacity()
            assert capacity.cores >= 1 and capacity.ram_mb > 0
            await runtime.start(w)
            await until(lambda: answers(HOST, port))
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

            # a restarted agent finds its container by label
            again = DockerRuntime(URL, tag, HOST, tmp_path)
            seen = await again.observe()
            assert list(seen) == [w.key] and seen[w.key].running
            stranger = DockerRuntime(URL, "someone-else", HOST, tmp_path)
            assert await stranger.observe() == {}
            await stranger.close()
            await again.close()

            docker("kill", name)  # a crash
            deadline = time.monotonic() + 20
            while (await runtime.observe())[w.key].running:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)

            # replaced (an update, or a restart after a crash) keeps the data volume
            await runtime.remove(w.key, keep_data=True)
            assert docker("volume", "ls", "-q", "--filter", f"name={name}") == name
            await runtime.start(replace(w, environment=("GREETING=updated",)))
            await until(lambda: answers(HOST, port))
            await runtime.remove(w.key, keep_data=False)
            assert await runtime.observe() == {}
            assert not answers(HOST, port)
            assert docker("volume", "ls", "-q", "--filter", f"name={name}") == ""
        finally:
            await runtime.close()

    asyncio.run(scenario())


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


def test_a_missing_image_fails_that_workload_not_the_runtime(tag: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            with pytest.raises(WorkloadError, match="docker"):
                await runtime.start(replace(web(free_ports(1)[0]), image="no-such/image:0"))
            await runtime.check()
        finally:
            await runtime.close()

    asyncio.run(scenario())
