"""UDP by port: HAProxy (2.6) proxies no UDP, so the gateway relays it itself.

One relay per routed UDP port listens on the gateway's bind address. Each client address
gets a session: its own socket connected to one instance (round-robin over the backend's
servers when the session starts), so the instance's replies come back to that client. A
session whose instance leaves the table is closed (the client's next datagram opens one on
a live instance); an idle session is closed after `SESSION_IDLE_S`; at most
`MAX_SESSIONS` are kept per port (the least recently used goes first).

Each session is a descriptor of the gateway's own process, which it also needs to reach
its node, HAProxy's admin socket and its state files: every relay draws from one
`DescriptorBudget` that keeps `FD_RESERVE` descriptors of RLIMIT_NOFILE free (a new
client then takes the place of the least recently used session of the port that holds the
most, so a port flooded from many addresses gives up its own sessions, not another
app's), a source prefix (/24, /64) holds at most `MAX_SESSIONS_PER_PREFIX` sessions of a
port, and at most `MAX_OPENING` sessions are being opened at once. There is no health
check: UDP has no connect to probe, so an instance is in rotation while the chain places it and
its host's agent reports it running (a dead host leaves within the report TTL, 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import resource
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from fluxchain.gateway.routes import Server

log = logging.getLogger("fluxchain.gateway")

SESSION_IDLE_S: Final = 60.0
MAX_SESSIONS: Final = 4_096
MAX_SESSIONS_PER_PREFIX: Final = 256  # one /24 or /64 cannot take a port's whole bound
MAX_OPENING: Final = 256  # sessions whose socket is being opened, per port
MAX_WAITING: Final = 8  # datagrams a client's opening session queues
FD_RESERVE: Final = 128  # descriptors no UDP session may take
FD_RECOUNT_EVERY: Final = 64  # sessions taken between two counts of the open descriptors
Address = tuple[str, int]


class DescriptorBudget:
    """The descriptors UDP sessions may take, process-wide: the soft RLIMIT_NOFILE less
    those open less `FD_RESERVE`. Counted from /proc/self/fd when few are left or every
    `FD_RECOUNT_EVERY` sessions, so a flood costs no directory scan per datagram."""

    def __init__(self, reserve: int = FD_RESERVE) -> None:
        self.reserve = reserve
        self._free = 0
        self._since_count = FD_RECOUNT_EVERY

    def _count(self) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:
            used = soft  # cannot tell: assume none is free
        self._free, self._since_count = soft - used, 0

    def take(self) -> bool:
        """One descriptor for a session, if the reserve stays free."""
        if self._free <= 2 * self.reserve or self._since_count >= FD_RECOUNT_EVERY:
            self._count()
        if self._free <= self.reserve:
            return False
        self._free -= 1
        self._since_count += 1
        return True

    def give_back(self) -> None:
        self._free += 1


BUDGET: Final = DescriptorBudget()
# The relays drawing on BUDGET: when it is spent, a new session is taken from the fullest.
_LIVE: Final[set[UdpRelay]] = set()


def prefix_of(address: str) -> str:
    """The source prefix a client's sessions are counted under: its /24 or /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


class _Upstream(asyncio.DatagramProtocol):
    """One session's socket to its instance: replies go back to the client."""

    def __init__(self, relay: UdpRelay, client: Address) -> None:
        self.relay, self.client = relay, client

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay.reply(self.client, data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        self.relay.drop(self.client)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay.received += 1
        self.relay.forward(addr, data)


class UdpRelay:
    """Relays datagrams between clients on `bind_host:port` and a backend's instances."""

    def __init__(self, bind_host: str, port: int, max_sessions: int = MAX_SESSIONS) -> None:
        self.bind_host, self.port, self.max_sessions = bind_host, port, max_sessions
        self.servers: tuple[Server, ...] = ()
        self._turn = itertools.count()
        self._front: asyncio.DatagramTransport | None = None
        # client -> (session transport, its server, last datagram time)
        self._sessions: OrderedDict[Address, tuple[asyncio.DatagramTransport, Server, float]] = (
            OrderedDict()
        )
        self._opening: dict[Address, list[bytes]] = {}  # datagrams waiting for a session
        self._per_prefix: dict[str, int] = {}  # sessions open or opening per source prefix
        self.received = 0  # datagrams read from clients, relayed or not
        self.relayed = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Front(self), local_addr=(self.bind_host, self.port)
        )
        _LIVE.add(self)

    def set_servers(self, servers: Sequence[Server]) -> None:
        """The backend's instances now; sessions on an instance that left are closed."""
        self.servers = tuple(servers)
        for client, (_, server, _) in list(self._sessions.items()):
            if server not in self.servers:
                self.drop(client)

    def forward(self, client: Address, data: bytes) -> None:
        session = self._sessions.get(client)
        if session is not None:
            transport, server, _ = session
            self._sessions[client] = (transport, server, time.monotonic())
            self._sessions.move_to_end(client)
            transport.sendto(data)
            self.relayed += 1
            return
        if client in self._opening:
            if len(self._opening[client]) < MAX_WAITING:
                self._opening[client].append(data)
            return
        prefix = prefix_of(client[0])
        if (
            not self.servers
            or len(self._opening) >= MAX_OPENING
            or self._per_prefix.get(prefix, 0) >= MAX_SESSIONS_PER_PREFIX
        ):
            return  # the datagram is lost, as UDP allows
        if not BUDGET.take():
            # The budget is spent: the port holding the most sessions gives up its least
            # recently used one (this port's own when it holds the most), so a flood of
            # one app's port takes its own sessions, never another app's last ones.
            fullest = max(_LIVE, key=lambda r: (r.sessions, r is self), default=self)
            if not fullest._sessions:
                return
            fullest.drop(next(iter(fullest._sessions)))  # its descriptor is this client's
            BUDGET.take()
        server = self.servers[next(self._turn) % len(self.servers)]
        self._opening[client] = [data]
        self._per_prefix[prefix] = self._per_prefix.get(prefix, 0) + 1
        asyncio.get_running_loop().create_task(self._open(client, server))

    async def _open(self, client: Address, server: Server) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Upstream(self, client), remote_addr=(server.host, server.port)
            )
        except OSError as exc:
            log.warning("udp %d: no session to %s: %s", self.port, server.address, exc)
            self._opening.pop(client, None)
            self._release(client)
            return
        waiting = self._opening.pop(client, [])
        if server not in self.servers or self._front is None:  # it left, or the relay stopped
            transport.close()
            self._release(client)
            return
        self._sessions[client] = (transport, server, time.monotonic())
        while len(self._sessions) > self.max_sessions:
            self.drop(next(iter(self._sessions)))
        for data in waiting:
            transport.sendto(data)
            self.relayed += 1

    def reply(self, client: Address, data: bytes) -> None:
        if self._front is not None:
            self._front.sendto(data, client)

    def drop(self, client: Address) -> None:
        session = self._sessions.pop(client, None)
        if session is not None:
            session[0].close()
            self._release(client)

    def _release(self, client: Address) -> None:
        """A session of `client` (open or opening) is gone: its descriptor and count."""
        BUDGET.give_back()
        prefix = prefix_of(client[0])
        left = self._per_prefix.get(prefix, 0) - 1
        if left > 0:
            self._per_prefix[prefix] = left
        else:
            self._per_prefix.pop(prefix, None)

    def sweep(self) -> None:
        """Close the sessions idle for `SESSION_IDLE_S`."""
        now = time.monotonic()
        for client, (_, _, seen) in list(self._sessions.items()):
            if now - seen > SESSION_IDLE_S:
                self.drop(client)

    def stop(self) -> None:
        _LIVE.discard(self)
        for client in list(self._sessions):
            self.drop(client)
        if self._front is not None:
            with contextlib.suppress(Exception):
                self._front.close()
            self._front = None

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    @property
    def opening(self) -> int:
        """Sessions whose socket is still being opened."""
        return len(self._opening)
