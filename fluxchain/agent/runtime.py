"""The interface both runtimes (Docker, local processes) give the agent."""

from __future__ import annotations

import os
import shutil
import stat
import string
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

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

    def volume_path(self, key: str, mount: str) -> Path:
        """The host directory holding a workload's volume `mount` (where Syncthing keeps a
        replicated one); inside the workload's own data, counted by `disk_usage`."""

    async def close(self) -> None: ...

    # owner operations (agent.py `operate`): the workload is one the agent runs for the app

    def logs(self, key: str, tail: int, follow: bool) -> AsyncGenerator[bytes, None]:
        """Its last `tail` lines of output, then (`follow`) new output as it comes, at most
        LOG_CHUNK bytes every FOLLOW_POLL_S (a flood is skipped over, and says so)."""

    async def stats(self, key: str) -> dict[str, Any]:
        """Running or not, CPU seconds used, memory and disk bytes, uptime."""

    async def restart(self, workload: Workload) -> None:
        """Stop it and start it again, its data kept. Raise WorkloadError."""

    async def redeploy(self, workload: Workload) -> None:
        """Fetch its image again and recreate it, its data kept. Raise WorkloadError."""


def workload_env(
    workload: Workload, host: str, port: int | None, components_host: str | None
) -> dict[str, str]:
    """The variables a workload sees: its spec's environment, then FLUX_*, HOST/PORT and
    the addresses of its app's components (`component_env` with `components_host`)."""
    env: dict[str, str] = {}
    for entry in workload.environment:
        name, _, value = entry.partition("=")
        env[name] = value
    env.update(workload.secret_env)  # decrypted by the agent, held in memory only
    env.update(component_env(workload, components_host))
    env.update(
        FLUX_APP=workload.app,
        FLUX_COMPONENT=workload.component,
        FLUX_INSTANCE=str(workload.instance),
        HOST=host,
    )
    if port is not None:
        env["PORT"] = str(port)
    return env


def component_prefix(component: str) -> str:
    """`FLUX_<COMPONENT>`: the component's name upper-cased, '-' as '_' (names are DNS
    labels, a-z 0-9 '-', so two components never share a prefix)."""
    return "FLUX_" + component.upper().replace("-", "_")


def component_env(workload: Workload, host: str | None) -> dict[str, str]:
    """Where each component of the workload's app instance answers, itself included.

    `FLUX_<C>_HOST`, and for a component with ports `FLUX_<C>_PORT` (its first port),
    `FLUX_<C>_ADDR` (host:port) and `FLUX_<C>_PORT_<container port>` for each port.
    `host` None: the components share a network on which each one's name resolves and
    they listen on their container ports (Docker); otherwise they all listen on `host`
    at their host ports (the process runtime)."""
    env: dict[str, str] = {}
    for name, ports in workload.components:
        prefix = component_prefix(name)
        address = name if host is None else host
        env[f"{prefix}_HOST"] = address
        reachable = [(p.container, p.container if host is None else p.host) for p in ports]
        if reachable:
            env[f"{prefix}_PORT"] = str(reachable[0][1])
            env[f"{prefix}_ADDR"] = f"{address}:{reachable[0][1]}"
        for container_port, port in reachable:
            env[f"{prefix}_PORT_{container_port}"] = str(port)
    return env


def volume_dir(data: Path, mount: str) -> Path:
    """`mount` (absolute, no '..': the spec's rules) as a directory under `data`. Checked
    again here: a path that would leave `data` is refused, whatever the spec said."""
    path = data.joinpath(*(part for part in mount.split("/") if part not in ("", ".")))
    if ".." in mount.split("/") or path == data or not path.is_relative_to(data):
        raise WorkloadError(f"volume {mount!r} is not a directory inside the workload's data")
    return path


def expand_command(
    command: tuple[str, ...],
    env: dict[str, str],
    secret_env: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """`$NAME` / `${NAME}` in each argument from `env` (no shell: nothing else is special).

    Never a sealed secret (`secret_env`): a command line is no place for one (it is in
    /proc/<pid>/cmdline for every local user, in the runtime's records and in start
    errors the agent reports publicly), so `$DB_PASSWORD` stays as written and the
    secret reaches the workload through its environment only (docs/apps.md "Secrets")."""
    hidden = {name for name, value in secret_env if env.get(name) == value}
    shown = {name: value for name, value in env.items() if name not in hidden}
    return [string.Template(arg).safe_substitute(shown) for arg in command]


def host_capacity(directory: Path) -> Capacity:
    """This machine's CPUs and RAM, and the free disk under `directory`."""
    cores = len(os.sched_getaffinity(0))
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    disk_gb = shutil.disk_usage(directory).free // 1024**3
    return Capacity(cores, ram_mb, disk_gb)


GIB: Final = 1024**3
# Following logs: at most LOG_CHUNK bytes per workload every FOLLOW_POLL_S (128 KiB/s), so
# a workload writing faster cannot flood its owner, the node or the agent; what it wrote
# beyond is skipped and the reader told how much.
LOG_CHUNK: Final = 64 * 1024
FOLLOW_POLL_S: Final = 0.5
TAIL_BYTES: Final = 1024 * 1024  # the most a `tail` reads back


def skipped_note(skipped: int) -> bytes:
    """The line a follower gets in place of output it could not keep up with."""
    return f"[flux: {skipped} bytes of output skipped: more than the follow rate]\n".encode()


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
