"""An opt-in CPU profile of a node process, for finding where its time goes.

`FLUXCHAIN_PROFILE=/path/node.prof fluxchain run --home …` runs the node under cProfile
and writes the statistics to that path when it stops (SIGINT/SIGTERM); read them with
`python -m pstats /path/node.prof` or `bench.sync --profile DIR`, which sets it for both
of its nodes. Only the node's own thread is profiled (the event loop, import, the API):
the verifier processes forked from it turn the inherited profiler off, so their work shows
as the time the importer waits for them. Off (no env var), this costs nothing.
"""

from __future__ import annotations

import cProfile
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

PROFILE_ENV: Final = "FLUXCHAIN_PROFILE"


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
