"""HAProxy as the gateway's child, in master-worker mode, and tables applied to it.

HAProxy cannot add a backend at runtime, so the config declares a **pool** of HTTP
backends (`gw_http_1..N`, each with `POOL_SLOTS` server slots or more) and the gateway
assigns one to each app's HTTP port at runtime: its servers through `set server ... addr
... port ...` and `state ready`, its host names through the hosts map (`add map`/`set map`/
`del map` on the admin socket). So a new app, an app gone, an instance moved or a host
dead is applied with no reload and no connection touched. Each config is written with
`SPARE_BACKENDS` free pool backends.

A reload happens only when the config's **layout** must change: the pool runs out (or an
app needs more slots than any free pool backend has), or the set of TCP listen ports
changes. The new config keeps every backend in use under its name and slots, adds free
ones, is checked by `haproxy -c`, and is loaded by SIGUSR2 to the master: the new worker
takes over the listening sockets and the old one finishes its connections, for up to
`hard-stop-after` (haproxy.py), so a reload drops no connection shorter than that.
Reloads are at most one per `RELOAD_MIN_INTERVAL_S` (the changes of the meantime go in
one), and at most `RELOADS_PER_HARD_STOP` in any `hard-stop-after` span, fewer than
`mworker-max-reloads`: an app owner who moves its TCP port over and over cannot make
HAProxy kill the old worker that holds another app's long connection. A config HAProxy
refuses or fails to load is kept out (the old one serves) and not tried again until the
layout changes; a TCP port another process holds is refused beforehand.
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
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fluxchain.gateway.haproxy import (
    HARD_STOP_AFTER_S,
    RELOADS_PER_HARD_STOP,
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
# The HTTP backend pool (module docstring). A config is written with this many free pool
# backends, so that many apps can arrive before the next reload: 16 backends of 8 slots
# are 128 servers in maintenance, nothing next to HAProxy's cost of one reload.
SPARE_BACKENDS: Final = 16
# Server slots of a pool backend: an app of up to 6 instances (SLOT_HEADROOM of
# routes.py adds 2). An app that needs more gets a backend of its own size at a reload.
POOL_SLOTS: Final = 8
POOL_PREFIX: Final = "gw_http_"

Pool = tuple[tuple[str, int], ...]  # (pool backend, server slots), in config order


class ProxyError(Exception):
    """HAProxy could not be started, or refused a config."""


@dataclass(slots=True)
class ProxyStats:
    reloads: int = 0
    runtime_updates: int = 0
    refused_configs: int = 0
    deferred_reloads: int = 0  # passes whose new layout waited for RELOAD_MIN_INTERVAL_S
    map_updates: int = 0  # host names added, changed or removed through the runtime API
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


def plan_pool(
    table: RouteTable, pool: Pool, held: Mapping[str, str]
) -> tuple[dict[str, str], list[Backend]]:
    """Each HTTP backend of `table` -> a pool backend with enough slots, at runtime.

    An app keeps the pool backend it holds (`held`) while that has enough slots; a new one
    gets the smallest free backend that fits, largest apps first. An app that outgrew its
    backend moves to a free one that fits, or, when none does, stays where it is (served
    by as many servers as fit) and is listed as without room. A backend `held` for an
    app that left or moved is not reused in the same pass (requests routed to it a moment
    ago may still be under way there): it is free from the next pass. Returns the
    assignment and the backends that found no room (a reload must grow the pool)."""
    slots_of = dict(pool)
    assigned: dict[str, str] = {}
    for backend in _http_backends(table):
        mine = held.get(backend.name)
        if mine is not None and slots_of.get(mine, 0) >= backend.slots:
            assigned[backend.name] = mine
    busy = set(held.values()) | set(assigned.values())
    free = [(slots, _pool_index(name), name) for name, slots in pool if name not in busy]
    unplaced: list[Backend] = []
    for backend in sorted(_http_backends(table), key=lambda b: (-b.slots, b.name)):
        if backend.name in assigned:
            continue
        fits = [entry for entry in free if entry[0] >= backend.slots]
        if not fits:
            unplaced.append(backend)
            if backend.name in held and held[backend.name] in slots_of:
                assigned[backend.name] = held[backend.name]  # outgrown: kept until a reload
            continue
        pick = min(fits)
        free.remove(pick)
        assigned[backend.name] = pick[2]
    return assigned, unplaced


def grow_pool(
    table: RouteTable, pool: Pool, held: Mapping[str, str], spare: int = SPARE_BACKENDS
) -> tuple[Pool, dict[str, str]]:
    """The pool of a new config and every HTTP backend's place in it.

    Every pool backend that stays in use keeps its name and slots; an app that found no
    room gets a new backend of its own size (at least POOL_SLOTS); free backends are kept
    or added up to `spare`, the lowest numbered first (a pool shrinks back at a reload
    after many apps left)."""
    # in a new config, a backend freed in this pass may be reused at once: the new
    # worker never routed the old app to it
    live = {b.name for b in _http_backends(table)}
    assigned, unplaced = plan_pool(table, pool, {n: p for n, p in held.items() if n in live})
    next_index = max((_pool_index(name) for name, _ in pool), default=0) + 1
    added = []
    for backend in unplaced:
        name = f"{POOL_PREFIX}{next_index}"
        next_index += 1
        added.append((name, max(POOL_SLOTS, backend.slots)))
        assigned[backend.name] = name  # an outgrown backend it leaves is free again
    used = set(assigned.values())
    kept = [(name, slots) for name, slots in pool if name in used] + added
    free = [(name, slots) for name, slots in pool if name not in used][:spare]
    while len(free) < spare:
        free.append((f"{POOL_PREFIX}{next_index}", POOL_SLOTS))
        next_index += 1
    grown = sorted(kept + free, key=lambda entry: _pool_index(entry[0]))
    return tuple(grown), assigned


def physical_table(table: RouteTable, pool: Pool, assigned: Mapping[str, str]) -> RouteTable:
    """What HAProxy serves: every pool backend (with the servers of the app assigned to
    it, free ones empty), the TCP listens of `table`, and host names mapped to pool
    backends (a name of an app with no pool backend yet is left out: 404 until then)."""
    app_of = {phys: name for name, phys in assigned.items()}
    http = {b.name: b for b in _http_backends(table)}
    backends = [_pooled(phys, slots, http.get(app_of.get(phys, ""))) for phys, slots in pool]
    backends += [b for b in table.proxied() if b.mode == "tcp"]
    hosts = tuple((host, assigned[b]) for host, b in table.hosts if b in assigned)
    return RouteTable(tuple(backends), hosts, table.tcp_ports, table.udp_ports, table.refusals)


def layout(table: RouteTable) -> tuple[object, ...]:
    """What only a reload can change: the backends HAProxy has (name, mode, slots) and
    its TCP listen ports. Host names and servers change at runtime."""
    return tuple((b.name, b.mode, b.slots) for b in table.proxied()), table.tcp_ports


def pool_of(table: RouteTable) -> Pool:
    """The pool backends of a physical table (`physical_table`)."""
    return tuple((b.name, b.slots) for b in table.proxied() if b.name.startswith(POOL_PREFIX))


def _pooled(phys: str, slots: int, backend: Backend | None) -> Backend:
    if backend is None:
        return Backend(phys, "", "http", slots, ())
    return Backend(phys, backend.app, "http", slots, backend.servers)


def _http_backends(table: RouteTable) -> list[Backend]:
    return [b for b in table.proxied() if b.mode == "http"]


def _pool_index(name: str) -> int:
    return int(name.removeprefix(POOL_PREFIX))


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
        spare_backends: int = SPARE_BACKENDS,
    ) -> None:
        self.settings = settings
        self.binary = binary
        self.reload_interval_s = reload_interval_s
        self.spare_backends = spare_backends
        self._last_reload = -float("inf")
        self._reload_times: deque[float] = deque()  # of the last HARD_STOP_AFTER_S
        self.api = RuntimeApi(settings.admin_socket)
        self.stats = ProxyStats()
        # What HAProxy serves now (`physical_table`: pool backends, TCP listens, host
        # names mapped to pool backends), and each app's HTTP backend -> its pool backend.
        self._table = EMPTY
        self.assigned: dict[str, str] = {}
        self._hosts: dict[str, str] = {}  # the running hosts map, command by command
        # The layout of a config that HAProxy refused or failed to load: not tried again
        # until the layout changes, so one bad table cannot hold up every pass.
        self._failed_layout: tuple[object, ...] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pool(self) -> Pool:
        """The pool backends of the running config."""
        return pool_of(self._table)

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
        pool, assigned = grow_pool(table, (), {}, self.spare_backends)
        physical = physical_table(table, pool, assigned)
        slots, _ = assign_slots(physical, {})
        await self._write_checked(physical, slots)
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
        self._table, self.stats.slots, self.assigned = physical, slots, assigned
        self._hosts = dict(physical.hosts)

    async def apply(self, table: RouteTable) -> RouteTable:
        """Make HAProxy serve `table`: at runtime when the running layout has room for it
        (a new app takes a free pool backend), else by a reload with a grown pool or the
        new TCP ports.

        Returns the table asked for without the TCP ports this machine cannot listen on
        (refused `tcp_port_unavailable`). When a new layout cannot be loaded (or must wait
        for RELOAD_MIN_INTERVAL_S), the running config keeps serving: every app that fits
        in it is routed and every membership change goes through the runtime API, so one
        app's bad table never freezes the others' failover."""
        table = without_tcp_ports(table, self._unavailable_ports(table))
        pool = self.pool
        assigned, unplaced = plan_pool(table, pool, self.assigned)
        candidate = physical_table(table, pool, assigned)
        if unplaced or layout(candidate) != layout(self._table):
            grown, grown_assigned = grow_pool(table, pool, self.assigned, self.spare_backends)
            target = physical_table(table, grown, grown_assigned)
            wanted = layout(target)
            if wanted == layout(self._table) or wanted == self._failed_layout:
                pass  # room frees up next pass (a backend just released), or a known failure
            elif (
                time.monotonic() - self._last_reload < self.reload_interval_s
                or not self._reload_budget_left()
            ):
                self.stats.deferred_reloads += 1  # a later pass loads it, with what came since
            else:
                slots, _ = assign_slots(target, self.stats.slots)
                try:
                    await self._reload(target, slots)
                    self.assigned = grown_assigned
                    self._failed_layout = None
                    return table
                except ProxyError as exc:
                    self._failed_layout = wanted
                    self.stats.refused_configs += 1
                    self.stats.last_error = str(exc)
                    log.error("new config not loaded, the running one keeps serving: %s", exc)
        else:
            self._failed_layout = None
        await self._cut_reused(assigned)
        await self._apply_runtime(self._within_running_config(candidate))
        self.assigned = assigned
        return table

    def _reload_budget_left(self) -> bool:
        """May a reload happen now? At most RELOADS_PER_HARD_STOP in the last
        HARD_STOP_AFTER_S (haproxy.py: fewer than mworker-max-reloads)."""
        now = time.monotonic()
        while self._reload_times and now - self._reload_times[0] >= HARD_STOP_AFTER_S:
            self._reload_times.popleft()
        return len(self._reload_times) < RELOADS_PER_HARD_STOP

    async def _cut_reused(self, assigned: Mapping[str, str]) -> None:
        """End every stream still on a pool backend that goes to another app now, before
        its slots take that app's servers. A departed app's request in flight there would
        otherwise be retried (`retry-on`, `option redispatch`) on the new app's servers
        when its own instance drops the connection: its user's cookies and Authorization
        header delivered to another owner's app. Its client gets an error instead."""
        before = {phys: app for app, phys in self.assigned.items()}
        slots_of = dict(self.pool)
        for app, phys in sorted(assigned.items()):
            if before.get(phys) == app:
                continue
            for i in range(slots_of.get(phys, 0)):
                answer = await self.api.command(f"shutdown sessions server {phys}/{slot_name(i)}")
                if answer.strip():
                    raise HaproxyApiError(f"shutdown sessions {phys}/{slot_name(i)}: {answer}")

    async def _apply_runtime(self, running: RouteTable) -> None:
        """Servers and host names of `running` (the running config's layout) through the
        runtime API. Order keeps every request answered: servers join first, then host
        names move to their backends, then servers leave."""
        slots, changes = assign_slots(running, self.stats.slots)
        for backend, slot, server in changes:
            if server is not None:
                await self.api.set_server(backend, slot, server)
                self.stats.runtime_updates += 1
                log.info("%s/%s -> %s", backend, slot, server.address)
        await self._apply_hosts(dict(running.hosts))
        for backend, slot, server in changes:
            if server is None:
                await self.api.set_server(backend, slot, None)
                self.stats.runtime_updates += 1
                log.info("%s/%s -> maint", backend, slot)
        self._table, self.stats.slots = running, slots

    async def _apply_hosts(self, hosts: dict[str, str]) -> None:
        """The running hosts map made equal to `hosts`, one command per changed name
        (`_hosts` follows each command, so a failed pass resumes where it stopped); the
        file is rewritten too, for the operator and for the next start."""
        if hosts == self._hosts:
            return
        map_file = self.settings.hosts_map
        for host in sorted(hosts):
            if self._hosts.get(host) != hosts[host]:
                known = host in self._hosts
                await self.api.set_host(map_file, host, hosts[host], known=known)
                self._hosts[host] = hosts[host]
                self.stats.map_updates += 1
                log.info("host %s -> %s", host, hosts[host])
        for host in sorted(set(self._hosts) - set(hosts)):
            await self.api.set_host(map_file, host, None, known=True)
            del self._hosts[host]
            self.stats.map_updates += 1
            log.info("host %s -> none", host)
        tmp = map_file.with_suffix(".tmp")
        tmp.write_text(render_hosts_map(self._hosts.items()))
        tmp.replace(map_file)

    def _within_running_config(self, physical: RouteTable) -> RouteTable:
        """`physical`'s servers and host names for the backends the running config has
        (same name, mode and slots); a running backend `physical` lacks gets no server."""
        wanted = {(b.name, b.mode, b.slots): b for b in physical.proxied()}
        backends = tuple(
            wanted.get((b.name, b.mode, b.slots), Backend(b.name, b.app, b.mode, b.slots, ()))
            for b in self._table.proxied()
        )
        running = {b.name for b in backends}
        hosts = tuple((h, b) for h, b in physical.hosts if b in running)
        t = self._table
        return RouteTable(backends, hosts, t.tcp_ports, t.udp_ports, physical.refusals)

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
        self._reload_times.append(self._last_reload)
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
        self._hosts = dict(table.hosts)
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
        hosts.write_text(render_hosts_map(table.hosts))
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
