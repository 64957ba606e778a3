"""The agents' Syncthing on loopback: a primary's data reaches its standbys, nothing flows
back from a standby, and a device the primary was not told about gets nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from fluxchain.agent.syncthing import (
    RECONNECT_S,
    WATCH_DELAY_S,
    Folder,
    Syncthing,
    folder_id,
)
from tests.agent.test_process_runtime import HOST
from tests.support.wait import wait_until, wait_until_async

pytestmark = pytest.mark.slow
FOLDER = folder_id("kv", "store", "/var/lib/kv")
# Nothing must arrive: watched this long after what did arrive (three watcher delays and a
# reconnection interval, the time a leak would take to show).
LEAK_WINDOW_S = 3 * WATCH_DELAY_S + RECONNECT_S


@asynccontextmanager
async def syncthings(tmp: Path, count: int) -> AsyncIterator[list[Syncthing]]:
    """`count` Syncthings on 127.0.0.1, each in its own home; all stopped afterwards."""
    async with AsyncExitStack() as stack:
        started = []
        for i in range(count):
            st = Syncthing(tmp / f"st{i}", "127.0.0.1")
            stack.push_async_callback(st.close)
            started.append(st)
        await asyncio.gather(*(st.start() for st in started))
        yield started
    for st in started:
        assert not st.running


def has(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.is_file() and path.read_text() == text


async def pair(a: Syncthing, b: Syncthing) -> None:
    await a.set_devices({b.device_id: b.address})
    await b.set_devices({a.device_id: a.address})


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_primary_data_reaches_standby_and_a_standby_cannot_push_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with syncthings(tmp_path, 2) as (primary, standby):
            await pair(primary, standby)
            src, dst = tmp_path / "primary-kv", tmp_path / "standby-kv"
            await primary.set_folder(Folder(FOLDER, src, True, (standby.device_id,)))
            await standby.set_folder(Folder(FOLDER, dst, False, (primary.device_id,)))
            (src / "records").write_text("1\n2\n3\n")
            await wait_until_async(has(dst / "records", "1\n2\n3\n"), 60, "the standby's copy")

            async def in_sync() -> bool:
                # the file lands a moment before Syncthing's own status says so
                return (await standby.sync_status(FOLDER, (primary.device_id,))).in_sync

            await wait_until_async(in_sync, 30, "the standby's status to say it is in sync")

            # the standby writes into its copy: the primary's data is not touched
            (dst / "records").write_text("overwritten by a standby\n")
            (dst / "planted").write_text("x")

            async def scanned() -> bool:
                status = await standby.sync_status(FOLDER, (primary.device_id,))
                return status.local_changes > 0

            await wait_until_async(scanned, 60, "the standby's scan of its own changes")
            (src / "records").write_text("1\n2\n3\n4\n")
            await wait_until_async(has(dst / "records", "1\n2\n3\n4\n"), 60, "the next record")
            await asyncio.sleep(LEAK_WINDOW_S)
            assert (src / "records").read_text() == "1\n2\n3\n4\n"
            assert not (src / "planted").exists()

    run(scenario)


def test_a_node_claiming_to_be_a_replica_gets_no_data(tmp_path: Path) -> None:
    """The rogue knows the primary's device id and address and the folder id, and shares a
    folder of that id with it; the primary was never given the rogue's device."""

    async def scenario() -> None:
        async with syncthings(tmp_path, 3) as (primary, standby, rogue):
            await pair(primary, standby)
            await rogue.set_devices({primary.device_id: primary.address})
            src = tmp_path / "primary-kv"
            await primary.set_folder(Folder(FOLDER, src, True, (standby.device_id,)))
            await standby.set_folder(
                Folder(FOLDER, tmp_path / "standby-kv", False, (primary.device_id,))
            )
            stolen = tmp_path / "rogue-kv"
            await rogue.set_folder(Folder(FOLDER, stolen, False, (primary.device_id,)))
            (src / "secret").write_text("the app's data")
            standby_copy = tmp_path / "standby-kv" / "secret"
            await wait_until_async(has(standby_copy, "the app's data"), 60, "the standby's copy")
            await asyncio.sleep(LEAK_WINDOW_S)
            assert not (stolen / "secret").exists()
            status = await rogue.sync_status(FOLDER, (primary.device_id,))
            assert status.peers_known == 0  # it was never even connected

    run(scenario)


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
