"""The process runtime with real processes: start, limits, crash, adoption, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.agent.process import ProcessRuntime
from fluxchain.agent.runtime import WorkloadError
from fluxchain.agent.workloads import Workload
from fluxchain.node.devnet import free_ports
from tests.agent.test_devnet_agents import answers

HOST = "127.0.0.1"


def workload(port: int, **changes: object) -> Workload:
    base = Workload(
        key="web_app1",
        app="app1",
        instance=2,
        component="web",
        image="ignored-by-this-runtime",
        command=(sys.executable, "-m", "http.server", "--bind", "$HOST", "${PORT}"),
        environment=("GREETING=hi",),
        ports=((port, 8080),),
        data_path="/data",
        cpu_tenths=5,
        ram_mb=256,
        disk_gb=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def pid_of(tmp: Path, key: str) -> int:
    return int(json.loads((tmp / "process" / f"{key}.json").read_text())["pid"])


def ignores_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(x for x in status.splitlines() if x.startswith("SigIgn:")).split()[1], 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def limits_of(pid: int) -> str:
    return Path(f"/proc/{pid}/limits").read_text()


def test_start_limits_crash_adopt_and_remove(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    w = workload(port)

    async def scenario() -> None:
        await runtime.check()
        await runtime.start(w)
        wait_for(lambda: answers(HOST, port))
        seen = await runtime.observe()
        assert seen[w.key].running and seen[w.key].fingerprint == w.fingerprint
        pid = pid_of(tmp_path, w.key)
        assert f"{256 * 1024 * 1024}" in next(
            line for line in limits_of(pid).splitlines() if line.startswith("Max data size")
        )
        assert len(os.sched_getaffinity(pid)) == 1  # 0.5 cpu → one core
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"GREETING=hi" in env and f"PORT={port}".encode() in env
        assert b"FLUX_APP=app1" in env and b"FLUX_PORT_8080=" + str(port).encode() in env
        assert os.getsid(pid) == pid  # its own session: it outlives the agent

        # a restarted agent (a new runtime object) finds the process and does not own it
        adopted = ProcessRuntime(tmp_path / "process", HOST)
        assert (await adopted.observe())[w.key].running

        os.kill(pid, signal.SIGKILL)  # a crash
        deadline = time.monotonic() + 5
        while (await runtime.observe())[w.key].running:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert (await runtime.observe())[w.key].exit_code == -signal.SIGKILL

        await runtime.remove(w.key, keep_data=True)
        assert await runtime.observe() == {}
        assert (tmp_path / "process" / "web_app1").is_dir()  # data kept for the restart

        await adopted.start(w)
        wait_for(lambda: answers(HOST, port))
        await ProcessRuntime(tmp_path / "process", HOST).remove(w.key, keep_data=False)
        assert not answers(HOST, port)
        assert not (tmp_path / "process" / "web_app1").exists()

    asyncio.run(scenario())


def test_a_workload_that_cannot_run_is_refused_with_the_reason(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path / "process", HOST)

    async def scenario() -> None:
        with pytest.raises(WorkloadError, match="needs a command"):
            await runtime.start(workload(31000, command=()))
        with pytest.raises(WorkloadError, match="cannot run '/no/such/binary'"):
            await runtime.start(workload(31000, command=("/no/such/binary",)))
        assert await runtime.observe() == {}

    asyncio.run(scenario())


def test_a_stubborn_process_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    ignore_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(99)"
    )
    w = workload(31000, command=(sys.executable, "-c", ignore_term))

    async def scenario() -> None:
        await runtime.start(w)
        wait_for(lambda: ignores_sigterm(pid_of(tmp_path, w.key)))
        started = time.monotonic()
        await runtime.remove(w.key, keep_data=False)
        assert 4 <= time.monotonic() - started < 10
        assert await runtime.observe() == {}

    asyncio.run(scenario())
