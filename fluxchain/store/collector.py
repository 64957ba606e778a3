"""When the cyclic collector runs in a process that holds a chain: between blocks, on a bound.

The committed state is hundreds of thousands of long-lived objects without reference
cycles, and most of what a node makes besides (a block's txs and records, the pool's txs,
relay bookkeeping) is freed by refcounting within a block or two. The collector is kept
out of each block (`paused`), and after a block it runs only once `COLLECT_AFTER` tracked
objects are within its reach (`unfrozen`: made since the last freeze and not freed, or
garbage) (`after_block`): then one full collection frees the cycles among them and
`gc.freeze` moves what is alive out of reach, so an object is walked by that one pass
and an object freed before it is not walked at all. Frozen objects that become garbage
later (a peer connection open at a freeze, closed since) only a full sweep frees: every
`SWEEP_EVERY`th collection unfreezes everything first. Past `AUTOMATIC_AFTER` the
collector runs on its own, block or not (a stall).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

# Tracked objects within the collector's reach (`unfrozen`) after which a block's end
# collects and freezes. A block of 1,000 txs and a pool of 10,000 are ~25,000 objects,
# which refcounting frees again; 100,000 stays far above what a block leaves (so most
# blocks collect nothing) and caps what a collection may leave waiting at tens of MB.
COLLECT_AFTER: Final = 100_000
# The collector's own trigger, left for a stall (no block ends while txs and messages
# keep coming): past this many, it collects the young objects without a block.
AUTOMATIC_AFTER: Final = 2 * COLLECT_AFTER
# Every this many collections one first unfreezes the whole heap, so that frozen objects
# that became garbage are freed within that many: one sweep walks the whole state
# (~105 ms at a million objects, docs/performance.md), a small share spread over 64.
SWEEP_EVERY: Final = 64


class _Sweeps:
    """Collections since the last full sweep (one count a process, as the collector's)."""

    since = 0


def schedule() -> None:
    """Take over the collector's schedule and freeze what is alive now (a loaded state)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(AUTOMATIC_AFTER, middle, old)
    collect_and_freeze()


def after_block() -> None:
    """Collect and freeze once enough objects are within the collector's reach; else nothing."""
    if unfrozen() >= COLLECT_AFTER:
        collect_and_freeze()


def unfrozen() -> int:
    """Tracked objects not frozen, alive or garbage: O(their number), ~0.5 ms at 100,000.

    Not `gc.get_count()[0]`: every tracked object freed lowers that, frozen or not, so a
    frozen pool draining would hide as much new garbage from it."""
    return sum(len(gc.get_objects(generation)) for generation in range(3))


def collect_and_freeze() -> None:
    """Free the cycles made since the last freeze, then move every object alive out of reach.

    Frozen garbage is never freed, so the collection comes first: cycles among the young
    objects (a rejected tx's exception and the frame that holds it, say) go, the rest is
    frozen. Every `SWEEP_EVERY`th time the frozen objects are put back first, so that
    those that became garbage since (closed connections) are freed too."""
    _Sweeps.since += 1
    if _Sweeps.since >= SWEEP_EVERY:
        _Sweeps.since = 0
        gc.unfreeze()
    gc.collect()
    gc.freeze()


@contextmanager
def paused() -> Iterator[None]:
    """Keep the cyclic collector out of one block's import or build.

    A block allocates tens of thousands of objects (its txs, their payloads, the new
    records), and the collector runs whenever allocations outnumber frees by its
    threshold: measured, 13% of import time spent tracing objects that refcounting frees
    or that live on in the state. None of them form cycles worth collecting mid-block.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
