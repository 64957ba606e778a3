"""When the cyclic collector runs in a process that holds a chain: between blocks, on a bound.

The committed state is hundreds of thousands of long-lived objects without reference
cycles, and most of what a node makes besides (a block's txs and records, the pool's txs,
relay bookkeeping) is freed by refcounting within a block or two. The collector is kept
out of each block (`paused`), and after a block it runs only once the tracked objects
made since its last run, net of those freed, reach `COLLECT_AFTER` (`after_block`): then
one full collection frees the cycles among them and `gc.freeze` moves what is alive out
of reach, so no object is ever walked by more than that one pass, and an object freed
before it is not walked at all. The count is of allocations less frees of tracked
objects (frozen or not), and past `AUTOMATIC_AFTER` the collector runs on its own, block
or not (a stall): garbage cycles stay bounded by those counts.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

# Net new tracked objects after which a block's end collects and freezes. A block of
# 1,000 txs and a pool of 10,000 are ~25,000 objects, which refcounting frees again;
# 100,000 stays far above what a block leaves (so most blocks collect nothing) and caps
# what a collection may leave waiting at tens of MB.
COLLECT_AFTER: Final = 100_000
# The collector's own trigger, left for a stall (no block ends while txs and messages
# keep coming): past this many, it collects the young objects without a block.
AUTOMATIC_AFTER: Final = 2 * COLLECT_AFTER


def schedule() -> None:
    """Take over the collector's schedule and freeze what is alive now (a loaded state)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(AUTOMATIC_AFTER, middle, old)
    collect_and_freeze()


def after_block() -> None:
    """Collect and freeze once enough objects were made since the last time; else nothing."""
    if gc.get_count()[0] >= COLLECT_AFTER:
        collect_and_freeze()


def collect_and_freeze() -> None:
    """Free the cycles made since the last freeze, then move every object alive out of reach.

    Frozen garbage is never freed, so the collection comes first: cycles among the young
    objects (a rejected tx's exception and the frame that holds it, say) go, the rest is
    frozen and never walked again."""
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
