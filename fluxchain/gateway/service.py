"""The gateway's loop: on each confirmed block (and every `poll_s`), read the chain and the
hosting agents, build the routing table, and apply it to HAProxy.

Written to `STATE/status.json` after each pass: the table HAProxy serves (host names, TCP
ports, each backend's servers), what was refused and why, and the reload count.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Final

import aiohttp

from fluxchain.gateway.follower import ChainFollower, NodeUnreachableError, agent_report
from fluxchain.gateway.haproxy import HaproxyApiError, ProxySettings
from fluxchain.gateway.proxy import Proxy, ProxyError
from fluxchain.gateway.routes import (
    EMPTY,
    PlacedApp,
    Refusal,
    Refused,
    RouteTable,
    Workload,
    bounded,
    build_table,
    endpoint_host,
    placed_app_from_json,
    refusal,
    workloads_from_json,
)
from fluxchain.gateway.specports import SpecShapeError
from fluxchain.gateway.udp import UdpRelay
from p2p.netgroup import routable

log = logging.getLogger("fluxchain.gateway")

# A hosting node's last report stays usable this long when its API stops answering: a
# slow answer must not empty a backend. Health checks take a dead host out within a second
# either way, so this bounds only how long a silent node's slot stays (checked) in place.
REPORT_TTL_S: Final = 5.0
# Endpoint names (`Gateway._pin`): how long a pass waits for their lookups together, and
# how long an answer is used before the name is looked up again.
RESOLVE_TIMEOUT_S: Final = 1.0
PIN_TTL_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    node_urls: tuple[str, ...]  # the nodes whose confirmed state it follows, first first
    domain: str  # every app answers at <app>.<domain>
    proxy: ProxySettings
    loopback_is_one_host: bool = False  # devnets on one machine (docs/ingress.md)
    private_is_routable: bool = True  # off: never a node's 10/8, 172.16/12, 100.64/10...
    poll_s: float = 1.0
    haproxy: str = "haproxy"
    # registered endpoint (host:port) -> where this gateway reaches that node instead
    # (`--reach`): for a gateway outside the network whose names the nodes registered
    reach: Mapping[str, str] = field(default_factory=dict)


class Gateway:
    """Follows one node and keeps HAProxy routing to what the chain placed."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.proxy = Proxy(config.proxy, config.haproxy)
        self.table = EMPTY
        self._udp: dict[int, UdpRelay] = {}
        self._apps: list[PlacedApp] = []
        self._bad_apps: list[Refusal] = []
        self._apps_height = -1
        self._reports: dict[str, tuple[float, list[Workload]]] = {}
        self._woken = asyncio.Event()
        self._pins: dict[str, tuple[float, str | None]] = {}  # name -> (when, address)
        self._resolving: dict[str, asyncio.Task[str | None]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Start HAProxy and serve until `stop` is set; HAProxy stops with the gateway."""
        await self.proxy.start()
        log.info(
            "gateway: http://%s:%d routes <app>.%s, following %s",
            self.config.proxy.bind_host,
            self.config.proxy.http_port,
            self.config.domain,
            ", ".join(self.config.node_urls),
        )
        async with aiohttp.ClientSession() as session:
            follower = ChainFollower(list(self.config.node_urls), session)
            stream = asyncio.create_task(follower.follow(lambda _h: self._woken.set()))
            try:
                while not stop.is_set():
                    self._woken.clear()  # a block announced from now on wakes the next pass
                    try:
                        if not self.proxy.alive():  # HAProxy died: a new one, same table
                            log.error("haproxy exited; starting it again (see haproxy.log)")
                            await self.proxy.start(self.table)
                        await self.refresh(session, follower)
                    except (NodeUnreachableError, ProxyError, HaproxyApiError, OSError) as exc:
                        # OSError: no descriptor left, a full disk... a failed pass too
                        log.warning("gateway pass failed, the last table keeps serving: %s", exc)
                    waiter = asyncio.create_task(self._woken.wait())
                    stopper = asyncio.create_task(stop.wait())
                    await asyncio.wait(
                        {waiter, stopper}, timeout=self.config.poll_s, return_when="FIRST_COMPLETED"
                    )
                    waiter.cancel()
                    stopper.cancel()
            finally:
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream
                for relay in self._udp.values():
                    relay.stop()
                for lookup in self._resolving.values():
                    lookup.cancel()
                await self.proxy.stop()

    async def refresh(self, session: aiohttp.ClientSession, follower: ChainFollower) -> None:
        """One pass: confirmed apps (when a block came), agent reports, table, HAProxy."""
        if follower.height != self._apps_height or not follower.connected:
            height = follower.height
            apps, self._bad_apps = _parse_apps(await follower.apps())
            self._apps = [reached(app, self.config.reach) for app in apps]
            self._apps_height = height
        endpoints = {p.node_id: p.endpoint for a in self._apps for p in a.instances if p.endpoint}
        pinned = await self._pin(endpoints.values())
        await self._read_reports(session, endpoints, pinned)
        now = time.monotonic()
        reports = {
            node_id: workloads
            for node_id, (at, workloads) in self._reports.items()
            if node_id in endpoints and now - at <= REPORT_TTL_S
        }
        table = build_table(
            self._apps,
            reports,
            self.config.domain,
            loopback_is_one_host=self.config.loopback_is_one_host,
            private_is_routable=self.config.private_is_routable,
            reserved_ports=frozenset({self.config.proxy.http_port}),
            pinned=pinned,
        )
        if table.refusals != self.table.refusals:
            for refusal in table.refusals:
                log.warning("not routed [%s] %s: %s", refusal.reason, refusal.app, refusal.detail)
        table = await self.proxy.apply(table)
        await self._apply_udp(table)
        self.table = table
        self._write_status()

    async def _apply_udp(self, table: RouteTable) -> None:
        """Start, feed and stop the UDP relays the table names (no HAProxy involved)."""
        servers = table.servers()
        wanted = dict(table.udp_ports)
        for port in set(self._udp) - set(wanted):
            self._udp.pop(port).stop()
        for port, backend in wanted.items():
            relay = self._udp.get(port)
            if relay is None:
                relay = UdpRelay(self.config.proxy.bind_host, port)
                try:
                    await relay.start()
                except OSError as exc:
                    log.error("udp %d: cannot listen: %s", port, exc)
                    continue
                self._udp[port] = relay
            relay.set_servers(servers[backend])
            relay.sweep()

    def _routable(self, ip: str) -> bool:
        return routable(
            ip,
            loopback_is_one_host=self.config.loopback_is_one_host,
            private_is_routable=self.config.private_is_routable,
        )

    async def _pin(self, endpoints: Iterable[str]) -> dict[str, str]:
        """Each endpoint host name resolved once, to the address its report is read at and
        its servers are routed to (HAProxy never resolves a name: no DNS rebinding between
        the gateway's check and HAProxy's connection). A name that does not resolve, or
        resolves to an address the gateway must not route to, is left out.

        Names are resolved together, and a pass waits `RESOLVE_TIMEOUT_S` at most: a name
        whose nameserver is slow (a node owner's own) is left out of this pass while its
        lookup goes on, and its answer serves the passes of the next `PIN_TTL_S`. So a slow
        name delays only its own node's routes, never the pass of every app."""
        names = {endpoint_host(e) for e in endpoints} - {""}
        names = {n for n in names if not is_ip(n)}
        now = time.monotonic()
        for name in names:
            cached = self._pins.get(name)
            fresh = cached is not None and now - cached[0] <= PIN_TTL_S
            if not fresh and name not in self._resolving:
                self._resolving[name] = asyncio.create_task(self._resolve(name))
        waiting = [self._resolving[n] for n in names if n in self._resolving]
        if waiting:
            await asyncio.wait(waiting, timeout=RESOLVE_TIMEOUT_S)
        for name in [n for n, task in self._resolving.items() if task.done()]:
            task = self._resolving.pop(name)
            failed = task.cancelled() or task.exception() is not None
            self._pins[name] = (time.monotonic(), None if failed else task.result())
        for name in set(self._pins) - names:  # a node that left: forgotten
            del self._pins[name]
        return {n: ip for n in sorted(names) if (ip := self._pins.get(n, (0.0, None))[1])}

    async def _resolve(self, name: str) -> str | None:
        """The first address of `name` the gateway may route to (None: none)."""
        return await first_allowed_address(name, self._routable)

    async def _read_reports(
        self, session: aiohttp.ClientSession, endpoints: dict[str, str], pinned: dict[str, str]
    ) -> None:
        async def one(node_id: str, endpoint: str) -> None:
            host = endpoint_host(endpoint)
            ip = pinned.get(host, host)
            if not self._routable(ip):
                return  # never a GET to the gateway's own machine or an unpinned name
            port = endpoint.rpartition(":")[2]
            try:
                body = await agent_report(
                    session, f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                )
            except NodeUnreachableError as exc:
                log.debug("agent report of %s: %s", node_id, exc)
                return
            try:
                workloads = workloads_from_json(body)
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                # whatever a node answers is that node's refusal, never the gateway's end
                log.debug("agent report of %s: %s", node_id, exc)
                return
            self._reports[node_id] = (time.monotonic(), workloads)

        await asyncio.gather(*(one(n, e) for n, e in sorted(endpoints.items())))
        for gone in set(self._reports) - set(endpoints):
            del self._reports[gone]

    def status(self) -> dict[str, Any]:
        t = self.table
        return {
            "height": self._apps_height,
            "http": f"{self.config.proxy.bind_host}:{self.config.proxy.http_port}",
            "domain": self.config.domain,
            "hosts": dict(t.hosts),
            "tcp_ports": {str(port): backend for port, backend in t.tcp_ports},
            "udp_ports": {
                str(port): {
                    "backend": backend,
                    "sessions": self._udp[port].sessions,
                    "received": self._udp[port].received,
                    "relayed": self._udp[port].relayed,
                }
                for port, backend in t.udp_ports
                if port in self._udp
            },
            "backends": {b.name: [s.address for s in b.servers] for b in t.backends},
            "refused": [
                {"reason": str(r.reason), "app": r.app, "detail": r.detail}
                for r in (*self._bad_apps, *t.refusals)
            ],
            # each app's HTTP backend -> the pool backend HAProxy serves it from
            "haproxy_backends": dict(sorted(self.proxy.assigned.items())),
            "pool": {
                "backends": len(self.proxy.pool),
                "free": len(self.proxy.pool) - len(self.proxy.assigned),
            },
            "reloads": self.proxy.stats.reloads,
            "map_updates": self.proxy.stats.map_updates,
            "last_proxy_error": self.proxy.stats.last_error,
            "runtime_updates": self.proxy.stats.runtime_updates,
            "haproxy_pid": self.proxy.pid,
        }

    def _write_status(self) -> None:
        """Best effort: status.json is for the operator, and a file that cannot be written
        (a full disk, no descriptor left) must not stop the gateway routing."""
        path = self.config.proxy.state_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.status(), indent=2) + "\n")
            tmp.replace(path)
        except OSError as exc:
            log.warning("status.json not written: %s", exc)


def reached(app: PlacedApp, reach: Mapping[str, str]) -> PlacedApp:
    """`app` with each instance's endpoint replaced by where the operator said the gateway
    reaches that node (`--reach`). Every rule then applies to the replacement: the report
    is read there, and the node's servers must be on its host."""
    if not reach or not any(p.endpoint.lower() in reach for p in app.instances):
        return app
    instances = tuple(
        replace(p, endpoint=reach.get(p.endpoint.lower(), p.endpoint)) for p in app.instances
    )
    return replace(app, instances=instances)


class LookupQueueFullError(TimeoutError):
    """A `LookupPool`'s queue is full: the lookup would not start in time, refused at once."""


class LookupPool(ThreadPoolExecutor):
    """Threads for name lookups whose queue is bounded: past `max_queued` lookups waiting
    for a thread, `submit` raises `LookupQueueFullError` rather than queue more (a flood of
    names that hang would otherwise grow the queue, and the wait, without end)."""

    def __init__(self, threads: int, max_queued: int, thread_name_prefix: str) -> None:
        super().__init__(threads, thread_name_prefix=thread_name_prefix)
        self.max_queued = max_queued
        self._queued = 0
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        """Lookups submitted that no thread has taken yet."""
        return self._queued

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._queued >= self.max_queued:
                raise LookupQueueFullError(f"{self._queued} name lookups queued")
            self._queued += 1
        taken = threading.Event()

        def leave_queue() -> None:
            if not taken.is_set():
                taken.set()
                with self._lock:
                    self._queued -= 1

        def run() -> Any:
            leave_queue()
            return fn(*args, **kwargs)

        try:
            future = super().submit(run)
        except BaseException:
            leave_queue()
            raise
        # A lookup cancelled while queued never runs: it leaves the count all the same.
        future.add_done_callback(lambda done: leave_queue() if done.cancelled() else None)
        return future


async def first_allowed_address(
    name: str,
    allowed: Callable[[str], bool],
    executor: Executor | None = None,
    timeout: float | None = None,
) -> str | None:
    """The first address `name` resolves to that `allowed` accepts (None: no answer, or
    none accepted). The caller connects to that address itself, never to the name again:
    a second lookup could answer another address (DNS rebinding) after the check.

    The lookup blocks a thread of `executor` (default: the event loop's) until the system
    resolver answers or gives up, whatever the caller's timeout: lookups of names anyone
    chose run on an executor of their own, so a nameserver that never answers holds only
    its threads.

    `timeout` (TimeoutError past it) counts from the lookup's start on its thread, never
    from its queueing: lookups queued behind a few hanging ones are not timed out for them.
    A lookup whose caller gave up (was cancelled) before it started never runs: a flood of
    callers that timed out leaves no lookups behind to hold the threads. A full
    `LookupPool` refuses at once (`LookupQueueFullError`, a TimeoutError)."""
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    abandoned = threading.Event()

    def lookup() -> list[Any]:
        if abandoned.is_set():
            return []
        loop.call_soon_threadsafe(started.set)
        return socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)

    try:
        if executor is None:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, None, proto=socket.IPPROTO_TCP), timeout
            )
        else:
            answer = loop.run_in_executor(executor, lookup)
            try:
                if timeout is not None:
                    await started.wait()
            except asyncio.CancelledError:
                abandoned.set()
                raise
            infos = await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        raise  # an OSError, but the caller's to judge: the name may answer another time
    except (OSError, UnicodeError) as exc:
        log.debug("endpoint host %s: %s", name, exc)
        return None
    for *_, sockaddr in infos:
        ip = str(sockaddr[0])
        if allowed(ip):
            return ip
    return None


def is_ip(host: str) -> bool:
    """Is `host` an IP literal (no name to resolve)?"""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_apps(items: list[Any]) -> tuple[list[PlacedApp], list[Refusal]]:
    apps, bad = [], []
    for item in items:
        try:
            apps.append(placed_app_from_json(item))
        except SpecShapeError as exc:
            name = item.get("name", "?") if isinstance(item, dict) else "?"
            bad.append(refusal(Refused.BAD_SPEC, str(name), str(exc)))
    return apps, list(bounded(bad))
