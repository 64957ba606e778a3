"""An event loop whose clock a test moves, for windows that are themselves the behaviour.

A cool-down, a hold or a request's timeout is timed by the loop's clock (`loop.time()`:
`call_later`, `asyncio.sleep`, `asyncio.timeout`). On a loaded machine the real clock
runs on while the test is still setting the scene, and a window of a second ends before
the test is ready. `ClockLoop` lets the test give the window room on the real clock and
then end it on its own word: `skip` moves the clock on at once, as if the loop had idled
that long; `hold` stops it where it is (sockets are still read and written, only timers
wait) and `release` lets it run on, from where it stood plus what it skipped. The clock
never runs backwards. Only the loop's clock moves: nothing the node does changes.

A test using it owns every deadline the skip crosses: a scenario's hard deadline, the
websocket heartbeat and any request in flight time out when the clock passes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class ClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` the test can skip ahead and hold."""

    def __init__(self) -> None:
        super().__init__()
        self._skipped = 0.0
        self._held_at: float | None = None

    def time(self) -> float:
        if self._held_at is not None:
            return self._held_at
        return super().time() + self._skipped

    def skip(self, seconds: float) -> None:
        """Move the clock `seconds` on at once: timers due by then run on the next turn."""
        if seconds < 0:
            raise ValueError("the clock never runs backwards")
        if self._held_at is not None:
            self._held_at += seconds
        else:
            self._skipped += seconds

    def skip_to(self, when: float) -> None:
        """Move the clock on to `when` (a loop time not yet reached)."""
        self.skip(when - self.time())

    def hold(self) -> None:
        """Stop the clock where it is until `release`: no timer comes due meanwhile, so
        an `asyncio.sleep` or a wait that polls with one does not end either."""
        if self._held_at is None:
            self._held_at = self.time()

    def next_timer(self) -> float | None:
        """When the earliest timer still scheduled is due (None: none is)."""
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        return min((h.when() for h in scheduled if not h.cancelled()), default=None)

    def release(self, skip: float = 0.0) -> None:
        """Let a held clock run on from where it stood, `skip` seconds later."""
        if self._held_at is None:
            return
        held_at = self._held_at + skip
        self._held_at = None
        self._skipped = held_at - super().time()


async def paced(
    done: Callable[[], bool], busy: Callable[[], bool], most: float, timeout: float = 60.0
) -> float:
    """On a held ClockLoop: wait until `done()`, the clock moved on to the next timer due
    whenever nothing is `busy()` (an exchange in flight, whose pace is the machine's), and
    only then. Returns the loop time it took: the node's own windows, as on a machine
    that is never slow. Fails once the next timer is past `most` s of loop time, or after
    `timeout` s of real time."""
    loop = clock_loop()
    start, deadline = loop.time(), time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout} s of real time")
        if not busy():
            due = loop.next_timer()
            if due is None or due - start > most:
                raise AssertionError(f"not done within {most} s of loop time")
            if due > loop.time():
                loop.skip_to(due)
        # Real time: the held clock stops asyncio.sleep, not a thread's.
        await asyncio.to_thread(time.sleep, 0.001)
    return loop.time() - start


def clock_loop() -> ClockLoop:
    """The running loop, which the test started as a ClockLoop (`run_on_clock_loop`)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ClockLoop), "run the scenario with run_on_clock_loop"
    return loop


def run_on_clock_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`asyncio.run(main())` on a ClockLoop."""
    with asyncio.Runner(loop_factory=ClockLoop) as runner:
        return runner.run(main())
