"""Replicated volumes: the agent's Syncthing, and the signed device records agents exchange.

Each agent runs Debian's `syncthing` as its child (its own home under the agent's
directory, a REST API key of its own on 127.0.0.1, the sync protocol on the node's bind
address) and drives it through the REST API. Nothing is discovered: global and local
discovery, relays, NAT traversal and usage reports are off, and the only devices it knows
are the ones the agent adds, each at the address its node published.

One Syncthing folder per replicated volume of an app instance, shared with the devices of
other hosts of that app only, in a star (volumes.shared_devices: the primary's with every
standby, a standby's with the primary only). The primary's folder is `sendonly` (what a standby
changes never comes back), each standby's `receiveonly` (its local changes are never
sent, and are reverted). A new host pulls the data before its component starts: its
folder is in sync once it holds every file of the global index and it has seen at least
one peer's index of that folder (`FolderSync`).

A node publishes its Syncthing device id and address signed with its node key
(`device_claim_digest`, `GET /volumes/device`); an agent adds a device only when that
signature verifies against the node key which confirmed state lists for a node placed for
the same app. A node that is not a host of the app is never added, so no folder is ever
shared with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from fluxchain.core.crypto import tagged_hash

log = logging.getLogger("fluxchain.agent")

SYNCTHING: Final = "syncthing"
TAG_VOLUME_DEVICE: Final = b"fluxchain/volume-device/1"
# Syncthing's device id: 8 groups of 7 base32 characters; without the dashes, 4 chunks
# of 13 characters of the certificate's hash, each followed by its Luhn mod 32 check digit
DEVICE_ID: Final = re.compile(r"[A-Z2-7]{7}(-[A-Z2-7]{7}){7}")
BASE32: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CHECKED_CHUNK: Final = 14  # 13 characters and their check digit
ADDRESS: Final = re.compile(r"tcp://([0-9.]{7,15}):([0-9]{1,5})")
START_TIMEOUT_S: Final = 30.0
# How often a lost peer is dialled again (Syncthing's default, 60 s, would add a minute to
# a failover), and how soon after a write the primary scans and sends it (its minimum).
RECONNECT_S: Final = 2
WATCH_DELAY_S: Final = 1
RESCAN_S: Final = 30  # a full rescan now and then, in case a change escaped the watcher
PR_SET_PDEATHSIG: Final = 1
INDEX_GRACE_S: Final = 3.0


class SyncthingError(Exception):
    """Syncthing cannot be started or refused a request (the agent retries next pass)."""


def device_claim_digest(chain_id: str, node_key: bytes, device_id: str, address: str) -> bytes:
    """What a node signs to publish its Syncthing device: the device id and address, bound to
    its node key and the chain, so a record is worth nothing for another node or chain."""
    payload = b"\n".join([node_key, device_id.encode(), address.encode()])
    return tagged_hash(TAG_VOLUME_DEVICE, chain_id, payload)


def luhn_base32(chunk: str) -> str:
    """The check digit Syncthing appends to each 13-character chunk of a device id: Luhn
    over base32 digits, the factor alternating 1, 2 from the chunk's first character."""
    factor, total = 1, 0
    for char in chunk:
        addend = factor * BASE32.index(char)
        factor = 3 - factor
        total += addend // len(BASE32) + addend % len(BASE32)
    return BASE32[-total % len(BASE32)]


def is_device_id(device_id: str) -> bool:
    """Whether `device_id` is one Syncthing accepts: its form and its four check digits
    (a claim it would refuse must never reach its configuration)."""
    if not DEVICE_ID.fullmatch(device_id):
        return False
    digits = device_id.replace("-", "")
    chunks = [digits[i : i + CHECKED_CHUNK] for i in range(0, len(digits), CHECKED_CHUNK)]
    return all(luhn_base32(chunk[:-1]) == chunk[-1] for chunk in chunks)


def is_device_address(address: str) -> bool:
    """Whether `address` is `tcp://` a unicast IPv4 and a port: Syncthing dials it every
    RECONNECT_S, so never a link-local (cloud metadata), multicast or unspecified one."""
    match = ADDRESS.fullmatch(address)
    if match is None:
        return False
    try:
        ip = ipaddress.IPv4Address(match.group(1))
    except ValueError:
        return False
    port = int(match.group(2))
    unusable = ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved
    return 0 < port < 65536 and not unusable and ip != ipaddress.IPv4Address("255.255.255.255")


def is_device_claim(device_id: str, address: str) -> bool:
    """Whether a published device id and address are ones Syncthing accepts and may dial."""
    return is_device_id(device_id) and is_device_address(address)


def folder_id(app: str, component: str, mount: str) -> str:
    """The folder's id, the same on every host of the app (names are DNS labels; the mount
    is hashed, as it may hold any path character)."""
    digest = hashlib.sha256(mount.encode()).hexdigest()[:12]
    return f"{app}.{component}.{digest}"


@dataclass(frozen=True, slots=True)
class Folder:
    """One replicated volume on this host: shared with `devices`, sending or receiving."""

    id: str
    path: Path
    primary: bool
    devices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FolderSync:
    """How far this host's copy of a folder is: `in_sync` once it has every file of the
    global index and knows at least one peer's index (so the global index is not merely
    its own; Syncthing reports an idle folder with nothing needed before any index came)."""

    state: str
    need_items: int
    global_bytes: int
    peers_known: int
    local_changes: int = 0  # files a standby changed in its copy (never sent, reverted)

    @property
    def in_sync(self) -> bool:
        return self.state == "idle" and self.need_items == 0 and self.peers_known > 0


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: Syncthing is killed when the agent dies, so
    # a restarted agent never meets a stale one holding the database lock.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def resolve_ipv4(host: str) -> str:
    """`host` as the IPv4 address Syncthing listens on and publishes (a published address
    is an IP: peers dial it without a resolver of this node's network). A name resolves
    once, at the agent's start: in a compose network, an agent's service name is its
    container's address there (OSError when it does not resolve)."""
    return socket.gethostbyname(host)


def free_port(host: str) -> int:
    """A TCP port free on `host` now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Syncthing:
    """The agent's Syncthing: started once, then configured to the folders it should hold."""

    def __init__(self, home: Path, bind: str, binary: str = SYNCTHING) -> None:
        self.home, self.bind, self.binary = home, bind, binary
        self.api_key = ""
        self.device_id = ""
        self.address = ""
        self._gui = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._connected_since: dict[str, float] = {}  # peer device -> first seen connected

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Generate its keys on first use, run it, and set the options (no discovery)."""
        if shutil.which(self.binary) is None:
            raise SyncthingError(f"{self.binary!r} is not installed (make syncthing)")
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.home / "cert.pem").exists():
            await self._run_once("generate", f"--home={self.home}", "--no-default-folder")
        self.api_key = secrets.token_urlsafe(24)
        sync_port = free_port(self.bind)
        self._gui = f"127.0.0.1:{free_port('127.0.0.1')}"
        self.address = f"tcp://{self.bind}:{sync_port}"
        # The API key goes by the environment, never argv: /proc/<pid>/cmdline is readable
        # by every local user, environ only by the agent's own user (which process-runtime
        # workloads run as: that runtime is for the operator's own apps); with the key, the
        # REST API shares any path of the node.
        env = {
            **os.environ,
            "STNODEFAULTFOLDER": "1",
            "STNOUPGRADE": "1",
            "STNORESTART": "1",
            "STGUIAPIKEY": self.api_key,
        }
        log_file = (self.home / "syncthing.log").open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                "serve",
                f"--home={self.home}",
                "--no-browser",
                "--no-restart",
                "--no-upgrade",
                "--skip-port-probing",
                f"--gui-address=http://{self._gui}",
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )
        finally:
            log_file.close()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10), headers={"X-API-Key": self.api_key}
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            try:
                status = await self._call("GET", "/rest/system/status")
                break
            except SyncthingError:
                if not self.running or loop.time() > deadline:
                    await self.close()
                    raise SyncthingError(
                        "syncthing did not answer; see its syncthing.log"
                    ) from None
                await asyncio.sleep(0.2)
        self.device_id = str(status["myID"])
        await self._call(
            "PATCH",
            "/rest/config/options",
            {
                "listenAddresses": [self.address],
                "globalAnnounceEnabled": False,
                "localAnnounceEnabled": False,
                "relaysEnabled": False,
                "natEnabled": False,
                "urAccepted": -1,
                "crashReportingEnabled": False,
                "autoUpgradeIntervalH": 0,
                "startBrowser": False,
                "reconnectionIntervalS": RECONNECT_S,
            },
        )
        log.info("syncthing started device=%s address=%s", self.device_id[:7], self.address)

    async def _run_once(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.binary, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise SyncthingError(f"syncthing {args[0]}: {err.decode(errors='replace')[-300:]}")

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            raise SyncthingError("syncthing is not started")
        try:
            async with self._session.request(
                method, f"http://{self._gui}{path}", json=body
            ) as response:
                text = await response.text()
                if response.status >= 300:
                    raise SyncthingError(f"{method} {path}: {response.status} {text[:200]}")
                return None if not text.strip() else await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise SyncthingError(f"{method} {path}: {exc}") from None

    async def set_devices(self, devices: dict[str, str]) -> set[str]:
        """Know exactly these devices (id -> address), and no other; return the ones it
        knows now. A device Syncthing refuses is left out (and logged), never the others:
        one host's bad claim must not stop the volumes of the apps it does not host."""
        known = set()
        current = {d["deviceID"]: d for d in await self._call("GET", "/rest/config/devices")}
        for device_id in sorted(set(current) - set(devices) - {self.device_id}):
            await self._call("DELETE", f"/rest/config/devices/{device_id}")
        for device_id, address in sorted(devices.items()):
            if device_id == self.device_id:
                continue
            have = current.get(device_id)
            if have is not None and have.get("addresses") == [address]:
                known.add(device_id)
                continue
            try:
                await self._call(
                    "PUT",
                    f"/rest/config/devices/{device_id}",
                    {
                        "deviceID": device_id,
                        "name": device_id[:7],
                        "addresses": [address],
                        "autoAcceptFolders": False,
                        "introducer": False,
                    },
                )
            except SyncthingError as exc:
                log.warning("volume device=%s refused by syncthing: %s", device_id[:7], exc)
                continue
            known.add(device_id)
        return known

    async def folder_ids(self) -> set[str]:
        return {f["id"] for f in await self._call("GET", "/rest/config/folders")}

    async def set_folder(self, folder: Folder) -> None:
        """Create or change a folder: sendonly on the primary, receiveonly on a standby."""
        folder.path.mkdir(parents=True, exist_ok=True)
        wanted = "sendonly" if folder.primary else "receiveonly"
        devices = sorted({*folder.devices, self.device_id})
        with contextlib.suppress(SyncthingError):
            have = await self._call("GET", f"/rest/config/folders/{folder.id}")
            if (
                have.get("type") == wanted
                and have.get("path") == str(folder.path)
                and sorted(d["deviceID"] for d in have.get("devices", [])) == devices
            ):
                return
        await self._call(
            "PUT",
            f"/rest/config/folders/{folder.id}",
            {
                "id": folder.id,
                "label": folder.id,
                "path": str(folder.path),
                "type": wanted,
                "devices": [{"deviceID": d} for d in devices],
                "fsWatcherEnabled": True,
                "fsWatcherDelayS": WATCH_DELAY_S,
                "rescanIntervalS": RESCAN_S,
                "maxConflicts": 0,
                "ignorePerms": False,
            },
        )
        if not folder.primary:
            # whatever this host changed in its copy goes back to the primary's version
            with contextlib.suppress(SyncthingError):
                await self._call("POST", f"/rest/db/revert?folder={folder.id}")
        log.info("volume folder=%s %s path=%s", folder.id, wanted, folder.path)

    async def remove_folder(self, folder: str) -> None:
        await self._call("DELETE", f"/rest/config/folders/{folder}")

    async def sync_status(self, folder: str, peers: tuple[str, ...]) -> FolderSync:
        """How far this host's copy of `folder` is (see FolderSync)."""
        status = await self._call("GET", f"/rest/db/status?folder={folder}")
        connections = (await self._call("GET", "/rest/system/connections"))["connections"]
        known = 0
        now = asyncio.get_running_loop().time()
        for peer in peers:
            if peer == self.device_id or not connections.get(peer, {}).get("connected"):
                self._connected_since.pop(peer, None)
                continue
            since = self._connected_since.setdefault(peer, now)
            completion = await self._call(
                "GET", f"/rest/db/completion?folder={folder}&device={peer}"
            )
            # Its index of the folder has arrived once it names a sequence; an empty folder
            # has none, so a peer connected for INDEX_GRACE_S counts too (the index is the
            # first thing a connection carries).
            if int(completion.get("sequence", 0)) > 0 or now - since >= INDEX_GRACE_S:
                known += 1
        return FolderSync(
            state=str(status.get("state", "")),
            need_items=int(status.get("needTotalItems", 0)),
            global_bytes=int(status.get("globalBytes", 0)),
            peers_known=known,
            local_changes=int(status.get("receiveOnlyChangedFiles", 0)),
        )

    async def close(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and close the API session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            # under load it may have exited just as the wait gave up: then nothing to kill
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
