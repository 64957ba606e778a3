"""The next height appends to the consensus WAL (issue 22, idle22): a running node no
longer rewrites the log (two fsyncs, a file created and renamed) at every height. What a
restart replays is unchanged: the records of its height logged before a crash, and none
of a height nothing of which was durable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.events import TimeoutFired
from consensus.messages import Step
from fluxchain.node import wal as wal_module
from fluxchain.node.wal import ConsensusWal, WalRecord


def _timeouts(height: int, count: int) -> list[WalRecord]:
    return [TimeoutFired(height, round_, Step.PRECOMMIT) for round_ in range(count)]


def _power_cut(wal: ConsensusWal, keep: int) -> None:
    """What a power cut leaves: the synced bytes and `keep` - synced of the rest."""
    wal.close()
    os.truncate(wal.path, keep)


def test_the_next_height_costs_no_fsync_and_no_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    renamed: list[str | Path] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        renamed.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    wal = ConsensusWal(tmp_path / "consensus.wal", fsync=synced.append)
    wal.start_height(1)  # opening the log: the rewrite, durable at once
    assert (len(synced), len(renamed)) == (2, 1)
    for height in range(2, 12):
        assert wal.start_height(height) == []
        for record in _timeouts(height, 3):
            wal.record(record)
        wal.flush()  # as before a signature: one fsync covers the height record too
    assert (len(synced), len(renamed)) == (2 + 10, 1)
    assert wal.synced_size == wal.size
    assert wal.replay(11) == _timeouts(11, 3)
    assert wal.replay(10) == []  # an earlier height's records are not its log any more
    wal.close()


def test_a_power_cut_before_the_next_heights_first_flush_replays_nothing_of_it(
    tmp_path: Path,
) -> None:
    """Its height record and records were not durable: whatever part of them survives,
    a restart at that height replays none of the last height's records as its own."""
    path = tmp_path / "consensus.wal"
    for keep in range(0, 60, 3):  # every cut point in the unsynced tail
        wal = ConsensusWal(path)
        wal.start_height(1)
        for record in _timeouts(1, 2):
            wal.record(record)
        wal.flush()
        synced = wal.synced_size
        wal.start_height(2)
        wal.record(TimeoutFired(2, 0, Step.PROPOSE))
        _power_cut(wal, min(synced + keep, wal.size))
        restarted = ConsensusWal(path)
        replayed = restarted.start_height(2)
        assert replayed in ([], [TimeoutFired(2, 0, Step.PROPOSE)]), keep
        restarted.close()
        path.unlink()


def test_a_restart_replays_exactly_its_heights_records_from_an_appended_log(
    tmp_path: Path,
) -> None:
    path = tmp_path / "consensus.wal"
    wal = ConsensusWal(path)
    for height in range(1, 6):
        wal.start_height(height)
        for record in _timeouts(height, height):
            wal.record(record)
        wal.flush()
    _power_cut(wal, wal.synced_size)
    restarted = ConsensusWal(path)
    assert restarted.start_height(5) == _timeouts(5, 5)
    # The restart's rewrite kept only height 5's records: the log starts over small.
    assert ConsensusWal(path).replay(5) == _timeouts(5, 5)
    assert restarted.size < 200
    restarted.close()


def test_a_log_past_its_bound_is_rewritten_at_the_next_height(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log grows by a height's records at most COMPACT_AT_BYTES before a new height
    rewrites it with just its own record: what a restart reads stays bounded."""
    monkeypatch.setattr(wal_module, "COMPACT_AT_BYTES", 400)
    wal = ConsensusWal(tmp_path / "consensus.wal")
    wal.start_height(1)
    largest = 0
    for height in range(2, 40):
        wal.start_height(height)
        for record in _timeouts(height, 4):
            wal.record(record)
        largest = max(largest, wal.size)
        assert wal.path.stat().st_size == wal.size
    per_height = len(b"".join(wal_module._frame(wal_module._encode(r)) for r in _timeouts(1, 4)))
    assert largest < 400 + per_height + 20
    assert wal.replay(39) == _timeouts(39, 4)
    wal.close()
