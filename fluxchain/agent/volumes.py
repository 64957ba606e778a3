"""Replicated volumes on this node: which host is an app's primary, whose Syncthing device
to trust, and which workloads must wait (docs/apps.md, "Volumes").

- The primary is chosen from confirmed state alone, so every agent agrees on it: the
  lowest instance index whose node is confirmed (`primary_index`). When its node goes
  down the chain moves that instance; the new host is primary.
- An app instance with a replicated volume (in any of its components) runs on the
  primary only, all its components together. A standby keeps a `receiveonly` copy and
  its workloads are held (reported `standby`).
- A primary whose copy was never seen in sync on this agent first pulls: its folder stays
  `receiveonly` until it holds the global index of at least one peer (or PULL_DEADLINE_S
  passes: no peer is reachable, the data is lost anyway); then it switches to `sendonly`
  and its component starts.
- Devices: each host's node publishes its agent's Syncthing device signed with its node
  key (`GET /volumes/device`); a device is added only when that signature verifies against
  the key confirmed state gives for a confirmed node placed for the same app.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from fluxchain.agent.runtime import Runtime, WorkloadError
from fluxchain.agent.syncthing import (
    Folder,
    Syncthing,
    SyncthingError,
    device_claim_digest,
    folder_id,
    is_device_claim,
)
from fluxchain.agent.workloads import Observed, Workload
from fluxchain.core.crypto import verify

if TYPE_CHECKING:
    from fluxchain.agent.agent import NodeApi

log = logging.getLogger("fluxchain.agent")

# How long a new primary waits for its copy to be in sync before it starts anyway.
PULL_DEADLINE_S: Final = 60.0
CONFIRMED: Final = "confirmed"
PEER_TIMEOUT_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class Host:
    """One instance of an app as confirmed state places it."""

    index: int
    node_id: str
    node_key: str
    endpoint: str
    status: str


def primary_index(hosts: list[Host]) -> int | None:
    """The app's primary: the lowest instance index whose node is confirmed (None: none is)."""
    up = [h.index for h in hosts if h.status == CONFIRMED]
    return min(up) if up else None


def verified_device(claim: Any, host: Host, chain_id: str) -> tuple[str, str] | None:
    """(device id, address) from a node's published claim, or None unless it is signed by
    the node key confirmed state holds for `host` and names a well-formed device."""
    if not isinstance(claim, dict) or host.status != CONFIRMED:
        return None
    try:
        device_id, address = str(claim["device_id"]), str(claim["address"])
        node_key, signature = bytes.fromhex(host.node_key), bytes.fromhex(claim["signature"])
    except (KeyError, ValueError, TypeError):
        return None
    if claim.get("node_key") != host.node_key or not is_device_claim(device_id, address):
        return None
    if not verify(node_key, device_claim_digest(chain_id, node_key, device_id, address), signature):
        return None
    return device_id, address


def shared_devices(
    instance: int, primary: int | None, devices: Mapping[int, tuple[str, str]]
) -> dict[str, str]:
    """The devices (id -> address) instance `instance`'s folders are shared with, given the
    other hosts' verified `devices` by instance index. A star, never a mesh: the primary
    shares with every standby, a standby with the primary only. A receiveonly folder takes
    changes from any device it is shared with, so a standby whose operator made its own
    copy send reaches no other standby's copy."""
    if instance == primary:
        return dict(devices.values())
    if primary is not None and primary in devices:
        return dict([devices[primary]])
    return {}


class VolumeKeeper:
    """The replicated volumes of this node's workloads, kept by its Syncthing."""

    def __init__(
        self,
        syncthing: Syncthing,
        runtime: Runtime,
        node_key: str,
        *,
        pull_deadline_s: float = PULL_DEADLINE_S,
    ) -> None:
        self.syncthing, self.runtime, self.node_key = syncthing, runtime, node_key
        self.pull_deadline_s = pull_deadline_s
        self.error = ""
        self.standby: set[str] = set()  # workload keys held as standbys
        self.pulling: set[str] = set()  # primaries still pulling their copy
        self._synced: set[str] = set()  # keys whose copy was seen in sync by this agent
        self._pull_since: dict[str, float] = {}
        self._chain_id = ""

    def device(self) -> dict[str, str] | None:
        """What the agent reports to its node, which signs and publishes it."""
        if not self.syncthing.running:
            return None
        return {"device_id": self.syncthing.device_id, "address": self.syncthing.address}

    async def gate(
        self,
        api: NodeApi,
        desired: Mapping[str, Workload],
        observed: Mapping[str, Observed],
        *,
        paused: Collection[str] = (),
    ) -> set[str]:
        """Configure the folders of every replicated volume on this node; return the keys of
        the workloads that must not run now (standbys, and primaries still pulling).
        `paused` workloads (held past their disk quota) get no folder, their copy kept."""
        replicated = {k: w for k, w in desired.items() if w.replicated_mounts and k not in paused}
        self.standby, self.pulling = set(), set()
        try:
            if not self.syncthing.running:
                if not replicated:
                    return set()
                await self.syncthing.start()
            if not self._chain_id:
                self._chain_id = await api.chain_id()
            wanted = await self._configure(api, replicated, observed)
            await self._drop_folders(wanted, desired)
            self.error = ""
        except SyncthingError as exc:
            if str(exc) != self.error:
                log.error("replicated volumes unavailable: %s", exc)
            self.error = str(exc)
            self.pulling = set(replicated) - self.standby
        # An instance runs whole or not at all: its other components, which reach the ones
        # with replicated volumes on this host, wait with them.
        standby_apps = {desired[k].app for k in self.standby}
        pulling_apps = {desired[k].app for k in self.pulling}
        for key, w in desired.items():
            if w.app in standby_apps:
                self.standby.add(key)
            elif w.app in pulling_apps:
                self.pulling.add(key)
        if self.error:  # what runs keeps running (its copy may lag); nothing new starts
            self.pulling -= {k for k, seen in observed.items() if seen.running}
        return self.standby | self.pulling

    async def _hosts(self, api: NodeApi, app: str) -> list[Host]:
        body = await api.app(app)
        hosts = []
        for instance in body.get("instances", []) if body else []:
            node = await api.node(instance["node_id"])
            if node is not None:
                hosts.append(
                    Host(
                        int(instance["index"]),
                        str(instance["node_id"]),
                        str(node["node_key"]),
                        str(node.get("endpoint", "")),
                        str(node["status"]),
                    )
                )
        return hosts

    async def _peer_devices(self, api: NodeApi, hosts: list[Host]) -> dict[int, tuple[str, str]]:
        """The verified (device id, address) of each other host, by instance index."""
        devices: dict[int, tuple[str, str]] = {}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        for host in hosts:
            if host.node_key == self.node_key or host.status != CONFIRMED or not host.endpoint:
                continue
            try:
                async with api.session.get(
                    f"http://{host.endpoint}/volumes/device", timeout=timeout
                ) as response:
                    if not response.ok:
                        continue  # its agent has not reported Syncthing yet
                    claim = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                continue  # that host is unreachable now; the next pass asks again
            found = verified_device(claim, host, self._chain_id)
            if found is None:
                log.warning("volume device of node %s refused: bad claim", host.node_id[:12])
                continue
            devices[host.index] = found
        return devices

    async def _configure(
        self, api: NodeApi, replicated: Mapping[str, Workload], observed: Mapping[str, Observed]
    ) -> set[str]:
        wanted: set[str] = set()
        all_devices: dict[str, str] = {}
        roles: list[tuple[Workload, bool, tuple[str, ...]]] = []
        for app in sorted({w.app for w in replicated.values()}):
            hosts = await self._hosts(api, app)
            devices = await self._peer_devices(api, hosts)
            primary = primary_index(hosts)
            for w in (w for w in replicated.values() if w.app == app):
                shared = shared_devices(w.instance, primary, devices)
                all_devices.update(shared)
                roles.append((w, w.instance == primary, tuple(sorted(shared))))
        known = await self.syncthing.set_devices(all_devices)
        now = time.monotonic()
        for w, primary, shared_with in roles:
            peers = tuple(d for d in shared_with if d in known)
            running = w.key in observed and observed[w.key].running
            # a primary sends only once its copy is known complete (or it already runs)
            sends = primary and (running or w.key in self._synced)
            in_sync = True
            for mount in w.replicated_mounts:
                fid = folder_id(w.app, w.component, mount)
                wanted.add(fid)
                path = self.runtime.volume_path(w.key, mount)
                await self.syncthing.set_folder(Folder(fid, path, sends, peers))
                if not sends:
                    in_sync = in_sync and (await self.syncthing.sync_status(fid, peers)).in_sync
            if in_sync and not sends:
                self._synced.add(w.key)
            if not primary:
                self.standby.add(w.key)
                self._pull_since.pop(w.key, None)
            elif not sends:
                since = self._pull_since.setdefault(w.key, now)
                if in_sync or now - since >= self.pull_deadline_s:
                    if not in_sync:
                        log.warning("volume pull of %s timed out; starting with its copy", w.key)
                    self._synced.add(w.key)
                    self._pull_since.pop(w.key, None)
                    for mount in w.replicated_mounts:
                        fid = folder_id(w.app, w.component, mount)
                        path = self.runtime.volume_path(w.key, mount)
                        await self.syncthing.set_folder(Folder(fid, path, True, peers))
                    log.info("volume primary %s pulled; starting it", w.key)
                else:
                    self.pulling.add(w.key)
        return wanted

    async def _drop_folders(self, wanted: set[str], desired: Mapping[str, Workload]) -> None:
        """Folders of volumes no longer here: forgotten, and a standby's copy deleted (its
        workload never ran, so the runtime would not delete it)."""
        for fid in sorted(await self.syncthing.folder_ids() - wanted):
            await self.syncthing.remove_folder(fid)
            app, component = fid.split(".")[:2]
            key = f"{component}_{app}"
            self._synced.discard(key)
            if key not in desired:
                with contextlib.suppress(WorkloadError, OSError):
                    await self.runtime.remove(key, keep_data=False)
                log.info("volume folder=%s dropped", fid)

    async def close(self) -> None:
        await self.syncthing.close()
