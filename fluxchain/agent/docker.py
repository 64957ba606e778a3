"""The Docker runtime: each component runs as a container on a Docker Engine (aiodocker).

Containers are named `flux-<node tag>-<component>_<app>` and labelled with the node tag,
the workload key and its fingerprint, so a restarted agent finds exactly its own (several
nodes may share one engine, as the container devnet does). Ports are published on the
agent's bind address; a component with a data path gets a named volume that survives
restarts and updates and is removed with the assignment. Restarts are the agent's job
(restart policy "no"), so its backoff applies.

Declared volumes (`volumes:` in the spec) are host directories bind-mounted into the
container, one per volume under `volumes_root/<workload key>/`, where the agent's Syncthing
keeps a replicated one (agent/volumes.py). The engine resolves a bind's source on its own
host, so when the agent itself runs in a container, `volumes_root` must be a host directory
mounted into the agent's container at the same absolute path (docker-compose.yml does so,
docs/containers.md); otherwise the engine refuses the create ("bind source path does not
exist"), which the agent reports as such instead of starting the app on an empty volume.
A container gets only its own workload's directories, never a parent of them, and a
directory that is a symlink (or under one) is refused: the engine would follow it on the host.

Networking: the components of one app instance share a bridge network of their own,
`flux-<node tag>-<app>`, created with the first of them and removed with the last; on it
each container answers to its component's name (a network alias), so `db` resolves to
the app's database and to nothing of any other app. Containers are on no other network
(not the default bridge): Docker isolates bridges from each other, so apps on one node
cannot reach each other's containers directly, only through published ports. Each
component also gets the others' addresses as FLUX_<COMPONENT>_HOST/_PORT/_ADDR (by name,
at container ports: runtime.component_env), as the process runtime gives them.

Isolation (`container_config`; docs/agent.md explains each choice): the spec's CPU
(NanoCpus) and RAM (Memory, and MemorySwap equal to it: no swap), PidsLimit against fork
bombs, `no-new-privileges`, every capability dropped but the few an ordinary web image's
entrypoint uses (APP_CAPABILITIES), no core dumps. Disk: a `size` storage option bounds
the writable layer where the engine's storage driver supports one (detected once from
the engine's info, and given up if the engine refuses it); in every case the agent's
disk watchdog measures the writable layer plus the data volume (`disk_usage`) and stops
a workload past its `disk_gb`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any, Final

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from fluxchain.agent.runtime import (
    FOLLOW_POLL_S,
    LOG_CHUNK,
    TAIL_BYTES,
    Capacity,
    RuntimeUnavailableError,
    WorkloadError,
    expand_command,
    skipped_note,
    tree_usage,
    volume_dir,
    workload_env,
)
from fluxchain.agent.workloads import Observed, Workload

log = logging.getLogger("fluxchain.agent")

LABEL: Final = "io.fluxchain"
STOP_GRACE_S: Final = 5
API_TIMEOUT_S: Final = 30.0
PULL_TIMEOUT_S: Final = 600.0
MIB: Final = 1024 * 1024
# Processes and threads per container: a fork bomb stops here. Generous for a web app
# (a JVM or a pool of workers uses a few hundred threads at most).
PIDS_LIMIT: Final = 512
# Docker's default set, less what a web app does not need: MKNOD (device nodes),
# NET_RAW (raw sockets: spoofing and sniffing on the bridge), SETFCAP and SETPCAP (hand
# capabilities on), SYS_CHROOT, AUDIT_WRITE, FSETID. Kept: official images (nginx,
# postgres, redis…) start as root, chown their data directory (CHOWN, FOWNER,
# DAC_OVERRIDE), drop to their own user (SETUID, SETGID), bind ports below 1024
# (NET_BIND_SERVICE) and signal their workers (KILL).
APP_CAPABILITIES: Final = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "NET_BIND_SERVICE",
    "KILL",
)
# Storage drivers whose `size` option bounds a container's writable layer. overlay2
# needs an xfs backing filesystem mounted with pquota, which the engine's info does not
# show: it is tried, and dropped at the first refusal.
QUOTA_DRIVERS: Final = frozenset({"devicemapper", "btrfs", "zfs"})


def storage_quota_supported(info: Mapping[str, Any]) -> bool:
    """Whether the engine (its `GET /info`) can bound a container's writable layer."""
    driver = str(info.get("Driver", ""))
    if driver in QUOTA_DRIVERS:
        return True
    status = {str(k): str(v) for k, v in info.get("DriverStatus") or []}
    return driver == "overlay2" and status.get("Backing Filesystem") == "xfs"


def network_name(node_tag: str, app: str) -> str:
    """The Docker network of one app's instance on this node."""
    return f"flux-{node_tag}-{app}"


def network_config(node_tag: str, app: str) -> dict[str, Any]:
    """The create body of an app instance's network: a bridge of its own, labelled so a
    restarted agent finds it and removes it with the app's last container."""
    return {
        "Name": network_name(node_tag, app),
        "Driver": "bridge",
        "CheckDuplicate": True,
        "Labels": {f"{LABEL}.node": node_tag, f"{LABEL}.app": app},
    }


def container_config(
    workload: Workload,
    node_tag: str,
    bind: str,
    volume: str,
    *,
    storage_quota: bool,
    volume_dirs: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """The create body of a workload's container: image, environment, labels, ports,
    its data volume, its app's network (reachable there by its component name), and
    every limit from the spec (see the module docstring)."""
    first_port = workload.ports[0][1] if workload.ports else None
    env = workload_env(workload, "0.0.0.0", first_port, components_host=None)
    network = network_name(node_tag, workload.app)
    memory = workload.ram_mb * MIB
    host_config: dict[str, Any] = {
        "NanoCpus": workload.cpu_tenths * 100_000_000,
        "Memory": memory,
        "MemorySwap": memory,  # memory + swap: no swap on top
        "PidsLimit": PIDS_LIMIT,
        "SecurityOpt": ["no-new-privileges"],
        "CapDrop": ["ALL"],
        "CapAdd": list(APP_CAPABILITIES),
        "Ulimits": [{"Name": "core", "Soft": 0, "Hard": 0}],
        "PortBindings": port_bindings(workload, bind),
        "RestartPolicy": {"Name": "no"},
        "NetworkMode": network,  # its app's network only: not the default bridge
        "Mounts": (
            [{"Type": "volume", "Source": volume, "Target": workload.data_path}]
            if workload.data_path
            else []
        )
        # declared volumes: host directories (a replicated one is a Syncthing folder)
        + [
            {"Type": "bind", "Source": str(path), "Target": mount}
            for mount, path in sorted((volume_dirs or {}).items())
        ],
    }
    if storage_quota:
        host_config["StorageOpt"] = {"size": f"{workload.disk_gb}G"}
    config: dict[str, Any] = {
        "Image": workload.image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {
            f"{LABEL}.node": node_tag,
            f"{LABEL}.key": workload.key,
            f"{LABEL}.app": workload.app,
            f"{LABEL}.fingerprint": workload.fingerprint,
        },
        "ExposedPorts": {key: {} for key in port_bindings(workload, bind)},
        "HostConfig": host_config,
        # On its app's network the container answers to its component's name, so
        # `WORDPRESS_DB_HOST=db` finds the `db` component of the same instance.
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": [workload.component]}}},
    }
    if workload.command:
        config["Cmd"] = expand_command(workload.command, env, workload.secret_env)
    return config


def port_bindings(workload: Workload, bind: str) -> dict[str, list[dict[str, str]]]:
    """Docker's PortBindings: "<container port>/<tcp|udp>" -> the host ports bound to it
    (two host ports may forward to one container port; a "both" port binds tcp and udp)."""
    out: dict[str, list[dict[str, str]]] = {}
    for port in workload.ports:
        for transport in port.transports:
            binding = {"HostIp": bind, "HostPort": str(port.host)}
            out.setdefault(f"{port.container}/{transport}", []).append(binding)
    return out


def _docker_error(exc: Exception) -> str:
    if isinstance(exc, DockerError):
        return f"docker {exc.status}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _make_volume_dir(base: Path, path: Path) -> None:
    """Create `path` under `base` one level at a time, refusing any level that is a symlink
    (an app could plant one in a volume of its own that holds the path of another: the
    engine would follow it on its host and mount whatever it points at)."""
    base.mkdir(parents=True, exist_ok=True)
    current = base
    for part in path.relative_to(base).parts:
        current = current / part
        if current.is_symlink():
            raise WorkloadError(f"volume directory {current} is a symlink; refused")
        try:
            current.mkdir(exist_ok=True)
        except OSError as exc:  # a file where a directory should be
            raise WorkloadError(f"volume directory {current}: {exc.strerror}") from None


class DockerRuntime:
    name = "docker"

    def __init__(
        self,
        url: str,
        node_tag: str,
        bind: str,
        directory: Path,
        volumes_root: Path | None = None,
    ) -> None:
        self.url, self.node_tag, self.bind, self.directory = url, node_tag, bind, directory
        # declared volumes: under the agent's directory unless the agent runs in a container,
        # where they must be on a host path the engine sees the same (module docstring)
        self.volumes_root = volumes_root or directory / "volumes"
        self._docker: aiodocker.Docker | None = None
        self.storage_quota: bool | None = None  # decided once, from the engine's info

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            timeout = aiohttp.ClientTimeout(total=API_TIMEOUT_S)
            self._docker = aiodocker.Docker(url=self.url, timeout=timeout)
        return self._docker

    def _name(self, key: str) -> str:
        return f"flux-{self.node_tag}-{key}"

    async def check(self) -> None:
        try:
            await self.docker.version()
        except (DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(
                f"Docker Engine at {self.url}: {_docker_error(exc)}"
            ) from None

    async def capacity(self) -> Capacity:
        info = await self.docker.system.info()
        root = Path(str(info.get("DockerRootDir", "")))
        # The engine's data root is only visible when the agent shares its host.
        disk_dir = root if root.is_dir() and os.access(root, os.R_OK) else self.directory
        return Capacity(
            cores=int(info["NCPU"]),
            ram_mb=int(info["MemTotal"]) // MIB,
            disk_gb=shutil.disk_usage(disk_dir).free // 1024**3,
        )

    async def observe(self) -> dict[str, Observed]:
        try:
            containers = await self.docker.containers.list(
                all=True, filters=json.dumps({"label": [f"{LABEL}.node={self.node_tag}"]})
            )
        except (DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(_docker_error(exc)) from None
        out = {}
        for c in containers:
            labels: dict[str, str] = c["Labels"] or {}
            key = labels.get(f"{LABEL}.key", "")
            if not key:
                continue
            state = c["State"]
            out[key] = Observed(
                key,
                labels.get(f"{LABEL}.fingerprint", ""),
                running=state == "running",
                detail=str(c["Status"]) if "Status" in c else "",
            )
        return out

    async def start(self, workload: Workload) -> None:
        try:
            await self._ensure_image(workload.image, registry_auth_for(workload))
            if self.storage_quota is None:
                self.storage_quota = storage_quota_supported(await self.docker.system.info())
                log.info("docker storage quota: %s", self.storage_quota)
            name = self._name(workload.key)
            await self._delete(name)  # a leftover from a crash would block the name
            await self._ensure_network(workload.app)
            try:
                container = await self._create(workload, name)
            except DockerError:
                await self._remove_network_if_unused(workload.app)  # none left behind
                raise
            await container.start()
        except DockerError as exc:
            raise WorkloadError(_docker_error(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(_docker_error(exc)) from None

    def volume_path(self, key: str, mount: str) -> Path:
        """Declared volumes live under `volumes_root/<key>`, bind-mounted at `mount`."""
        return volume_dir(self.volumes_root / key, mount)

    def prepare_volumes(self, workload: Workload) -> dict[str, Path]:
        """The workload's volume directories, created; refused (WorkloadError) when one
        would hold another (e.g. `/./a` and `/a/b`, which the spec rules refuse too: the
        outer volume's owner could swap the inner one for a symlink) or a level is a
        symlink."""
        dirs = {mount: self.volume_path(workload.key, mount) for mount, _ in workload.volumes}
        paths = sorted(dirs.values())
        for outer in paths:
            for inner in paths:
                if inner != outer and inner.is_relative_to(outer):
                    raise WorkloadError(f"volumes {outer} and {inner} overlap; refused")
        for path in paths:
            _make_volume_dir(self.volumes_root, path)
        return dirs

    async def _create(self, workload: Workload, name: str) -> Any:
        quota = bool(self.storage_quota)
        dirs = self.prepare_volumes(workload)
        config = container_config(
            workload, self.node_tag, self.bind, name, storage_quota=quota, volume_dirs=dirs
        )
        try:
            return await self.docker.containers.create(config, name=name)
        except DockerError as exc:
            if "bind source path does not exist" in str(exc.message):
                raise WorkloadError(
                    f"the Docker engine does not see the volume directories under "
                    f"{self.volumes_root}: an agent in a container needs them on a host "
                    "directory mounted at the same path (--volumes-dir, docs/containers.md)"
                ) from None
            # overlay2 on xfs without pquota: the engine refuses the size option.
            if not quota or exc.status != 400 or "storage-opt" not in str(exc.message):
                raise
        log.warning("docker refuses storage quotas here; the disk watchdog alone bounds disk")
        self.storage_quota = False
        config = container_config(
            workload, self.node_tag, self.bind, name, storage_quota=False, volume_dirs=dirs
        )
        return await self.docker.containers.create(config, name=name)

    async def disk_usage(self) -> dict[str, int]:
        """Writable layer (SizeRw) plus data volume of each of this node's containers.

        One `GET /system/df`: the engine walks the layers and volumes, so the agent does
        not need to see the engine's data root.
        """
        try:
            df = await self.docker._query_json("system/df", method="GET")
        except DockerError as exc:
            raise WorkloadError(_docker_error(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(_docker_error(exc)) from None
        volumes = {
            str(v.get("Name")): int((v.get("UsageData") or {}).get("Size", 0) or 0)
            for v in df.get("Volumes") or []
        }
        usage: dict[str, int] = {}
        for c in df.get("Containers") or []:
            labels: dict[str, str] = c.get("Labels") or {}
            key = labels.get(f"{LABEL}.key", "")
            if labels.get(f"{LABEL}.node") != self.node_tag or not key:
                continue
            written = max(0, int(c.get("SizeRw", 0) or 0))
            usage[key] = written + max(0, volumes.get(self._name(key), 0))
        for key in usage:  # declared volumes are host directories the engine does not count
            usage[key] += await asyncio.to_thread(tree_usage, self.volumes_root / key)
        return usage

    async def _ensure_network(self, app: str) -> None:
        """Create the app's network unless it exists (its other components made it, or
        an agent before this one did)."""
        name = network_name(self.node_tag, app)
        try:
            await self.docker.networks.get(name)
            return
        except DockerError as exc:
            if exc.status != 404:
                raise
        try:
            await self.docker.networks.create(network_config(self.node_tag, app))
        except DockerError as exc:
            if exc.status == 409:  # created meanwhile: as good
                return
            if "address pool" in str(exc.message):
                raise WorkloadError(
                    f"no address range left for the network of {app}: {_docker_error(exc)}; "
                    "give the engine more, smaller pools (docs/agent.md, default-address-pools)"
                ) from None
            raise
        log.info("docker network %s created", name)

    async def _remove_network_if_unused(self, app: str) -> None:
        """Remove the app's network once none of this node's containers of it is left."""
        filters = {"label": [f"{LABEL}.node={self.node_tag}", f"{LABEL}.app={app}"]}
        if await self.docker.containers.list(all=True, filters=json.dumps(filters)):
            return
        try:
            network = await self.docker.networks.get(network_name(self.node_tag, app))
            await network.delete()
        except DockerError as exc:
            if exc.status != 404:
                raise
            return
        log.info("docker network %s removed", network_name(self.node_tag, app))

    async def _ensure_image(self, image: str, auth: dict[str, str] | None = None) -> None:
        try:
            await self.docker.images.inspect(image)
            return
        except DockerError as exc:
            if exc.status != 404:
                raise
        # a private registry's login goes in the pull request's X-Registry-Auth header
        # (aiodocker's `auth`), from memory: never `docker login`'s config file on disk
        log.info("pulling image %s%s", image, " (registry login)" if auth else "")
        await self.docker.images.pull(image, auth=auth, timeout=PULL_TIMEOUT_S)

    async def _delete(self, name: str) -> None:
        try:
            container = await self.docker.containers.get(name)
        except DockerError as exc:
            if exc.status == 404:
                return
            raise
        await container.delete(force=True)

    async def remove(self, key: str, *, keep_data: bool) -> None:
        name = self._name(key)
        app = key.partition("_")[2]  # "<component>_<app>": neither name holds a '_'
        try:
            try:
                container = await self.docker.containers.get(name)
            except DockerError as exc:
                if exc.status != 404:
                    raise
            else:
                app = container["Config"]["Labels"].get(f"{LABEL}.app", app)
                if container["State"]["Running"]:
                    await container.stop(t=STOP_GRACE_S)
                await container.delete(force=True)
            await self._remove_network_if_unused(app)
            if not keep_data:
                shutil.rmtree(self.volumes_root / key, ignore_errors=True)
                try:
                    volume = await self.docker.volumes.get(name)  # type: ignore[no-untyped-call]
                    await volume.delete()
                except DockerError as exc:
                    if exc.status != 404:
                        raise
        except DockerError as exc:
            raise WorkloadError(_docker_error(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(_docker_error(exc)) from None

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    # -- owner operations ------------------------------------------------------------------

    async def logs(self, key: str, tail: int, follow: bool) -> AsyncGenerator[bytes, None]:
        """The engine's log of this node's container for `key` (and no other)."""
        try:
            container = await self.docker.containers.get(self._name(key))
            if not follow:
                lines = await container.log(stdout=True, stderr=True, tail=tail)
                if lines:
                    yield "".join(lines).encode()
                return
            # One stream, the tail and then what follows: no line twice, none lost between.
            # The tail's lines pass (up to TAIL_BYTES); after them, at most LOG_CHUNK bytes
            # per FOLLOW_POLL_S window, the rest skipped and counted.
            stream = container.log(stdout=True, stderr=True, follow=True, tail=tail, timeout=None)
            tail_left, tail_bytes = tail, TAIL_BYTES
            window_at, used, skipped = time.monotonic(), 0, 0
            async for line in stream:
                data = str(line).encode()
                if tail_left > 0 and len(data) <= tail_bytes:
                    tail_left, tail_bytes = tail_left - 1, tail_bytes - len(data)
                    yield data
                    continue
                tail_left = 0
                now = time.monotonic()
                if now - window_at >= FOLLOW_POLL_S:
                    window_at, used = now, 0
                    if skipped:
                        yield skipped_note(skipped)
                        skipped = 0
                if used + len(data) > LOG_CHUNK:
                    skipped += len(data)
                    continue
                used += len(data)
                yield data
        except DockerError as exc:
            raise WorkloadError(_docker_error(exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RuntimeUnavailableError(_docker_error(exc)) from None

    async def stats(self, key: str) -> dict[str, Any]:
        """One sample of the engine's stats of the container."""
        try:
            container = await self.docker.containers.get(self._name(key))
        except DockerError as exc:
            if exc.status == 404:
                return {"running": False}
            raise WorkloadError(_docker_error(exc)) from None
        out: dict[str, Any] = {"running": bool(container["State"]["Running"])}
        if not out["running"]:
            return out
        try:
            sample = await container.stats(stream=False)
        except DockerError as exc:
            raise WorkloadError(_docker_error(exc)) from None
        first: dict[str, Any] = (
            (sample[0] if sample else {}) if isinstance(sample, list) else sample
        )
        usage = (first.get("cpu_stats") or {}).get("cpu_usage") or {}
        out["cpu_seconds"] = round(int(usage.get("total_usage", 0)) / 1e9, 2)
        out["memory_bytes"] = int((first.get("memory_stats") or {}).get("usage", 0))
        return out

    async def restart(self, workload: Workload) -> None:
        try:
            container = await self.docker.containers.get(self._name(workload.key))
            await container.restart(t=STOP_GRACE_S)
        except DockerError as exc:
            if exc.status != 404:
                raise WorkloadError(_docker_error(exc)) from None
            await self.start(workload)  # gone meanwhile: created again

    async def redeploy(self, workload: Workload) -> None:
        """Pull the image again (a moved tag brings the new version), then recreate."""
        try:
            log.info("pulling image %s again (redeploy)", workload.image)
            # a private image's sealed registry login, as at the first start
            auth = registry_auth_for(workload)
            await self.docker.images.pull(workload.image, auth=auth, timeout=PULL_TIMEOUT_S)
        except DockerError as exc:
            raise WorkloadError(f"pull {workload.image}: {_docker_error(exc)}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(_docker_error(exc)) from None
        await self.remove(workload.key, keep_data=True)
        await self.start(workload)


def registry_auth_for(workload: Workload) -> dict[str, str] | None:
    """The sealed registry login for the workload's image (the registry is the image's
    first path part when it has a dot or a port), as the engine API's auth object."""
    first = workload.image.split("/", 1)[0]
    registry = first if "/" in workload.image and ("." in first or ":" in first) else ""
    for server, login in workload.registry_auth:
        if server == registry or (not registry and server in ("docker.io", "index.docker.io")):
            username, _, password = login.partition(":")
            return {"username": username, "password": password, "serveraddress": server}
    return None
