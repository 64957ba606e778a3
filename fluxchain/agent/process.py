"""The local-process runtime: each component's command runs as a process on this host.

For hosts without Docker, devnets and tests. The image is not used: the component must
carry a command (`$PORT`, `$HOST` and the spec's variables are expanded in it; sealed
secrets never are: they reach the process through its environment only). The
process publishes its ports itself on the agent's bind address (PORT is the first host
port). Limits, as rlimits on the process (inherited by its children):
- RAM as RLIMIT_DATA (private writable memory). Not RLIMIT_AS: Go, Java and Node reserve
  address space far beyond what they use, and would not start under it.
- RLIMIT_FSIZE at disk_gb: no single file past the quota (the writer gets SIGXFSZ);
  the whole data directory is measured by the agent's disk watchdog (`disk_usage`).
- RLIMIT_CORE 0: a crash does not dump its memory onto the node's disk.
- RLIMIT_NPROC at the user's current task count plus PIDS_LIMIT: a fork bomb stops
  there, while the node and agent (same user, their own unlimited rlimit) can still
  fork. Meaningless for root, which the kernel exempts: run the agent as a plain user.
- CPU as an affinity to ceil(cpu) cores.
Each process runs in its own session, so it outlives an agent restart
like a container does; a record per workload (pid and kernel start time, so a reused pid
is never mistaken for it) lets a restarted agent find it again.

It runs whatever command a spec on the chain names, as the agent's user: use it for
devnets and tests, not for hosting strangers' apps (that is what the Docker runtime is for).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Final

from fluxchain.agent.runtime import (
    FOLLOW_POLL_S,
    GIB,
    LOG_CHUNK,
    TAIL_BYTES,
    Capacity,
    RuntimeUnavailableError,
    WorkloadError,
    expand_command,
    host_capacity,
    skipped_note,
    tree_usage,
    volume_dir,
    workload_env,
)
from fluxchain.agent.workloads import Observed, Workload

log = logging.getLogger("fluxchain.agent")

STOP_GRACE_S: Final = 5.0
LOG_LIMIT: Final = 8 * 1024 * 1024  # a workload's log is cut back to nothing past this
BASE_ENV: Final = ("PATH", "LANG", "LC_ALL", "TZ")
# Tasks (processes and threads) a workload may add: the Docker runtime's PidsLimit.
PIDS_LIMIT: Final = 512


def user_tasks(uid: int) -> int:
    """Tasks (threads included, as RLIMIT_NPROC counts them) running as `uid` now."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[1]) == uid:
            count += int(fields.get("Threads", "1"))
    return count


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone/zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in (...) may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[19])


class ProcessRuntime:
    name = "process"

    def __init__(self, directory: Path, bind: str) -> None:
        self.directory = directory
        self.bind = bind
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def _record(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _data(self, key: str) -> Path:
        return self.directory / key

    async def check(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RuntimeUnavailableError(f"cannot write {self.directory}: {exc}") from None

    async def capacity(self) -> Capacity:
        return host_capacity(self.directory)

    def _records(self) -> dict[str, dict[str, Any]]:
        out = {}
        for path in self.directory.glob("*.json"):
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                log.warning("unreadable workload record %s; ignoring it", path)
        return out

    async def observe(self) -> dict[str, Observed]:
        out = {}
        for key, rec in self._records().items():
            child = self._children.get(key)
            exit_code: int | None = None
            if child is not None and child.pid == rec["pid"]:
                exit_code = child.poll()  # reaps our own child
                running = exit_code is None
            else:
                running = _start_ticks(rec["pid"]) == rec["ticks"]
            self._trim_log(key)
            out[key] = Observed(key, rec["fingerprint"], running, exit_code)
        return out

    def _trim_log(self, key: str) -> None:
        path = self.directory / f"{key}.log"
        with contextlib.suppress(OSError):
            if path.stat().st_size > LOG_LIMIT:
                os.truncate(path, 0)  # the writer appends (O_APPEND), so this is safe

    async def start(self, workload: Workload) -> None:
        if not workload.command:
            raise WorkloadError("the process runtime needs a command (it cannot run images)")
        port = workload.ports[0][0] if workload.ports else None
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        # every component of the instance listens on this node's bind address at its host ports
        env.update(workload_env(workload, self.bind, port, components_host=self.bind))
        for published in workload.ports:  # tcp or udp alike: a process binds what it likes
            env[f"FLUX_PORT_{published.container}"] = str(published.host)
        argv = expand_command(workload.command, env, workload.secret_env)
        data = self._data(workload.key)
        data.mkdir(parents=True, exist_ok=True)
        for mount, _mode in workload.volumes:  # relative to the working directory
            self.volume_path(workload.key, mount).mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{workload.key}.log").open("ab") as out:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=data,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the agent, like a container
                )
            except OSError as exc:
                raise WorkloadError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
            except ValueError as exc:  # a NUL in an argument or a variable: exec refuses it
                raise WorkloadError(f"cannot run {argv[0]!r}: {exc}") from None
        self._limit(proc.pid, workload)
        ticks = _start_ticks(proc.pid)
        self._children[workload.key] = proc
        record = {
            "pid": proc.pid,
            "ticks": ticks,
            "fingerprint": workload.fingerprint,
            "app": workload.app,
            "argv": argv,
            "started": time.time(),
        }
        tmp = self._record(workload.key).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self._record(workload.key))

    def _limit(self, pid: int, workload: Workload) -> None:
        # Applied right after the spawn, not in a preexec hook (unsafe with threads); what
        # the process allocated in its first microseconds is all it gets unchecked.
        ram = workload.ram_mb * 1024 * 1024
        limits = [
            (resource.RLIMIT_DATA, ram),
            (resource.RLIMIT_FSIZE, workload.disk_gb * GIB),
            (resource.RLIMIT_CORE, 0),
        ]
        if os.geteuid() != 0:  # the kernel does not apply RLIMIT_NPROC to root
            limits.append((resource.RLIMIT_NPROC, user_tasks(os.geteuid()) + PIDS_LIMIT))
        for which, wanted in limits:
            with contextlib.suppress(OSError, ProcessLookupError, ValueError):
                _soft, hard = resource.prlimit(pid, which)
                # Raising a hard limit needs privileges: never ask for more than it has.
                value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
                resource.prlimit(pid, which, (value, value))
        cpus = sorted(os.sched_getaffinity(0))
        want = max(1, min(len(cpus), -(-workload.cpu_tenths // 10)))
        first = zlib.crc32(workload.key.encode()) % len(cpus)  # spread apps over the cores
        chosen = {cpus[(first + i) % len(cpus)] for i in range(want)}
        with contextlib.suppress(OSError, ProcessLookupError):
            os.sched_setaffinity(pid, chosen)

    async def remove(self, key: str, *, keep_data: bool) -> None:
        rec = self._records().get(key)
        if rec is not None and _start_ticks(rec["pid"]) == rec["ticks"]:
            await self._stop(key, rec["pid"], rec["ticks"])
        child = self._children.pop(key, None)
        if child is not None:
            child.poll()
        with contextlib.suppress(FileNotFoundError):
            self._record(key).unlink()
        if not keep_data:
            shutil.rmtree(self._data(key), ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{key}.log").unlink()

    async def _stop(self, key: str, pid: int, ticks: int) -> None:
        """SIGTERM its process group, SIGKILL after STOP_GRACE_S."""
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                child = self._children.get(key)
                if child is not None:
                    child.poll()
                if _start_ticks(pid) != ticks:
                    return
                await asyncio.sleep(0.05)
        log.warning("workload %s (pid %d) did not stop", key, pid)

    async def disk_usage(self) -> dict[str, int]:
        """Bytes allocated under each workload's data directory (its working directory)."""
        usage = {}
        for key in self._records():
            usage[key] = await asyncio.to_thread(tree_usage, self._data(key))
        return usage

    def volume_path(self, key: str, mount: str) -> Path:
        """`mount` under the workload's working directory: /var/lib/kv is ./var/lib/kv."""
        return volume_dir(self._data(key), mount)

    async def close(self) -> None:
        self._children.clear()  # the processes keep running; a restarted agent adopts them

    # -- owner operations ------------------------------------------------------------------

    async def logs(self, key: str, tail: int, follow: bool) -> AsyncGenerator[bytes, None]:
        """From the workload's log file (its stdout and stderr); only this key's file."""
        path = self.directory / f"{key}.log"
        size = _size(path)
        if tail:
            start = max(0, size - TAIL_BYTES)
            lines = _read(path, start, size - start).splitlines(keepends=True)
            if start and lines:
                lines = lines[1:]  # the first is cut in the middle
            if lines[-tail:]:
                yield b"".join(lines[-tail:])
        offset = size
        while follow:
            await asyncio.sleep(FOLLOW_POLL_S)
            size = _size(path)
            if size < offset:  # cut back at LOG_LIMIT: read it from its new start
                offset = 0
            if size - offset > 2 * LOG_CHUNK:
                yield skipped_note(size - LOG_CHUNK - offset)
                offset = size - LOG_CHUNK
            if size > offset:
                chunk = _read(path, offset, min(LOG_CHUNK, size - offset))
                offset += len(chunk)
                yield chunk

    async def stats(self, key: str) -> dict[str, Any]:
        """Of the workload's main process, from /proc."""
        rec = self._records().get(key)
        if rec is None:
            return {"running": False}
        pid = int(rec["pid"])
        out: dict[str, Any] = {
            "running": _start_ticks(pid) == rec["ticks"],
            "uptime_s": max(0, round(time.time() - float(rec["started"]))),
            "disk_bytes": await asyncio.to_thread(tree_usage, self._data(key)),
        }
        if out["running"]:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return out
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks = os.sysconf("SC_CLK_TCK")
            out["cpu_seconds"] = round((int(fields[11]) + int(fields[12])) / ticks, 2)
            out["memory_bytes"] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return out

    async def restart(self, workload: Workload) -> None:
        await self.remove(workload.key, keep_data=True)
        await self.start(workload)

    async def redeploy(self, workload: Workload) -> None:
        """There is no image to pull: a restart from the spec's command."""
        await self.restart(workload)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read(path: Path, offset: int, size: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(size)
    except OSError:
        return b""
