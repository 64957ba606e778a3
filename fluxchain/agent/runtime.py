"""The interface both runtimes (Docker, local processes) give the agent."""

from __future__ import annotations

import os
import shutil
import stat
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from fluxchain.agent.workloads import Observed, Workload


class RuntimeUnavailableError(Exception):
    """The runtime cannot run anything now (engine down, permissions)."""


class WorkloadError(Exception):
    """One workload could not be started (no image, no command, bad port)."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """What the runtime can really give workloads (the node's benchmark is lowered to it)."""

    cores: int
    ram_mb: int
    disk_gb: int


class Runtime(Protocol):
    name: str

    async def check(self) -> None:
        """Raise RuntimeUnavailableError unless workloads can be started now."""

    async def capacity(self) -> Capacity: ...

    async def observe(self) -> dict[str, Observed]:
        """Every workload this runtime holds for this node (found again after a restart)."""

    async def start(self, workload: Workload) -> None:
        """Start it, publishing its ports on the bind address. Raise WorkloadError."""

    async def remove(self, key: str, *, keep_data: bool) -> None:
        """Stop it (gracefully, then by force) and forget it; drop its data unless kept."""

    async def disk_usage(self) -> dict[str, int]:
        """Bytes on disk of every workload it holds (what counts against `disk_gb`)."""

    async def close(self) -> None: ...


def workload_env(workload: Workload, host: str, port: int | None) -> dict[str, str]:
    """The variables a workload sees: its spec's environment plus FLUX_* and HOST/PORT."""
    env: dict[str, str] = {}
    for entry in workload.environment:
        name, _, value = entry.partition("=")
        env[name] = value
    env.update(
        FLUX_APP=workload.app,
        FLUX_COMPONENT=workload.component,
        FLUX_INSTANCE=str(workload.instance),
        HOST=host,
    )
    if port is not None:
        env["PORT"] = str(port)
    return env


def expand_command(command: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """`$NAME` / `${NAME}` in each argument from `env` (no shell: nothing else is special)."""
    return [string.Template(arg).safe_substitute(env) for arg in command]


def host_capacity(directory: Path) -> Capacity:
    """This machine's CPUs and RAM, and the free disk under `directory`."""
    cores = len(os.sched_getaffinity(0))
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    disk_gb = shutil.disk_usage(directory).free // 1024**3
    return Capacity(cores, ram_mb, disk_gb)


GIB: Final = 1024**3


def tree_usage(path: Path) -> int:
    """Bytes allocated on disk under `path` (sparse files count what they really use;
    symlinks are not followed; a file vanishing during the walk counts as nothing)."""
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as items:
                for item in items:
                    try:
                        info = item.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(Path(item.path))
        except OSError:
            continue
    return total


def quota_message(used: int, disk_gb: int) -> str:
    """The human half of a `disk_quota_exceeded` report."""
    return (
        f"{used / GIB:.2f} GB on disk, over the spec's {disk_gb} GB: stopped until the app "
        "is updated (its data is kept)"
    )
