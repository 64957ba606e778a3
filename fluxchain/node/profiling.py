"""An opt-in CPU profile of a node process, for finding where its time goes.

`FLUXCHAIN_PROFILE=/path/node.prof fluxchain run --home …` runs the node under cProfile
and writes the statistics to that path when it stops (SIGINT/SIGTERM); read them with
`python -m pstats /path/node.prof` or `bench.sync --profile DIR`, which sets it for both
of its nodes. Only the node's own thread is profiled (the event loop, import, the API):
the verifier processes forked from it turn the inherited profiler off, so their work shows
as the time the importer waits for them. Off (no env var), this costs nothing.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

PROFILE_ENV: Final = "FLUXCHAIN_PROFILE"
# `FLUXCHAIN_LOOP_TURNS=DIR`: time each callback the event loop runs (`loop_turns`).
LOOP_TURNS_ENV: Final = "FLUXCHAIN_LOOP_TURNS"
LONG_TURN_S: Final = 0.001  # shorter callbacks are counted, not listed
# The newest long callbacks kept (~100 bytes each): a node left profiling for days must
# not grow without bound; a benchmark's run lists far fewer.
LONG_TURNS_KEPT: Final = 100_000


@contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """Profile the calling thread while the block runs and dump the stats to `path`;
    do nothing when `path` is empty or None."""
    if not path:
        yield
        return
    profiler = cProfile.Profile()
    # A forked child (a verifier process) would keep tracing every call into a profile
    # it never writes: turn it off there.
    os.register_at_fork(after_in_child=profiler.disable)
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


@contextmanager
def loop_turns(directory: str | None) -> Iterator[None]:
    """Time every callback the event loop runs while the block runs (a task's step, a
    timer, a protocol's data): how long the loop was held, with everything else waiting.
    At the end, `DIR/turns-PID.json` gets `{"callbacks": n, "long": [[wall time, seconds,
    CPU seconds of the thread, what], …]}` for the newest LONG_TURNS_KEPT callbacks of
    LONG_TURN_S or more (bench.devnet --loop-turns reads it). On a loaded machine a
    callback's wall time is its CPU plus the time it waited for a core, hence both.
    Do nothing when `directory` is empty or None; on, it costs ~1 µs a callback."""
    if not directory:
        yield
        return
    long: deque[tuple[float, float, float, str]] = deque(maxlen=LONG_TURNS_KEPT)
    calls = 0
    original = asyncio.events.Handle._run
    clock, cpu = time.perf_counter, time.thread_time

    def timed(handle: asyncio.Handle) -> None:
        nonlocal calls
        start, start_cpu = clock(), cpu()
        original(handle)
        took = clock() - start
        calls += 1
        if took >= LONG_TURN_S:
            long.append((time.time(), took, cpu() - start_cpu, _callback_name(handle)))

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]
        out = Path(directory) / f"turns-{os.getpid()}.json"
        out.write_text(json.dumps({"callbacks": calls, "long": list(long)}))


def _callback_name(handle: asyncio.Handle) -> str:
    """What a callback ran: for a task, the innermost coroutine of ours it is suspended
    in now (the frame that yielded the loop back), else the function."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if not isinstance(owner, asyncio.Task):
        return str(getattr(callback, "__qualname__", type(callback).__name__))
    name = owner.get_name()
    coro: Any = owner.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        if not coro.cr_code.co_filename.startswith(_ASYNCIO_DIR):
            name = coro.cr_code.co_qualname
        coro = coro.cr_await
    return name


_ASYNCIO_DIR: Final = os.path.dirname(asyncio.__file__)
