"""The process runtime with real processes: start, limits, crash, adoption, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fluxchain.agent.agent import DISK_QUOTA_EXCEEDED, Agent
from fluxchain.agent.process import PIDS_LIMIT, ProcessRuntime
from fluxchain.agent.runtime import WorkloadError
from fluxchain.agent.workloads import PublishedPort, Workload
from fluxchain.core.appspec import Protocol
from fluxchain.node.agent_link import scrub
from tests.agent.component_app import DB_REPLY, two_components
from tests.agent.test_devnet_agents import answers
from tests.support.ports import lease_ports
from tests.support.wait import wait_until, wait_until_async

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
        ports=(PublishedPort(port, 8080, Protocol.TCP),),
        data_path="/data",
        cpu_tenths=5,
        ram_mb=256,
        disk_gb=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def pid_of(tmp: Path, key: str) -> int:
    return int(json.loads((tmp / "process" / f"{key}.json").read_text())["pid"])


def environment_of(pid: int) -> list[bytes]:
    """The process's environment. Popen returns once exec has begun, but the kernel sets
    the new image's environment a moment later (until then the file reads empty), so
    this waits for it."""
    found: list[bytes] = []

    def readable() -> bool:
        found[:] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        return found != [b""]

    wait_until(readable, 10, f"process {pid}'s environment", poll_s=0.01)
    return found


def ignores_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(x for x in status.splitlines() if x.startswith("SigIgn:")).split()[1], 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


async def exited(runtime: ProcessRuntime, key: str) -> bool:
    return not (await runtime.observe())[key].running


def limits_of(pid: int) -> str:
    return Path(f"/proc/{pid}/limits").read_text()


def limit_of(pid: int, name: str) -> str:
    """The soft value of one limit in /proc/PID/limits."""
    line = next(x for x in limits_of(pid).splitlines() if x.startswith(name))
    return line[len(name) :].split()[0]


def test_start_limits_crash_adopt_and_remove(tmp_path: Path) -> None:
    lease = lease_ports(1)  # the workload binds it; no other test is given it meanwhile
    port = lease.ports[0]
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    w = workload(port)

    async def scenario() -> None:
        await runtime.check()
        await runtime.start(w)
        wait_until(lambda: answers(HOST, port), 10, f"the workload answers on {HOST}:{port}")
        seen = await runtime.observe()
        assert seen[w.key].running and seen[w.key].fingerprint == w.fingerprint
        pid = pid_of(tmp_path, w.key)
        assert f"{256 * 1024 * 1024}" in next(
            line for line in limits_of(pid).splitlines() if line.startswith("Max data size")
        )
        assert len(os.sched_getaffinity(pid)) == 1  # 0.5 cpu → one core
        assert limit_of(pid, "Max file size") == str(1024**3)  # disk_gb: 1
        assert limit_of(pid, "Max core file size") == "0"
        if os.geteuid() != 0:  # the kernel exempts root from RLIMIT_NPROC; none is set
            assert int(limit_of(pid, "Max processes")) >= PIDS_LIMIT
        env = environment_of(pid)
        assert b"GREETING=hi" in env and f"PORT={port}".encode() in env
        assert b"FLUX_APP=app1" in env and b"FLUX_PORT_8080=" + str(port).encode() in env
        assert os.getsid(pid) == pid  # its own session: it outlives the agent

        # a restarted agent (a new runtime object) finds the process and does not own it
        adopted = ProcessRuntime(tmp_path / "process", HOST)
        assert (await adopted.observe())[w.key].running

        os.kill(pid, signal.SIGKILL)  # a crash
        await wait_until_async(partial(exited, runtime, w.key), 5, "the runtime sees the crash")
        assert (await runtime.observe())[w.key].exit_code == -signal.SIGKILL

        await runtime.remove(w.key, keep_data=True)
        assert await runtime.observe() == {}
        assert (tmp_path / "process" / "web_app1").is_dir()  # data kept for the restart

        await adopted.start(w)
        wait_until(lambda: answers(HOST, port), 10, f"the workload answers on {HOST}:{port}")
        await ProcessRuntime(tmp_path / "process", HOST).remove(w.key, keep_data=False)
        assert not answers(HOST, port)
        assert not (tmp_path / "process" / "web_app1").exists()

    try:
        asyncio.run(scenario())
    finally:
        lease.release()


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
        wait_until(
            lambda: ignores_sigterm(pid_of(tmp_path, w.key)), 10, "the workload ignores SIGTERM"
        )
        started = time.monotonic()
        await runtime.remove(w.key, keep_data=False)
        assert 4 <= time.monotonic() - started < 10
        assert await runtime.observe() == {}

    asyncio.run(scenario())


# Allocates real blocks (no data written, so it is quick) in files of 600 MiB: each file
# is under RLIMIT_FSIZE (disk_gb), together they are over the quota.
FILL_DISK = """
import os, sys, time
while not os.path.exists("go"):  # the test says when: first it checks an empty quota
    time.sleep(0.01)
for i in range(int(sys.argv[1])):
    fd = os.open(f"fill{i}", os.O_CREAT | os.O_WRONLY)
    os.posix_fallocate(fd, 0, int(sys.argv[2]) * 2**20)
    os.close(fd)
print("filled", flush=True)
time.sleep(60)
"""


def test_a_component_writing_past_its_disk_quota_is_stopped_with_the_reason(
    tmp_path: Path,
) -> None:
    """disk_gb is enforced: the watchdog stops the writer, keeps its data, holds it
    stopped (also across an agent restart) and reports disk_quota_exceeded, until the
    app's spec changes."""
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    w = workload(31000, command=(sys.executable, "-c", FILL_DISK, "2", "600"), disk_gb=1)
    state = tmp_path / "agent.json"
    agent = Agent("http://127.0.0.1:9", "token", "00" * 33, runtime, state, HOST)
    data = tmp_path / "process" / w.key

    async def scenario() -> None:
        await runtime.start(w)
        pid = pid_of(tmp_path, w.key)
        desired = {w.key: w}
        assert await agent.enforce_disk_quotas(desired) == []  # nothing written yet
        (data / "go").touch()

        async def stopped_writer() -> bool:
            return bool(await agent.enforce_disk_quotas(desired))

        await wait_until_async(stopped_writer, 20, "the writer stopped", poll_s=0.1)
        assert await runtime.observe() == {}  # stopped and forgotten by the runtime
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, "the process gone")
        assert (data / "fill0").exists() and (data / "fill1").exists()  # data kept
        agent.desired = desired
        (item,) = agent.report_body()["workloads"]
        assert (item["state"], item["reason"]) == ("failed", DISK_QUOTA_EXCEEDED)
        assert "over the spec's 1 GB" in item["message"]

        # A restarted agent still holds it; the spec unchanged, it stays held.
        again = Agent("http://127.0.0.1:9", "token", "00" * 33, runtime, state, HOST)
        assert list(again.held) == [w.key]
        await again.release_holds(desired)
        assert list(again.held) == [w.key]
        # The owner gives it more disk: the hold is released, the data is still there.
        await again.release_holds({w.key: replace(w, disk_gb=2)})
        assert again.held == {}
        assert (data / "fill0").exists()
        # Unassigned while held: the data goes.
        again.held[w.key] = (w.fingerprint, "held")
        await again.release_holds({})
        assert not data.exists()

    asyncio.run(scenario())


def test_a_single_file_past_the_quota_is_refused_by_the_file_size_limit(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    w = workload(31000, command=(sys.executable, "-c", FILL_DISK, "1", "1100"), disk_gb=1)

    async def scenario() -> None:
        await runtime.start(w)
        (tmp_path / "process" / w.key / "go").touch()
        await wait_until_async(partial(exited, runtime, w.key), 10, "the writer exited")
        assert (await runtime.observe())[w.key].exit_code == 1  # EFBIG, not written
        log = (tmp_path / "process" / f"{w.key}.log").read_text()
        assert "File too large" in log and "filled" not in log
        await runtime.remove(w.key, keep_data=False)

    asyncio.run(scenario())


def fetch_json(url: str) -> tuple[int, Any]:
    """(status, JSON body) of a GET, or (0, None) while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except (urllib.error.URLError, OSError):
        return 0, None


def test_components_of_an_app_reach_each_other_through_their_flux_variables(
    tmp_path: Path,
) -> None:
    lease = lease_ports(2)
    web_port, db_port = lease.ports
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    web, db = two_components("shop", web_ports=((web_port, 8080),), db_ports=((db_port, 3306),))

    async def scenario() -> None:
        await runtime.start(db)
        await runtime.start(web)
        env = environment_of(pid_of(tmp_path, web.key))
        for variable in (
            f"FLUX_DB_HOST={HOST}",
            f"FLUX_DB_PORT={db_port}",
            f"FLUX_DB_ADDR={HOST}:{db_port}",
            f"FLUX_DB_PORT_3306={db_port}",
            f"FLUX_WEB_ADDR={HOST}:{web_port}",  # itself too: one list for every component
        ):
            assert variable.encode() in env, variable
        # the web component reads from the db component at the address it was given
        wait_until(
            lambda: fetch_json(f"http://{HOST}:{web_port}/")[0] == 200,
            10,
            "web answers with what db sent it",
        )
        _, body = fetch_json(f"http://{HOST}:{web_port}/")
        assert body["db"] == DB_REPLY and (body["host"], body["port"]) == (HOST, db_port)
        for w in (web, db):
            await runtime.remove(w.key, keep_data=False)

    try:
        asyncio.run(scenario())
    finally:
        lease.release()


SECRET = "hunter2-correct-horse"


def files_holding(directory: Path, text: str) -> list[str]:
    needle = text.encode()
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    )


def test_a_secret_expanded_in_a_process_command_is_written_to_the_workload_record(
    tmp_path: Path,
) -> None:
    """An owner seals DB_PASSWORD and, as docs/apps.md invites for any variable, passes it
    in the component's command (`--password=$DB_PASSWORD`). The process runtime expands
    the command with the secret environment and writes the expanded argv into its
    workload record (`<key>.json`, kept on disk for adoption), so the plaintext lands in a
    file under the agent's directory, though the secret values are to be "never stored"
    (workloads.py) and live "in the hosting agent's memory" only (core/sealing.py).
    Should: no file the runtime writes holds the value."""
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    sleeper = (sys.executable, "-c", "import time; time.sleep(60)", "--password=$DB_PASSWORD")
    w = replace(workload(31000, command=sleeper), secret_env=(("DB_PASSWORD", SECRET),))

    async def scenario() -> None:
        await runtime.start(w)
        try:
            assert files_holding(tmp_path, SECRET) == []
        finally:
            await runtime.remove(w.key, keep_data=False)

    asyncio.run(scenario())


def test_a_secret_in_a_failing_command_reaches_the_public_agent_report(tmp_path: Path) -> None:
    """A component's command names a sealed variable as its program (`$DB_PASSWORD`, or
    one that does not exist after expansion). The process runtime refuses it with
    `cannot run '<expanded argv[0]>'`: the agent keeps that message as the workload's
    start error, reports it to its node, and the node serves it to anyone on `GET /agent`
    and `GET /agent/apps/{name}` (and so on every node's `/apps/{name}` and the
    dashboard); `scrub` removes host paths only. Should: the plaintext of a secret is in
    no error message the agent reports."""
    runtime = ProcessRuntime(tmp_path / "process", HOST)
    w = replace(workload(31000, command=("$DB_PASSWORD",)), secret_env=(("DB_PASSWORD", SECRET),))

    async def scenario() -> None:
        with pytest.raises(WorkloadError) as info:
            await runtime.start(w)
        public = scrub(str(info.value))  # what GET /agent would serve
        assert SECRET not in public, f"the public report says: {public}"

    asyncio.run(scenario())
