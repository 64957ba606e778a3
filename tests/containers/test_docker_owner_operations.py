"""The owner's operations on the Docker runtime, against a real engine: the agent reads a
container's log (tail, then follow), its stats, restarts it, and a redeploy whose pull
fails leaves it running. Run by `make test-containers` (it builds the image used)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxchain.agent.agent import Agent
from fluxchain.agent.docker import LABEL, DockerRuntime
from fluxchain.agent.workloads import Workload
from tests.support.wait import wait_until_async

IMAGE = os.environ.get("FLUX_E2E_IMAGE", "fluxchain:e2e")
URL = "unix:///var/run/docker.sock"
# Prints a numbered line every 0.2 s: each start begins again at `line 0`.
COUNTER = "import time\nfor i in range(100000):\n print('line', i, flush=True)\n time.sleep(0.2)"


@pytest.fixture
def tag() -> Iterator[str]:
    """A node tag of this test's own; its containers are removed afterwards."""
    name = f"ops{os.getpid()}"
    try:
        yield name
    finally:
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL}.node={name}"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], check=True, timeout=60)


def counter() -> Workload:
    return Workload(
        key="web_opsapp",
        app="opsapp",
        instance=0,
        component="web",
        image=IMAGE,
        command=("python3", "-u", "-c", COUNTER),
        environment=(),
        ports=(),
        data_path="/data",
        cpu_tenths=5,
        ram_mb=256,
        disk_gb=1,
    )


def test_logs_stats_restart_and_a_failed_redeploy_on_docker(tag: str, tmp_path: Path) -> None:
    runtime = DockerRuntime(URL, tag, "127.0.0.1", tmp_path)
    agent = Agent("http://127.0.0.1:1", "t", "key", runtime, tmp_path / "state.json", "127.0.0.1")
    workload = counter()
    agent.desired = {workload.key: workload}
    base = {"app": "opsapp", "instances": [0], "tail": 0, "follow": False}

    async def run(**command: Any) -> list[dict[str, Any]]:
        return [item async for item in agent.operate({**base, **command})]

    async def logs_until(done: Callable[[str], bool], what: str, tail: int) -> str:
        """The log (its last `tail` lines) once `done` holds of it."""
        seen = [""]

        async def check() -> bool:
            seen[0] = "".join(i["data"] for i in await run(method="logs", tail=tail))
            return done(seen[0])

        await wait_until_async(check, 20, what)
        return seen[0]

    async def scenario() -> None:
        try:
            await runtime.start(workload)
            assert "line 3" in await logs_until(lambda log: "line 3" in log, "line 3 logged", 100)
            followed: list[str] = []
            async with asyncio.timeout(20):
                async for item in agent.operate({**base, "method": "logs", "follow": True}):
                    followed.append(item["data"])
                    if len(followed) == 2:
                        break
            numbers = [int(line.split()[1]) for line in "".join(followed).splitlines()]
            assert numbers == sorted(numbers) and numbers[0] > 3  # new lines only, in order
            (stats,) = await run(method="stats")
            assert stats["running"] and stats["memory_bytes"] > 0
            (restarted,) = await run(method="restart")
            assert restarted["done"] == "restart" and agent.owner_restarts[workload.key] == 1
            # the log is kept and the new process counts from 0 again after the old lines
            seen = await logs_until(
                lambda log: log.count("line 0\n") == 2, "a second start", 10_000
            )
            assert seen.index("line 0\n") < seen.rindex("line 0\n")
            (redeploy,) = await run(method="redeploy")  # fluxchain:e2e is in no registry
            assert redeploy["error"]["reason"] == "not_restarted"
            (stats,) = await run(method="stats")
            assert stats["running"]
        finally:
            await runtime.remove(workload.key, keep_data=False)
            await runtime.close()

    asyncio.run(scenario())
