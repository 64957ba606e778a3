"""What a committed block leaves in memory: the state, and no garbage frozen for good."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from tests.support.chain import Builder, funded_key, open_chain


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_garbage_made_before_a_commit_is_not_frozen(tmp_path: Path) -> None:
    """The chain freezes what is alive after each commit, so that the collector stops
    walking the state; a reference cycle dropped before the commit (as a rejected tx's
    exception and its frame make) must be freed, not frozen."""
    chain = open_chain(tmp_path / "a")
    builder = Builder(chain)
    was_enabled = gc.isenabled()
    gc.disable()  # only the chain's own collection may free it
    try:
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        builder.commit([builder.transfer(funded_key(), bytes(20))])
        assert gone() is None
    finally:
        if was_enabled:
            gc.enable()
    assert chain.height == 1
