"""What a committed block leaves in memory: the state, and no garbage frozen for good."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from fluxchain.store import collector
from tests.support.chain import Builder, funded_key, open_chain


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_garbage_made_before_a_commit_is_not_frozen(tmp_path: Path) -> None:
    """What is alive when the chain collects is frozen, so that the collector stops
    walking the state; a reference cycle dropped before a commit (as a rejected tx's
    exception and its frame make) must stay collectable, never frozen for good, both
    when the commit collects and when it leaves the collection to a later block."""
    chain = open_chain(tmp_path / "a")
    builder = Builder(chain)
    was_enabled = gc.isenabled()
    gc.disable()  # only the chain's own collection, or the test's, may free it
    try:
        for due in (False, True):
            cycle = _Cycle()
            gone = weakref.ref(cycle)
            del cycle
            bound = 0 if due else collector.COLLECT_AFTER
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(collector, "COLLECT_AFTER", bound)
                builder.commit([builder.transfer(funded_key(), bytes(20))])
            if not due:
                gc.collect()
            assert gone() is None, f"collection due at the commit: {due}"
    finally:
        if was_enabled:
            gc.enable()
    assert chain.height == 2


def test_a_block_that_leaves_few_new_objects_runs_no_collection(tmp_path: Path) -> None:
    """A full collection after every block walked every object made since the block
    before (the pool's txs, mostly freed a block later): a block that leaves fewer than
    COLLECT_AFTER new objects must run none."""
    chain = open_chain(tmp_path / "a")
    builder = Builder(chain)
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        for _ in range(3):
            builder.commit([builder.transfer(funded_key(), bytes(20))])
    finally:
        gc.callbacks.remove(count)
    assert chain.height == 3
    assert collections == []


def test_many_blocks_keep_the_unfrozen_objects_bounded_and_free_their_cycles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over many blocks that each drop reference cycles and keep new objects alive, the
    objects the collector has not yet walked stay under the bound (plus one block's),
    and every cycle dropped before the chain's last collection is freed."""
    bound = 3_000
    monkeypatch.setattr(collector, "COLLECT_AFTER", bound)
    chain = open_chain(tmp_path / "a")
    builder = Builder(chain)
    kept: list[list[int]] = []  # long-lived objects, as the state's records are
    dropped: list[weakref.ref[_Cycle]] = []
    collected_at: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected_at.append(len(dropped))

    gc.callbacks.append(note)
    try:
        for _ in range(40):
            for _ in range(200):
                cycle = _Cycle()
                dropped.append(weakref.ref(cycle))
                kept.append([len(kept)])
            del cycle
            builder.commit([builder.transfer(funded_key(), bytes(20))])
            assert len(gc.get_objects()) < bound + 1_000
    finally:
        gc.callbacks.remove(note)
    assert len(collected_at) >= 40 * 400 // bound
    alive = [i for i, ref in enumerate(dropped[: collected_at[-1]]) if ref() is not None]
    assert alive == []


def test_a_stall_with_no_block_still_frees_cycles(tmp_path: Path) -> None:
    """With no block to end (consensus stalled while txs and messages keep coming), the
    collector's own trigger, raised when the chain opened, still frees dropped cycles."""
    open_chain(tmp_path / "a")
    assert gc.isenabled()
    first = _Cycle()
    gone = weakref.ref(first)
    del first
    for _ in range(collector.AUTOMATIC_AFTER + 10):  # each one a dropped cycle
        _Cycle()
    assert gone() is None
