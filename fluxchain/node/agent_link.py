"""The node's side of its agent: the heartbeat it receives and what /health makes of it.

The agent (`fluxchain agent`, the node daemon) runs the node's workloads and reports
about once a second through `POST /agent/report`, authenticated with the token in
HOME/agent_token (only a process that can read the node home can report). A node whose
config says `agent = true` is healthy only while a fresh report says its runtime works:
a node that cannot run what the chain assigns it must not pass its uptime checks, keep
its instances, or be paid.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from fluxchain.agent.runtime import Capacity

TOKEN_FILE: Final = "agent_token"
STALE_S: Final = 10.0  # no report for this long: the agent is gone (restarts take ~1 s)
MAX_WORKLOADS_SHOWN: Final = 1_000


def load_or_create_token(home: Path) -> str:
    """The shared secret of a node and its agent; created (0600) on first use."""
    path = home / TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_hex(32)
    tmp = home / f"{TOKEN_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and exclusive: the node and its agent may both start now
    except FileExistsError:
        token = path.read_text().strip()
    finally:
        tmp.unlink()
    return token


class AgentLink:
    """The last report of this node's agent, and the health verdict drawn from it."""

    def __init__(
        self, token: str, *, expected: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._token = token
        self.expected = expected
        self._clock = clock
        self._report: dict[str, Any] | None = None
        self._received = 0.0

    def accept(self, token: str, report: dict[str, Any]) -> bool:
        """Store a report if its token is this node's; False (report ignored) otherwise."""
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            return False
        self._report = report
        self._received = self._clock()
        return True

    def age_s(self) -> float | None:
        return None if self._report is None else self._clock() - self._received

    def problem(self) -> str | None:
        """Why the node cannot run workloads now, or None when it can (or needs no agent)."""
        if not self.expected:
            return None
        age = self.age_s()
        if self._report is None or age is None:
            return "no report from the agent yet"
        if age > STALE_S:
            return f"agent silent for {age:.0f}s"
        if not self._report.get("runtime_ok", False):
            return f"runtime unavailable: {self._report.get('error') or 'unknown'}"
        return None

    def capacity(self) -> Capacity | None:
        """The runtime's capacity from a fresh report, if any."""
        if self.problem() is not None or self._report is None:
            return None
        cap = self._report.get("capacity")
        if not isinstance(cap, dict):
            return None
        return Capacity(int(cap["cores"]), int(cap["ram_mb"]), int(cap["disk_gb"]))

    def summary(self) -> dict[str, Any]:
        """Counts by workload state: small enough for every uptime probe to carry."""
        counts: dict[str, int] = {}
        for w in (self._report or {}).get("workloads", []):
            counts[w["state"]] = counts.get(w["state"], 0) + 1
        age = self.age_s()
        return {
            "expected": self.expected,
            "runtime": (self._report or {}).get("runtime", ""),
            "report_age_s": None if age is None else round(age, 1),
            "workloads": counts,
        }

    def status(self) -> dict[str, Any]:
        """The full last report, for `GET /agent` and the dashboard."""
        out = self.summary()
        out["problem"] = self.problem()
        report = self._report or {}
        out["height"] = report.get("height", 0)
        out["capacity"] = report.get("capacity")
        out["error"] = report.get("error", "")
        out["workloads"] = list(report.get("workloads", []))[:MAX_WORKLOADS_SHOWN]
        return out
