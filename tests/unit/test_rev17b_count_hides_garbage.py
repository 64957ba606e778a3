"""Review rev17b: the count the collector's schedule reads, once frozen objects are freed."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from fluxchain.store import collector
from tests.support.chain import Builder, funded_key, open_chain


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_frozen_objects_freed_do_not_hide_cyclic_garbage(tmp_path: Path) -> None:
    """Attack: cyclic garbage made while objects frozen at the last collection are being
    freed (a full pool's txs, frozen when a block collected, leaving as later blocks
    include them or as the admission cache evicts them). CPython 3.11 takes one off
    `gc.get_count()[0]` for every tracked object freed, frozen or old, so each frozen
    object freed cancels one new garbage object: neither `after_block` (>= COLLECT_AFTER)
    nor the automatic trigger (AUTOMATIC_AFTER) fires, and garbage grows past both bounds
    docs/security.md promises, by up to the size of the frozen set (the whole state).
    What an operator sees: RSS growing with no collection while the pool drains; main's
    threshold of 700 collected it. Fix direction: bound on something frees of old
    objects do not lower (e.g. the young generation's size via `len(gc.get_objects(0))`
    at a block's end, or a collection every N blocks / seconds as a backstop), and keep a
    default-sized automatic threshold for stalls."""
    chain = open_chain(tmp_path / "home")
    builder = Builder(chain)
    made = collector.AUTOMATIC_AFTER + 20_000
    # Objects alive at a block's end past COLLECT_AFTER: the commit collects and freezes them.
    pool = [[i] for i in range(made)]
    builder.commit([builder.transfer(funded_key(), bytes(20))])
    assert gc.get_count()[0] < collector.COLLECT_AFTER
    first = _Cycle()
    gone = weakref.ref(first)
    del first
    try:
        for _ in range(collector.AUTOMATIC_AFTER + 10_000):
            _Cycle()  # a dropped reference cycle
            pool.pop()  # a frozen object leaves
        builder.commit([builder.transfer(funded_key(), bytes(20))])
        assert gone() is None, (
            f"{collector.AUTOMATIC_AFTER + 10_000} garbage cycles made, none collected;"
            f" the count the schedule reads is {gc.get_count()[0]}"
        )
    finally:
        del pool
        gc.collect()
    chain.close()
