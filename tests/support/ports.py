"""Ports for tests, without the race of "bind port 0, read it, close it, hope".

Two ways, by who needs the number first:

- The process that listens picks it. A node configured with port 0 binds, then writes
  the ports it bound to `ports.json` in its home (fluxchain/node/home.py); `node_ports`
  waits for that file, written by that very process. Use this whenever nothing needs the
  number before the node starts (a node that others dial, a node a test talks to).
- The number must be known beforehand: a genesis names each node's API endpoint, peers
  are configured by address, an app spec declares its host ports. `lease_ports` hands out
  ports that no other process can be given meanwhile: they lie below the kernel's
  ephemeral range (so no `bind(port 0)` and no outgoing connection ever takes one), and
  each is held by an exclusive lock file in a directory that every test process on this
  machine shares. A lease lasts until `release()`, or until the test process exits (the
  kernel drops its locks). The process that uses a leased port binds it itself.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from fluxchain.core.appspec.limits import banned_port_reason
from fluxchain.node.home import BoundPorts, Home
from tests.support.wait import NodeStatus, wait_until

LEASE_DIR = Path(tempfile.gettempdir()) / "fluxchain-test-ports"
LEASE_LOW = 10_000  # below: well-known and registered services of the machine
EPHEMERAL_DEFAULT = (32_768, 60_999)  # Linux's default ip_local_port_range
NODE_START_S = 60.0  # a node process imports, opens its store and binds within this

_UNRELEASED: set[PortLease] = set()  # every lease not released yet (`PortLease`)


class PortLease:
    """Ports held by this test process until `release()` (or until it exits)."""

    def __init__(self, ports: list[int], locks: list[IO[bytes]]) -> None:
        self.ports = ports
        self._locks = locks
        # Held here until released: a lease its test never releases (a harness left
        # unclosed) lasts until the process exits, as documented, instead of ending
        # whenever the cyclic collector happens to free it, with a ResourceWarning for
        # each lock file charged to whichever test is running then.
        _UNRELEASED.add(self)

    def release(self) -> None:
        """Give the ports back (the processes that bound them must have stopped)."""
        for lock in self._locks:
            lock.close()  # closing the file drops its flock
        self._locks = []
        _UNRELEASED.discard(self)

    def __enter__(self) -> PortLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_ports(count: int, *, contiguous: bool = False) -> PortLease:
    """`count` distinct loopback ports, free now and given to no other test process.

    `contiguous`: a run of consecutive ports (the devnet launcher's --p2p-base/--api-base
    give node i the port base + i)."""
    LEASE_DIR.mkdir(exist_ok=True)
    low, high = lease_range()
    span = high - low
    start = (os.getpid() * 7_919) % span  # processes start apart, then walk the range
    ports: list[int] = []
    locks: list[IO[bytes]] = []
    for step in range(span):
        if len(ports) == count:
            return PortLease(ports, locks)
        port = low + (start + step) % span
        if contiguous and ports and port != ports[-1] + 1:  # wrapped around: start over
            _drop(ports, locks)
        lock = _try_lock(port)
        if lock is None or _in_use(port):  # leased, or bound by a process that takes none
            if lock is not None:
                lock.close()
            if contiguous:
                _drop(ports, locks)
            continue
        ports.append(port)
        locks.append(lock)
    if len(ports) == count:
        return PortLease(ports, locks)
    _drop(ports, locks)
    raise RuntimeError(f"no {count} free ports to lease in {low}..{high}")


def _drop(ports: list[int], locks: list[IO[bytes]]) -> None:
    for lock in locks:
        lock.close()
    ports.clear()
    locks.clear()


@contextmanager
def leased_ports(count: int) -> Iterator[list[int]]:
    """`lease_ports` for the duration of a `with` block."""
    with lease_ports(count) as lease:
        yield lease.ports


def lease_app_ports(count: int) -> PortLease:
    """`count` consecutive ports an app spec may publish (none on the banned list), leased
    like `lease_ports`: apps of tests running at once never share a host port, even on the
    devnet's per-node app addresses (127.0.1.x), which the lease's own check cannot see."""
    held: list[PortLease] = []
    try:
        while True:
            lease = lease_ports(count, contiguous=True)
            if not any(banned_port_reason(p) for p in lease.ports):
                return lease
            held.append(lease)  # keep it until we find a clean run, so it is not re-picked
    finally:
        for lease in held:
            lease.release()


_CLOSED: list[PortLease] = []  # held until the test process exits


def closed_port() -> int:
    """A loopback port nothing listens on: leased for this test process, never bound."""
    if not _CLOSED:
        _CLOSED.append(lease_ports(1))
    return _CLOSED[0].ports[0]


def node_ports(home: Path, process: subprocess.Popen[bytes], log: Path | None = None) -> BoundPorts:
    """The ports the node `process` bound, from its home's port file (waits for it)."""
    found: list[BoundPorts] = []

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"node in {home} exited with {process.returncode} before it listened\n"
                + NodeStatus(home.name, False, logs=(log,) if log else ()).describe()
            )
        ports = Home(home).bound_ports()
        if ports is not None and ports.pid == process.pid:
            found.append(ports)
            return True
        return False

    wait_until(listening, NODE_START_S, f"the node in {home} to write its port file", poll_s=0.05)
    return found[0]


def lease_range() -> tuple[int, int]:
    """[low, high): the ports below the kernel's ephemeral range."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        ephemeral_low = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = EPHEMERAL_DEFAULT[0]
    if ephemeral_low - LEASE_LOW < 1_000:
        raise RuntimeError(f"the ephemeral port range starts at {ephemeral_low}: none to lease")
    return LEASE_LOW, ephemeral_low


def _try_lock(port: int) -> IO[bytes] | None:
    try:
        lock = (LEASE_DIR / f"{port}.lock").open("ab")
    except PermissionError:  # another user's lease file: theirs
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _in_use(port: int) -> bool:
    """Whether some process already binds `port` on loopback (or on every address)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
