"""HAProxy's side: the config a routing table renders to, and a client of its runtime API.

The config depends only on the table's shape (backends, host names, TCP ports) plus the
servers known at render time, so a reload carries the current membership; every later
membership change goes through the runtime API on the admin socket with no reload.
Each backend has `slots` servers named s1..sN, as a `server-template` would name them;
a free slot is in maintenance at an unroutable address.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fluxchain.gateway.routes import RouteTable, Server

UNKNOWN_HOST_BACKEND: Final = "gw_unknown_host"
PARKED: Final = "127.0.0.1:9"  # a free slot's address (discard port), never used: in maint
RUNTIME_TIMEOUT_S: Final = 5.0
# How long an old worker keeps its connections after a reload, and how many reloads the
# gateway makes at most in any span of that length (proxy.py): each reload may leave one
# old worker (a few MB) behind for as long as it holds a connection. mworker-max-reloads is
# above that count, so a worker is never killed for the reloads another app forced.
HARD_STOP_AFTER_S: Final = 1800
RELOADS_PER_HARD_STOP: Final = 60
MWORKER_MAX_RELOADS: Final = RELOADS_PER_HARD_STOP + 10
# How long an established TCP stream or upgraded websocket may sit idle in both directions.
# Without it HAProxy holds such a stream to `timeout client`/`timeout server` (30 s), and
# cuts every database session or websocket that is quiet for half a minute.
TUNNEL_TIMEOUT_S: Final = 3600


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """What the operator chose: where clients connect, and the health-check cadence."""

    bind_host: str
    http_port: int
    state_dir: Path
    check_interval_ms: int = 500
    # A server that is down is checked this often: a new instance its agent reported
    # running before its program listened fails its first check, and is served from the
    # first check after it listens (a TCP connect: cheap even for a dead host's slot).
    down_check_interval_ms: int = 100
    connect_timeout_ms: int = 500
    client_timeout_s: int = 30
    server_timeout_s: int = 30
    tunnel_timeout_s: int = TUNNEL_TIMEOUT_S

    @property
    def admin_socket(self) -> Path:
        return self.state_dir / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.state_dir / "master.sock"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def hosts_map(self) -> Path:
        return self.state_dir / "hosts.map"


def slot_name(i: int) -> str:
    return f"s{i + 1}"


def render_config(
    table: RouteTable, slots: dict[str, list[Server | None]], s: ProxySettings
) -> str:
    """HAProxy's config for `table`, with `slots[backend][i]` in slot i (None: free)."""
    lines = [
        "# written by `fluxchain gateway`; it rewrites this file when the set of apps changes",
        "global",
        # relative to HAProxy's working directory, the state dir: a unix socket path is at
        # most 107 bytes, and a state dir may be deep (HAProxy adds a suffix while binding)
        f"    stats socket unix@{s.admin_socket.name} mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        # An old worker keeps its connections this long after a reload (a database
        # session, a websocket of an app the reload did not concern). The gateway reloads
        # at most RELOADS_PER_HARD_STOP times in any such span (proxy.py), fewer than
        # mworker-max-reloads, so no worker is killed for its reload count before then:
        # that count bounds only the old workers that hold connections.
        f"    hard-stop-after {HARD_STOP_AFTER_S}s",
        f"    mworker-max-reloads {MWORKER_MAX_RELOADS}",
        "",
        "defaults",
        f"    timeout connect {s.connect_timeout_ms}ms",
        f"    timeout client {s.client_timeout_s}s",
        f"    timeout server {s.server_timeout_s}s",
        # an established TCP stream (mode tcp) or websocket is a tunnel: this replaces both
        f"    timeout tunnel {s.tunnel_timeout_s}s",
        "    timeout queue 5s",
        "    timeout http-request 10s",
        f"    timeout check {s.connect_timeout_ms}ms",
        # A failed connection is retried, and the retry goes to another server.
        "    retries 3",
        "    option redispatch 1",
        # rise 1: a slot that leaves maintenance serves after one good check; fall 2
        # keeps one lost probe from flapping a server. downinter: ProxySettings.
        f"    default-server inter {s.check_interval_ms}ms fastinter {s.check_interval_ms}ms"
        f" downinter {s.down_check_interval_ms}ms rise 1 fall 2",
        "",
        "frontend gw_http",
        "    mode http",
        f"    bind {s.bind_host}:{s.http_port}",
        "    option forwardfor",
        # Host header without its port, lowercased, looked up in the map of host names.
        "    http-request set-var(txn.route) req.hdr(host),field(1,:),lower,"
        f"map_str({s.hosts_map},{UNKNOWN_HOST_BACKEND})",
        "    use_backend %[var(txn.route)]",
        f"    default_backend {UNKNOWN_HOST_BACKEND}",
        "",
        f"backend {UNKNOWN_HOST_BACKEND}",
        "    mode http",
        "    http-request return status 404 content-type text/plain"
        ' string "no app at this host\\n"',
    ]
    tcp_of = {name: port for port, name in table.tcp_ports}
    for backend in table.proxied():
        lines.append("")
        if backend.mode == "http":
            lines += [
                f"backend {backend.name}",
                "    mode http",
                "    balance roundrobin",
                # Any retryable failure (refused, reset, timeout before a response, 502-504)
                # is retried on another server before the client hears of it.
                "    retry-on all-retryable-errors",
            ]
        else:
            lines += [
                f"listen {backend.name}",
                "    mode tcp",
                f"    bind {s.bind_host}:{tcp_of[backend.name]}",
                "    balance leastconn",
            ]
        held = slots.get(backend.name, [])
        for i in range(backend.slots):
            server = held[i] if i < len(held) else None
            if server is None:
                lines.append(f"    server {slot_name(i)} {PARKED} check disabled")
            else:
                lines.append(f"    server {slot_name(i)} {server.address} check")
    return "\n".join(lines) + "\n"


def render_hosts_map(hosts: Iterable[tuple[str, str]]) -> str:
    """The hosts map file: one `host backend` line per name, sorted."""
    return "".join(f"{host} {backend}\n" for host, backend in sorted(hosts))


class HaproxyApiError(Exception):
    """HAProxy's runtime API refused a command or did not answer."""


class RuntimeApi:
    """HAProxy's runtime API over its admin socket: one command per connection."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def command(self, line: str) -> str:
        """Send one command; return HAProxy's answer (raise HaproxyApiError on failure)."""
        try:
            async with asyncio.timeout(RUNTIME_TIMEOUT_S):
                reader, writer = await _open_unix(self.socket)
                try:
                    writer.write(line.encode() + b"\n")
                    await writer.drain()
                    answer = (await reader.read()).decode(errors="replace")
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            raise HaproxyApiError(f"{line!r}: {exc}") from None
        lowered = answer.lower()
        if "unknown command" in lowered or "no such" in lowered or "require" in lowered:
            raise HaproxyApiError(f"{line!r}: {answer.strip()}")
        return answer

    async def set_server(self, backend: str, slot: str, server: Server | None) -> None:
        """Point a slot at `server` and put it in rotation, or take it out (None)."""
        if server is None:
            await self.command(f"set server {backend}/{slot} state maint")
            return
        await self.command(f"set server {backend}/{slot} addr {server.host} port {server.port}")
        await self.command(f"set server {backend}/{slot} state ready")

    async def set_host(
        self, map_file: Path, host: str, backend: str | None, *, known: bool
    ) -> None:
        """Route `host` to `backend` in the running map (`add map`, or `set map` when the
        map already has it), or drop it (None: `del map`). No reload: the next request
        with that Host header is looked up in the changed map."""
        if backend is None:
            line = f"del map {map_file} {host}"
        else:
            line = f"{'set' if known else 'add'} map {map_file} {host} {backend}"
        answer = await self.command(line)
        if answer.strip():  # these answer nothing on success ("Key not found.", ...)
            raise HaproxyApiError(f"{line!r}: {answer.strip()}")

    async def info_pid(self) -> int:
        """The serving worker's pid (`show info`)."""
        for line in (await self.command("show info")).splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise HaproxyApiError("show info has no Pid")

    async def server_states(self, backend: str) -> dict[str, tuple[str, str]]:
        """slot -> (address, HAProxy's operational state: "UP 1/2", "DOWN", "MAINT"...), from
        `show stat` (fields 17 `status` and 73 `addr`)."""
        out: dict[str, tuple[str, str]] = {}
        for line in (await self.command("show stat")).splitlines():
            fields = line.split(",")
            if (
                len(fields) > 73
                and fields[0] == backend
                and fields[1] not in ("BACKEND", "FRONTEND")
            ):
                out[fields[1]] = (fields[73], fields[17])
        return out


async def _open_unix(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a unix socket whatever the length of its path: a long one is reached
    through a descriptor of its directory (/proc/self/fd/N/name), which the kernel resolves
    without the 107-byte limit of a socket address."""
    if len(str(path).encode()) < 100:
        return await asyncio.open_unix_connection(str(path))
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)
