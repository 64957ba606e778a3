"""Waiting for a condition with a deadline, and failing with every node's view.

One `wait_until` for every harness (real processes, containers, in-process nodes): it
polls a condition until a deadline and, on timeout, raises an AssertionError that names
what it waited for and dumps the status of every node it was given: up or down, height,
peers, consensus round, head hash, the last warning/error lines of its log and its log
tail. `wait_until_async` is the same wait for scenarios that run inside an event loop
(the condition reads state that the loop itself changes, so the wait must yield to it).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

POLL_S = 0.2  # between two checks of a condition over HTTP: each check loads every node
ASYNC_POLL_S = 0.01  # in-process state: cheap to read, so checked often
ERROR_LINES = 8  # warnings and errors of a node's log shown on a timeout
TAIL_LINES = 6  # last lines of a node's log shown on a timeout
_ERROR_MARKS = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "Error:", "Exception")


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What a failing wait shows of one node (None: not known, e.g. the node is down)."""

    name: str
    up: bool
    height: int | None = None
    peers: int | None = None
    round: int | None = None
    head: str | None = None
    extra: str = ""  # anything else the harness knows (a peer list, a container state)
    logs: tuple[Path, ...] = field(default=())  # log files of the node (and its agent)
    log_lines: tuple[str, ...] = ()  # or a log already read (`docker logs` of a container)

    def describe(self) -> str:
        head = "-" if self.head is None else self.head[:12]
        fields = (
            f"height={_known(self.height)} peers={_known(self.peers)} "
            f"round={_known(self.round)} head={head}"
        )
        lines = [f"--- {self.name} ({'up' if self.up else 'down'}) {fields} {self.extra}".rstrip()]
        for log in self.logs:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            lines.extend(_log_excerpt(log.name, text.splitlines()))
        if self.log_lines:
            lines.extend(_log_excerpt("log", list(self.log_lines)))
        return "\n".join(lines)


class Harness(Protocol):
    """A harness whose nodes a failing wait can describe."""

    def node_statuses(self) -> Sequence[NodeStatus]: ...


# What a wait is given to describe on timeout: a harness, or a function of the statuses.
Observed = Harness | Callable[[], Sequence[NodeStatus]]


def status_from_api(name: str, up: bool, status: dict[str, Any] | None) -> NodeStatus:
    """A NodeStatus from a node's `GET /status` body (None when it did not answer)."""
    if status is None:
        return NodeStatus(name, up)
    return NodeStatus(
        name,
        up,
        height=int(status["height"]),
        peers=status.get("peers"),
        round=status.get("round"),
        head=status.get("latest_hash"),
    )


def describe_nodes(observed: Observed | None) -> str:
    """Every node's status, one block per node ("" when no harness was given)."""
    if observed is None:
        return ""
    try:
        statuses = observed() if callable(observed) else observed.node_statuses()
    except Exception as exc:  # the dump must never hide the timeout it explains
        return f"(node statuses unavailable: {exc!r})"
    return "\n".join(status.describe() for status in statuses)


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    nodes: Observed | None = None,
    poll_s: float = POLL_S,
) -> float:
    """Poll `condition` until it holds; return the seconds it took.

    After `timeout` seconds, fail naming `what` and dumping every node of `nodes`."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            raise AssertionError(_timeout_message(timeout, what, nodes))
        time.sleep(poll_s)


async def wait_until_async(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    what: str = "condition",
    *,
    nodes: Observed | None = None,
    poll_s: float = ASYNC_POLL_S,
) -> float:
    """`wait_until` inside an event loop: the loop runs between two checks, and the
    condition may be a coroutine function (it asks a runtime or a socket)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return loop.time() - start
        if loop.time() - start >= timeout:
            raise AssertionError(_timeout_message(timeout, what, nodes))
        await asyncio.sleep(poll_s)


async def wait_while_progressing(
    count: Callable[[], int], target: int, stall_s: float, what: str, *, poll_s: float = 0.05
) -> int:
    """Wait until `count()` reaches `target` for as long as it keeps growing: fail only if
    it stood still for `stall_s`. For work whose pace is the machine's (a loaded machine
    is slow, not stuck), where what matters is whether it stopped short. Returns the count."""
    loop = asyncio.get_running_loop()
    best, moved_at = count(), loop.time()
    while best < target:
        if loop.time() - moved_at >= stall_s:
            raise AssertionError(
                f"stalled for {stall_s} s at {best} of {target} waiting for: {what}"
            )
        await asyncio.sleep(poll_s)
        now = count()
        if now > best:
            best, moved_at = now, loop.time()
    return best


def _timeout_message(timeout: float, what: str, nodes: Observed | None) -> str:
    dump = describe_nodes(nodes)
    message = f"timed out after {timeout} s waiting for: {what}"
    return f"{message}\n{dump}" if dump else message


def _known(value: object) -> str:
    return "?" if value is None else str(value)


def _log_excerpt(name: str, lines: list[str]) -> list[str]:
    errors = [line for line in lines if any(mark in line for mark in _ERROR_MARKS)]
    out = [f"    [{name}: last {min(len(errors), ERROR_LINES)} warnings/errors]"]
    out.extend("    " + line for line in errors[-ERROR_LINES:])
    out.append(f"    [{name}: last {min(len(lines), TAIL_LINES)} lines]")
    out.extend("    " + line for line in lines[-TAIL_LINES:])
    return out
