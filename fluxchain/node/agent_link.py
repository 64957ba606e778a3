"""The node's side of its agent: the heartbeat it receives and what /health makes of it.

The agent (`fluxchain agent`, the node daemon) runs the node's workloads and reports
about once a second through `POST /agent/report`, authenticated with the token in
HOME/agent_token (only a process that can read the node home can report). A node whose
config says `agent = true` is healthy only while a fresh report says its runtime works:
a node that cannot run what the chain assigns it must not pass its uptime checks, keep
its instances, or be paid.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp

from fluxchain.agent.runtime import Capacity
from fluxchain.core.owner_request import AgentCallError

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
        self.control = AgentControl()

    def token_ok(self, token: str) -> bool:
        """Whether `token` is this node's agent token (compared in constant time)."""
        return hmac.compare_digest(token.encode(), self._token.encode())

    def accept(self, token: str, report: dict[str, Any]) -> bool:
        """Store a report if its token is this node's; False (report ignored) otherwise."""
        if not self.token_ok(token):
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

    def app_report(self, app: str) -> dict[str, Any]:
        """The named app's workloads from the last report, for `GET /agent/apps/{name}`."""
        age = self.age_s()
        return {
            "app": app,
            "report_age_s": None if age is None else round(age, 1),
            "problem": None if (problem := self.problem()) is None else scrub(problem),
            "workloads": public_workloads(self._report or {}, app),
        }

    def status(self) -> dict[str, Any]:
        """The full last report, for `GET /agent` and the dashboard (public: messages
        without host paths)."""
        out = self.summary()
        problem = self.problem()
        out["problem"] = None if problem is None else scrub(problem)
        report = self._report or {}
        out["height"] = report.get("height", 0)
        out["capacity"] = report.get("capacity")
        out["error"] = scrub(report.get("error", ""))
        out["workloads"] = [
            {**w, "message": scrub(str(w.get("message", "")))}
            for w in list(report.get("workloads", []))[:MAX_WORKLOADS_SHOWN]
        ]
        return out


# -- the agent's public report ------------------------------------------------------------

# Absolute paths in an agent's message say where the node keeps its files: replaced.
_HOST_PATH: Final = re.compile(r"(?<![\w.:/])/[^\s'\":,;]+")


def scrub(message: str) -> str:
    """A runtime or workload message as the public may read it: host paths removed."""
    return _HOST_PATH.sub("<path>", message)[:1000]


def public_workloads(report: dict[str, Any], app: str) -> list[dict[str, Any]]:
    """The named app's workloads in an agent report, without host paths: what anyone
    may read of one app's instances on this node (`GET /agent/apps/{name}`)."""
    return [
        {
            "instance": int(w["instance"]),
            "component": str(w["component"]),
            "state": str(w["state"]),
            "restarts": int(w.get("restarts", 0)),
            "owner_restarts": int(w.get("owner_restarts", 0)),
            "message": scrub(str(w.get("message", ""))),
            "reason": str(w.get("reason", "")),
        }
        for w in report.get("workloads", [])
        if w.get("app") == app
    ][:MAX_WORKLOADS_SHOWN]


# -- the control channel ------------------------------------------------------------------

# Messages from the agent queued for one call before its reader is too slow: the call ends
# (reason `too_slow`) rather than the node buffering a log flood.
CALL_QUEUE: Final = 256
AGENT_UNAVAILABLE: Final = "agent_unavailable"


class AgentControl:
    """The node's end of the control channel that its agent holds open (a websocket,
    `GET /agent/control`, authenticated with the agent token like the reports).

    The node sends `{"id", "method", "app", "instances", "tail", "follow", "timeout_s"}`;
    the agent answers `{"id", "item": …}` any number of times, then `{"id", "done": true}`
    (with `"error": {"reason", "message"}` if it failed). `{"id", "cancel": true}` tells it
    to stop a call whose reader left. Only this node's agent can hold the channel, so a
    command reaches only the agent of the node that checked the owner's request."""

    def __init__(self) -> None:
        self._ws: Any = None  # aiohttp's WebSocketResponse while the agent is connected
        # call id -> (the connection it was sent on, the queue of its answers)
        self._calls: dict[int, tuple[Any, asyncio.Queue[dict[str, Any]]]] = {}
        self._next_id = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def serve(self, ws: Any) -> None:
        """Hold the channel until the agent leaves: route each answer to its call. A newer
        connection (a restarted agent) replaces an older one."""
        old, self._ws = self._ws, ws
        if old is not None and not old.closed:
            await old.close()
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                try:
                    answer = json.loads(message.data)
                    sent_on, queue = self._calls[int(answer["id"])]
                except (ValueError, KeyError, TypeError):
                    continue  # garbage, or an answer to a call that ended: nothing to route
                if sent_on is not ws:
                    continue
                if queue.full():
                    answer = {"done": True, "error": _TOO_SLOW}
                    while not queue.empty():
                        queue.get_nowait()
                queue.put_nowait(answer)
        finally:
            if self._ws is ws:
                self._ws = None
            for sent_on, queue in self._calls.values():  # this connection's calls end
                if sent_on is ws:
                    while not queue.empty():
                        queue.get_nowait()
                    queue.put_nowait(_gone())

    async def call(self, command: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Send one command; yield the agent's items until it is done. Raises
        AgentCallError: `agent_unavailable` when no agent is connected, `agent_gone` when
        it leaves mid-call, or the reason the agent answered."""
        ws = self._ws
        if ws is None or ws.closed:
            raise AgentCallError(AGENT_UNAVAILABLE, "this node's agent is not connected")
        self._next_id += 1
        call_id = self._next_id
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(CALL_QUEUE)
        self._calls[call_id] = (ws, queue)
        done = False
        try:
            await ws.send_json({"id": call_id, **command})
            while True:
                answer = await queue.get()
                if answer.get("done"):
                    done = True
                    error = answer.get("error")
                    if error:
                        raise AgentCallError(str(error.get("reason")), str(error.get("message")))
                    return
                yield answer.get("item", {})
        finally:
            del self._calls[call_id]
            if not done and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json({"id": call_id, "cancel": True})


_TOO_SLOW: Final = {"reason": "too_slow", "message": "the reader fell behind the agent's output"}


def _gone() -> dict[str, Any]:
    return {"done": True, "error": {"reason": "agent_gone", "message": "the agent left"}}
