"""Review of issue 21 (secrets, replicated volumes) on the agent's side: where plaintext
or a credential reaches bytes other local users or the public can read. Each test fails
against the code as built and passes once the leak is closed."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.agent.process import ProcessRuntime
from fluxchain.agent.runtime import WorkloadError
from fluxchain.agent.syncthing import Syncthing
from fluxchain.node.agent_link import scrub
from tests.agent.test_process_runtime import HOST, workload
from tests.support.wait import wait_until

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


def test_the_syncthing_api_key_is_not_on_its_command_line(tmp_path: Path) -> None:
    """The agent starts Syncthing with `--gui-apikey=<key>` on its command line, and any
    local user (or a process-runtime workload, which runs on the same machine) reads it
    from the world-readable /proc/<pid>/cmdline. With it, the REST API on 127.0.0.1
    accepts any configuration: share a folder at any path of the node (its home, its
    node key) with a device of the reader's choosing. Should: the key reaches Syncthing
    another way (its STGUIAPIKEY environment variable, or its config file), never argv."""

    async def scenario() -> None:
        st = Syncthing(tmp_path / "st", HOST)
        await st.start()
        try:
            assert st._proc is not None
            cmdline = Path(f"/proc/{st._proc.pid}/cmdline")
            wait_until(cmdline.exists, 5, "syncthing's /proc entry")
            assert st.api_key, "the agent set an API key"
            assert st.api_key.encode() not in cmdline.read_bytes()
        finally:
            await st.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
