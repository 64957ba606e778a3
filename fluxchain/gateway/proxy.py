"""HAProxy as the gateway's child, in master-worker mode, and tables applied to it.

A table whose shape (backends, host names, TCP ports) is unchanged is applied through the
runtime API alone: each changed slot gets `set server ... addr ... port ...` and `state
ready`, each emptied slot `state maint`; no reload, no connection touched. A new shape is
written as a new config, checked by `haproxy -c`, and loaded by SIGUSR2 to the master: the
new worker takes over the listening sockets and the old one finishes its connections, for
up to `hard-stop-after` (haproxy.py), so a reload drops no connection shorter than that.
Reloads are at most one per `RELOAD_MIN_INTERVAL_S` (the changes of the meantime go in one).
A config HAProxy refuses or fails to load is kept out (the old one serves) and not tried
again until the shape changes; a TCP port another process holds is refused beforehand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fluxchain.gateway.haproxy import (
    HaproxyApiError,
    ProxySettings,
    RuntimeApi,
    render_config,
    render_hosts_map,
    slot_name,
)
from fluxchain.gateway.routes import EMPTY, Backend, RouteTable, Server, without_tcp_ports

log = logging.getLogger("fluxchain.gateway")

START_TIMEOUT_S: Final = 15.0
RELOAD_TIMEOUT_S: Final = 15.0
# Shape reloads (an app or a host name added, a TCP port) are at most this often: the
# changes of the meantime go in one reload, and each reload leaves an old worker holding
# its connections for up to `hard-stop-after` (haproxy.py), so this bounds how many.
RELOAD_MIN_INTERVAL_S: Final = 10.0


class ProxyError(Exception):
    """HAProxy could not be started, or refused a config."""


@dataclass(slots=True)
class ProxyStats:
    reloads: int = 0
    runtime_updates: int = 0
    refused_configs: int = 0
    deferred_reloads: int = 0  # passes whose new shape waited for RELOAD_MIN_INTERVAL_S
    last_error: str = ""
    slots: dict[str, list[Server | None]] = field(default_factory=dict)


def assign_slots(
    table: RouteTable, held: dict[str, list[Server | None]]
) -> tuple[dict[str, list[Server | None]], list[tuple[str, str, Server | None]]]:
    """Slots for `table`, keeping every server that stays where it is.

    Returns the new slots and the runtime changes `(backend, slot, server or None)` from
    `held` to them (backends new to `held` are listed whole)."""
    slots: dict[str, list[Server | None]] = {}
    changes: list[tuple[str, str, Server | None]] = []
    for backend in table.proxied():
        before = list(held.get(backend.name, []))[: backend.slots]
        before += [None] * (backend.slots - len(before))
        wanted = list(backend.servers[: backend.slots])
        now: list[Server | None] = [s if s in wanted else None for s in before]
        for server in wanted:
            if server not in now:
                now[now.index(None)] = server
        slots[backend.name] = now
        for i, (old, new) in enumerate(zip(before, now, strict=True)):
            if old != new:
                changes.append((backend.name, slot_name(i), new))
    return slots, changes


def _bind_error(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on now (None: it can)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as HAProxy binds: a port in TIME_WAIT is free, one another socket holds is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _running(pid: int) -> bool:
    """Is `pid` a live process? An exited one nobody reaped yet (a zombie: its parent, the
    killed gateway, is gone) holds no socket and counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Proxy:
    """One HAProxy master (and its worker) serving the gateway's tables."""

    def __init__(
        self,
        settings: ProxySettings,
        binary: str = "haproxy",
        reload_interval_s: float = RELOAD_MIN_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.binary = binary
        self.reload_interval_s = reload_interval_s
        self._last_reload = -float("inf")
        self.api = RuntimeApi(settings.admin_socket)
        self.stats = ProxyStats()
        self._table = EMPTY  # what the running config was rendered from
        # The shape of a config that HAProxy refused or failed to load: not tried again
        # until the shape changes, so one bad table cannot hold up every pass.
        self._failed_shape: tuple[object, ...] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def pid_file(self) -> Path:
        return self.settings.state_dir / "haproxy.pid"

    async def _stop_leftover(self) -> None:
        """A gateway that was SIGKILLed leaves its HAProxy (own session) holding the ports:
        the master named in the pid file, if it still runs this state dir's config, is
        stopped before a new one starts."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return
        if str(self.settings.config_path).encode() not in cmdline:
            return  # the pid was reused by something else
        log.warning("stopping the HAProxy a previous gateway left running (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def start(self, table: RouteTable = EMPTY) -> None:
        """Write the config for `table` and start HAProxy; return once it answers."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await self._stop_leftover()
        for sock in (self.settings.admin_socket, self.settings.master_socket):
            sock.unlink(missing_ok=True)
        table = without_tcp_ports(table, self._unavailable_ports(table))
        slots, _ = assign_slots(table, {})
        await self._write_checked(table, slots)
        out = (self.settings.state_dir / "haproxy.log").open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                "-W",  # master-worker: SIGUSR2 reloads with no dropped connection
                "-S",  # relative to the state dir, as the admin socket (haproxy.py)
                f"unix@{self.settings.master_socket.name},mode,600",
                "-p",
                str(self.pid_file),
                "-f",
                str(self.settings.config_path),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.settings.state_dir,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise ProxyError(f"haproxy exited with {self._process.returncode}; see haproxy.log")
            with contextlib.suppress(HaproxyApiError):
                await self.api.info_pid()
                break
            if time.monotonic() > deadline:
                raise ProxyError("haproxy did not answer on its admin socket")
            await asyncio.sleep(0.05)
        self._table, self.stats.slots = table, slots

    async def apply(self, table: RouteTable) -> RouteTable:
        """Make HAProxy serve `table`: runtime updates, or a reload if its shape changed.

        Returns the table asked for without the TCP ports this machine cannot listen on
        (refused `tcp_port_unavailable`). When a new shape cannot be loaded, the running
        config keeps serving and its backends still get every membership change through
        the runtime API: one app's bad table never freezes the others' failover."""
        table = without_tcp_ports(table, self._unavailable_ports(table))
        shape = table.shape()
        changed = shape != self._table.shape() and shape != self._failed_shape
        if changed and time.monotonic() - self._last_reload < self.reload_interval_s:
            self.stats.deferred_reloads += 1  # a later pass loads it, with what came since
        elif changed:
            slots, _ = assign_slots(table, self.stats.slots)
            try:
                await self._reload(table, slots)
                self._failed_shape = None
                return table
            except ProxyError as exc:
                self._failed_shape = shape
                self.stats.refused_configs += 1
                self.stats.last_error = str(exc)
                log.error("new config not loaded, the running one keeps serving: %s", exc)
        if shape == self._table.shape():
            self._failed_shape = None
        running = self._within_running_config(table)
        slots, changes = assign_slots(running, self.stats.slots)
        for backend, slot, server in changes:
            await self.api.set_server(backend, slot, server)
            self.stats.runtime_updates += 1
            log.info("%s/%s -> %s", backend, slot, "maint" if server is None else server.address)
        self._table, self.stats.slots = running, slots
        return table

    def _within_running_config(self, table: RouteTable) -> RouteTable:
        """`table`'s membership for the backends the running config has (same name, mode
        and slots); a running backend `table` lacks gets no server."""
        wanted = {(b.name, b.mode, b.slots): b for b in table.proxied()}
        backends = tuple(
            wanted.get((b.name, b.mode, b.slots), Backend(b.name, b.app, b.mode, b.slots, ()))
            for b in self._table.proxied()
        )
        t = self._table
        return RouteTable(backends, t.hosts, t.tcp_ports, t.udp_ports, table.refusals)

    def _unavailable_ports(self, table: RouteTable) -> dict[int, str]:
        """The TCP listen ports new to the running config that this machine will not let
        HAProxy bind (another process listens there, or a privileged port): `haproxy -c`
        binds nothing, so a reload would pass the check and fail to load."""
        held = {port for port, _ in self._table.tcp_ports}
        out = {}
        for port, _ in table.tcp_ports:
            if port not in held:
                why = _bind_error(self.settings.bind_host, port)
                if why is not None:
                    out[port] = why
        return out

    async def _reload(self, table: RouteTable, slots: dict[str, list[Server | None]]) -> None:
        """Check, write and load a config of a new shape; ProxyError when HAProxy refuses
        it or does not load it in time (the old worker then keeps serving)."""
        await self._write_checked(table, slots)
        before = await self.api.info_pid()
        assert self._process is not None
        self._last_reload = time.monotonic()
        self._process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:
            with contextlib.suppress(HaproxyApiError):
                if await self.api.info_pid() != before:
                    break
            if time.monotonic() > deadline:
                raise ProxyError("haproxy did not load the new config in time")
            await asyncio.sleep(0.05)
        self.stats.reloads += 1
        self._table, self.stats.slots = table, slots
        log.info(
            "reloaded haproxy: %d backends, %d host names", len(table.backends), len(table.hosts)
        )

    async def _write_checked(
        self, table: RouteTable, slots: dict[str, list[Server | None]]
    ) -> None:
        """Write the config and map, after `haproxy -c` accepted them as new files."""
        s = self.settings
        candidate = s.config_path.with_suffix(".new")
        hosts = s.hosts_map.with_suffix(".new")
        hosts.write_text(render_hosts_map(table))
        text = render_config(table, slots, s).replace(str(s.hosts_map), str(hosts))
        candidate.write_text(text)
        check = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            "-f",
            str(candidate),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=s.state_dir,
        )
        output, _ = await check.communicate()
        if check.returncode != 0:
            raise ProxyError(output.decode(errors="replace").strip()[-2_000:])
        hosts.replace(s.hosts_map)
        s.config_path.write_text(render_config(table, slots, s))
        candidate.unlink()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the master and its worker (SIGTERM, then SIGKILL)."""
        proc = self._process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self._process = None
