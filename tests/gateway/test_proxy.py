"""The gateway's HAProxy child: it never outlives a gateway that was killed."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.gateway.harness import DOMAIN, GatewayProcess
from tests.support.ports import closed_port
from tests.support.wait import wait_until


def _master_pid(state: Path) -> int:
    try:
        return int((state / "haproxy.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def test_a_gateway_killed_with_sigkill_leaves_no_haproxy_holding_its_ports(tmp_path: Path) -> None:
    """The operator's accident: `kill -9` of the gateway leaves HAProxy (its own session)
    running on the old ports; the next gateway on the same state dir stops it first."""
    state = tmp_path / "gateway"
    nowhere = f"http://127.0.0.1:{closed_port()}"  # no node: HAProxy starts all the same
    first = GatewayProcess(state, nowhere)
    try:
        wait_until(lambda: first.get(f"x.{DOMAIN}")[0] == 404, 30, f"first up ({first.log})")
        leftover = _master_pid(state)
        assert leftover
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert Path(f"/proc/{leftover}").exists()  # still serving the dead gateway's port
        assert first.get(f"x.{DOMAIN}")[0] == 404
        second = GatewayProcess(state, nowhere)
        try:
            wait_until(lambda: second.get(f"x.{DOMAIN}")[0] == 404, 30, f"second up ({second.log})")
            assert _master_pid(state) != leftover
            wait_until(lambda: not _alive(leftover), 10, "the leftover HAProxy gone")
            assert first.get(f"x.{DOMAIN}")[0] == 0  # nothing listens on the old port
        finally:
            second.close()
        wait_until(lambda: not _alive(_master_pid(state)), 10, "HAProxy stops with its gateway")
    finally:
        first.close()


def _alive(pid: int) -> bool:
    """A running process (not a zombie); pid 0 (no pid file) is none."""
    try:
        return pid > 0 and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
