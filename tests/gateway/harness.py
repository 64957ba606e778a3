"""A real `fluxchain gateway` (with its HAProxy child) beside a test devnet, and a paced
HTTP load through it; shared by tests/gateway and `python -m bench.ingress`."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from fluxchain.gateway.haproxy import HaproxyApiError, RuntimeApi
from tests.integration.harness import ROOT
from tests.support.ports import PortLease, lease_ports
from tests.support.wait import wait_until

DOMAIN = "apps.localhost"


class GatewayProcess:
    """`fluxchain gateway --loopback-is-one-host` following one devnet node, on 127.0.0.1
    (`extra_args`: more options, e.g. the compose devnet's `--reach`)."""

    def __init__(self, state: Path, node_url: str, extra_args: Sequence[str] = ()) -> None:
        self.state = state
        self._lease: PortLease = lease_ports(1)
        self.port = self._lease.ports[0]
        state.mkdir(parents=True, exist_ok=True)
        self.log = state / "gateway.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "fluxchain.cli",
                "gateway",
                "--node",
                node_url,
                "--domain",
                DOMAIN,
                "--http-port",
                str(self.port),
                "--state",
                str(state),
                "--loopback-is-one-host",
                *extra_args,
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.admin = RuntimeApi(state / "admin.sock")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        """The gateway's last pass (STATE/status.json); {} before the first."""
        try:
            return dict(json.loads((self.state / "status.json").read_text()))
        except (OSError, ValueError):
            return {}

    def get(self, host: str, path: str = "/", timeout: float = 3.0) -> tuple[int, bytes]:
        """(status, body) of GET `path` through the gateway with `Host: host`; (0, b"") when
        the connection itself fails."""
        request = urllib.request.Request(self.url + path, headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def servers(self, app: str) -> list[str]:
        """Addresses the gateway routes `app`'s first port to (from status.json)."""
        backends = self.status().get("backends", {})
        return sorted(backends.get(f"app_{app}_web_0", []))

    def haproxy_backend(self, app: str) -> str:
        """The pool backend HAProxy serves `app`'s first port from (status.json)."""
        return str(self.status().get("haproxy_backends", {})[f"app_{app}_web_0"])

    def slot_states(self, backend: str) -> dict[str, str]:
        """HAProxy's own view: address -> operational state of every slot not in maint."""
        slots = asyncio.run(self.admin.server_states(backend))
        return {address: state for address, state in slots.values() if state != "MAINT"}

    def wait_serving(self, app: str, count: int, timeout: float = 60) -> None:
        """Until the gateway routes `app` to `count` instances and each one accepts
        connections: an agent reports a workload running as soon as it started it, which
        can be before its program listens (a load started then meets only refusals).
        And until HAProxy has each in rotation after a passing check: one whose first
        check came before it listened is down until its next check, however soon."""
        wait_until(
            lambda: (
                len(servers := self.servers(app)) == count
                and all(map(accepts, servers))
                and self.checked_up(app, servers)
            ),
            timeout,
            f"the gateway routes {app} to {count} instances, each listening (log {self.log})",
        )

    def checked_up(self, app: str, servers: list[str]) -> bool:
        """Is each of `servers` fully up in `app`'s HAProxy backend ("UP": its last check
        passed; "UP 1/2" is a slot that left maintenance and has not been checked yet)?"""
        try:
            states = self.slot_states(self.haproxy_backend(app))
        except (KeyError, HaproxyApiError):
            return False  # not assigned a pool backend yet, or HAProxy not answering
        return all(states.get(address) == "UP" for address in servers)

    def close(self) -> None:
        """Stop the gateway (it stops its HAProxy); an HAProxy a killed gateway left is
        killed here, so no test leaves one behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            pid = int((self.state / "haproxy.pid").read_text().split()[0])
            if str(self.state).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass  # none left
        self._lease.release()


def accepts(address: str) -> bool:
    """Does `address` (host:port) accept a TCP connection within a second?"""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class LoadResult:
    sent: int = 0
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failed_at: list[float] = field(default_factory=list)  # s from the start, when sent

    def failure_timeline(self, bucket_s: int = 5) -> dict[int, int]:
        """Failed requests per `bucket_s` seconds of the run (by when each was sent)."""
        out: dict[int, int] = {}
        for at in self.failed_at:
            key = int(at // bucket_s) * bucket_s
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def rps(self) -> float:
        return (self.sent - self.failures) / self.seconds if self.seconds else 0.0

    def percentile(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100)[q - 1]


async def paced_load(
    url: str | list[str], host: str, rate: float | None, seconds: float, concurrency: int = 8
) -> LoadResult:
    """GET `url` (or each of a list in turn) with `Host: host` for `seconds`: at `rate`
    requests/s (one every 1/rate s, each on its own task), or as fast as `concurrency`
    workers go when `rate` is None. A request fails on anything but a 200 within 5 s."""
    result = LoadResult()
    urls = itertools.cycle([url] if isinstance(url, str) else url)
    headers = {"Host": host}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> None:
            started = time.perf_counter()
            result.sent += 1
            try:
                async with session.get(next(urls), headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
                    kind = f"http {response.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                ok, kind = False, type(exc).__name__
            if ok:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                result.failures += 1
                result.errors[kind] = result.errors.get(kind, 0) + 1
                result.failed_at.append(started - begin_perf)

        begin = time.monotonic()
        begin_perf = time.perf_counter()
        end = begin + seconds
        if rate is None:

            async def worker() -> None:
                while time.monotonic() < end:
                    await one()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            tasks = []
            tick = 1.0 / rate
            n = 0
            while (due := begin + n * tick) < end:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(one()))
                n += 1
            await asyncio.gather(*tasks)
        result.seconds = time.monotonic() - begin
    return result
