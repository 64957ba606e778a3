"""The Docker runtime: each component runs as a container on a Docker Engine (aiodocker).

Containers are named `flux-<node tag>-<component>_<app>` and labelled with the node tag,
the workload key and its fingerprint, so a restarted agent finds exactly its own (several
nodes may share one engine, as the container devnet does). Limits come from the spec:
NanoCpus and Memory; ports are published on the agent's bind address; a component with a
data path gets a named volume that survives restarts and updates and is removed with the
assignment. Restarts are the agent's job (restart policy "no"), so its backoff applies.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Final

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from fluxchain.agent.runtime import (
    Capacity,
    RuntimeUnavailableError,
    WorkloadError,
    expand_command,
    workload_env,
)
from fluxchain.agent.workloads import Observed, Workload

log = logging.getLogger("fluxchain.agent")

LABEL: Final = "io.fluxchain"
STOP_GRACE_S: Final = 5
API_TIMEOUT_S: Final = 30.0
PULL_TIMEOUT_S: Final = 600.0
MIB: Final = 1024 * 1024


def _docker_error(exc: Exception) -> str:
    if isinstance(exc, DockerError):
        return f"docker {exc.status}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class DockerRuntime:
    name = "docker"

    def __init__(self, url: str, node_tag: str, bind: str, directory: Path) -> None:
        self.url, self.node_tag, self.bind, self.directory = url, node_tag, bind, directory
        self._docker: aiodocker.Docker | None = None

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
            await self._ensure_image(workload.image)
            first_port = workload.ports[0][1] if workload.ports else None
            env = workload_env(workload, "0.0.0.0", first_port)
            config: dict[str, Any] = {
                "Image": workload.image,
                "Env": [f"{k}={v}" for k, v in env.items()],
                "Labels": {
                    f"{LABEL}.node": self.node_tag,
                    f"{LABEL}.key": workload.key,
                    f"{LABEL}.app": workload.app,
                    f"{LABEL}.fingerprint": workload.fingerprint,
                },
                "ExposedPorts": {f"{cp}/tcp": {} for _, cp in workload.ports},
                "HostConfig": {
                    "NanoCpus": workload.cpu_tenths * 100_000_000,
                    "Memory": workload.ram_mb * MIB,
                    "PortBindings": {
                        f"{cp}/tcp": [{"HostIp": self.bind, "HostPort": str(hp)}]
                        for hp, cp in workload.ports
                    },
                    "RestartPolicy": {"Name": "no"},
                    "Mounts": (
                        [
                            {
                                "Type": "volume",
                                "Source": self._name(workload.key),
                                "Target": workload.data_path,
                            }
                        ]
                        if workload.data_path
                        else []
                    ),
                },
            }
            if workload.command:
                config["Cmd"] = expand_command(workload.command, env)
            name = self._name(workload.key)
            await self._delete(name)  # a leftover from a crash would block the name
            container = await self.docker.containers.create(config, name=name)
            await container.start()
        except DockerError as exc:
            raise WorkloadError(_docker_error(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(_docker_error(exc)) from None

    async def _ensure_image(self, image: str) -> None:
        try:
            await self.docker.images.inspect(image)
            return
        except DockerError as exc:
            if exc.status != 404:
                raise
        log.info("pulling image %s", image)
        await self.docker.images.pull(image, timeout=PULL_TIMEOUT_S)

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
        try:
            try:
                container = await self.docker.containers.get(name)
            except DockerError as exc:
                if exc.status != 404:
                    raise
            else:
                if container["State"]["Running"]:
                    await container.stop(t=STOP_GRACE_S)
                await container.delete(force=True)
            if not keep_data:
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
