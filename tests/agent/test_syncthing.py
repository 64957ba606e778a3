"""The agents' Syncthing on loopback: a primary's data reaches its standbys, nothing flows
back from a standby, and a device the primary was not told about gets nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fluxchain.agent.process import ProcessRuntime
from fluxchain.agent.syncthing import (
    RECONNECT_S,
    WATCH_DELAY_S,
    Folder,
    Syncthing,
    device_claim_digest,
    folder_id,
    is_device_claim,
)
from fluxchain.agent.volumes import VolumeKeeper
from fluxchain.core.crypto import SigningKey
from tests.agent.test_process_runtime import HOST, workload
from tests.support.wait import wait_until, wait_until_async

pytestmark = pytest.mark.slow
FOLDER = folder_id("kv", "store", "/var/lib/kv")
CHAIN = "fluxchain-test"
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
    """The file holds exactly `text`. Syncthing replaces a file it receives (and moves a
    standby's local change aside), so the file can vanish between two looks: not yet."""

    def holds() -> bool:
        try:
            return path.read_text() == text
        except FileNotFoundError:
            return False

    return holds


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


class _HostsApi:
    """What an agent's VolumeKeeper reads from its own node: the app's instances and their
    nodes (all confirmed), and an HTTP session for the other hosts' `/volumes/device`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        nodes: list[tuple[str, str]],
        apps: dict[str, list[int]] | None = None,
    ) -> None:
        self.session = session
        self.nodes = nodes  # (node key hex, endpoint) by node number
        self.apps = apps or {}  # app -> node number per instance index (default: 0, 1, ...)

    async def chain_id(self) -> str:
        return CHAIN

    async def app(self, name: str) -> dict[str, Any]:
        hosts = self.apps.get(name, list(range(len(self.nodes))))
        return {"instances": [{"index": i, "node_id": f"{n:040x}"} for i, n in enumerate(hosts)]}

    async def node(self, node_id: str) -> dict[str, Any]:
        key, endpoint = self.nodes[int(node_id, 16)]
        return {"node_key": key, "endpoint": endpoint, "status": "confirmed"}


def _device_server(key: SigningKey, st: Syncthing, device_id: str = "") -> TestServer:
    """A host's node publishing its agent's Syncthing device (or `device_id`), signed with
    its node key."""
    device_id = device_id or st.device_id
    digest = device_claim_digest(CHAIN, key.public_key, device_id, st.address)
    claim = {
        "node_key": key.public_key.hex(),
        "device_id": device_id,
        "address": st.address,
        "signature": key.sign(digest).hex(),
    }

    async def device(_request: web.Request) -> web.Response:
        return web.json_response(claim)

    app = web.Application()
    app.router.add_get("/volumes/device", device)
    return TestServer(app, host="127.0.0.1")


def test_a_standby_operator_plants_files_in_the_other_standbys_copies(tmp_path: Path) -> None:
    """Attack: a hosting node operator holding one standby of an app reconfigures its own
    Syncthing (its REST API is the operator's) so that its copy of the folder sends
    (`sendonly`), and writes files into it. The agent shares every host's folder with
    every other host of the app (`VolumeKeeper._configure` gives a standby the same
    `peers` as the primary), and a `receiveonly` folder takes changes from any device it is
    shared with: the honest standby takes the planted files, and the next failover makes
    that poisoned copy the primary's data. Should: a standby's folder is shared with the
    primary's device only (the primary's with every standby), so a standby receives
    nothing but the primary's index."""

    async def scenario() -> None:
        keys = [SigningKey.generate() for _ in range(3)]
        async with AsyncExitStack() as stack:
            primary, honest, liar = await stack.enter_async_context(syncthings(tmp_path, 3))
            servers = [
                _device_server(k, st) for k, st in zip(keys, (primary, honest, liar), strict=True)
            ]
            for server in servers:
                await server.start_server()
                stack.push_async_callback(server.close)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            api: Any = _HostsApi(  # the NodeApi calls VolumeKeeper makes
                session,
                [
                    (k.public_key.hex(), f"127.0.0.1:{s.port}")
                    for k, s in zip(keys, servers, strict=True)
                ],
            )
            # the primary (instance 0) and the liar (instance 2) as the protocol has them
            await primary.set_devices(
                {honest.device_id: honest.address, liar.device_id: liar.address}
            )
            await liar.set_devices(
                {primary.device_id: primary.address, honest.device_id: honest.address}
            )
            src, bad = tmp_path / "primary-kv", tmp_path / "liar-kv"
            await primary.set_folder(Folder(FOLDER, src, True, (honest.device_id, liar.device_id)))
            await liar.set_folder(Folder(FOLDER, bad, False, (primary.device_id, honest.device_id)))
            # the honest standby (instance 1) configured by its agent's own VolumeKeeper
            runtime = ProcessRuntime(tmp_path / "honest-runtime", "127.0.0.1")
            keeper = VolumeKeeper(honest, runtime, keys[1].public_key.hex())
            store = workload(
                31000,
                key="store_kv",
                app="kv",
                component="store",
                instance=1,
                command=("true",),
                volumes=(("/var/lib/kv", "replicated"),),
            )
            assert await keeper.gate(api, {store.key: store}, {}) == {store.key}  # a standby
            good = runtime.volume_path(store.key, "/var/lib/kv")
            (src / "records").write_text("1\n2\n3\n")
            await wait_until_async(has(good / "records", "1\n2\n3\n"), 60, "the honest copy")
            await wait_until_async(has(bad / "records", "1\n2\n3\n"), 60, "the liar's copy")

            # the liar's operator turns its own folder into a sender and plants a file
            await liar.set_folder(Folder(FOLDER, bad, True, (primary.device_id, honest.device_id)))
            (bad / "planted").write_text("the operator's data\n")
            await keeper.gate(api, {store.key: store}, {})  # the honest agent's next pass
            await asyncio.sleep(LEAK_WINDOW_S)
            assert not (src / "planted").exists()  # the primary is sendonly: as documented
            assert not (good / "planted").exists(), "a standby took another standby's file"

    run(scenario)


def _with_wrong_check_digit(device_id: str) -> str:
    """The same form (8 groups of 7 base32 characters), one check character changed."""
    last = device_id[6]
    return device_id[:6] + ("A" if last != "A" else "B") + device_id[7:]


def test_one_hosts_malformed_device_claim_stops_every_apps_volumes_on_its_co_hosts(
    tmp_path: Path,
) -> None:
    """Attack: the operator of a node placed for app `other` has its node sign and publish
    a device id of the right form whose check digit is wrong (`is_device_claim` checks the
    form only). Each co-host of `other` verifies the signature, adds the device with
    every other app's devices in one `set_devices`, Syncthing answers 400, and the whole
    volume pass fails: no folder is configured for any app on that host, a standby of an
    unrelated app `kv` never gets its copy, a new primary of `kv` never pulls (nothing new
    starts while the error stands). Should: a claim Syncthing would refuse is refused
    like any bad claim (check digits verified, Luhn base32 as Syncthing does), and one
    device that Syncthing refuses never stops the other apps' folders."""

    async def scenario() -> None:
        keys = [SigningKey.generate() for _ in range(3)]
        async with AsyncExitStack() as stack:
            primary, me = await stack.enter_async_context(syncthings(tmp_path, 2))
            broken = _with_wrong_check_digit(primary.device_id)
            # the claim is now refused where it is read (check digits verified)
            assert is_device_claim(primary.device_id, primary.address)
            assert not is_device_claim(broken, primary.address)
            servers = [
                _device_server(keys[0], primary),
                _device_server(keys[1], me),
                _device_server(keys[2], primary, device_id=broken),  # the liar's node
            ]
            for server in servers:
                await server.start_server()
                stack.push_async_callback(server.close)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            api: Any = _HostsApi(  # the NodeApi calls VolumeKeeper makes
                session,
                [
                    (k.public_key.hex(), f"127.0.0.1:{s.port}")
                    for k, s in zip(keys, servers, strict=True)
                ],
                apps={"kv": [0, 1], "other": [1, 2]},
            )
            runtime = ProcessRuntime(tmp_path / "me-runtime", "127.0.0.1")
            keeper = VolumeKeeper(me, runtime, keys[1].public_key.hex())
            mounts = (("/var/lib/kv", "replicated"),)
            kv = workload(
                31000, key="store_kv", app="kv", component="store", instance=1, volumes=mounts
            )
            other = workload(
                31001, key="store_other", app="other", component="store", instance=0, volumes=mounts
            )
            await keeper.gate(api, {kv.key: kv, other.key: other}, {})
            assert keeper.error == "", (
                f"one host's claim stopped every app's volumes: {keeper.error}"
            )
            assert FOLDER in await me.folder_ids(), "kv's standby folder was never configured"

    run(scenario)


def test_a_device_syncthing_refuses_never_stops_the_other_devices(tmp_path: Path) -> None:
    """Attack (the second half of the one above): whatever a claim passes on our side,
    Syncthing may still refuse the device (400). Before, one refusal failed the whole
    `set_devices`, so the whole volume pass of every app on the host. Should: that device
    is left out and logged, every other device is added, and the caller learns which
    devices Syncthing knows (a folder is shared with those only)."""

    async def scenario() -> None:
        async with syncthings(tmp_path, 2) as (me, peer):
            broken = _with_wrong_check_digit(peer.device_id)  # what Syncthing refuses
            known = await me.set_devices({broken: peer.address, peer.device_id: peer.address})
            assert known == {peer.device_id}

    run(scenario)


@pytest.mark.parametrize(
    "address",
    [
        "tcp://999.999.999.999:22000",
        "tcp://169.254.169.254:80",
        "tcp://...........:1",
        "tcp://10.0.0.1:99999",
        "tcp://10.0.0.1:0",
        "tcp://0.0.0.0:22000",
        "tcp://224.0.0.1:22000",
    ],
)
def test_a_device_claim_naming_an_address_syncthing_must_not_dial_is_refused(
    address: str,
) -> None:
    """Attack: a host's node signs a device address that is no unicast IPv4 and port (the
    cloud metadata service, a multicast group, garbage): each co-host's Syncthing would
    dial it every RECONNECT_S. Should: such a claim is refused like a malformed one."""
    device = "UEWMZKS-3AFSZAR-BUDEIVC-PNHJ5QJ-STWZNE6-55BCBKD-HFEIXNE-SYFDFAS"  # a real id
    assert is_device_claim(device, "tcp://10.0.0.1:22000")
    assert not is_device_claim(device, address)
