"""A higher height truncates the open consensus WAL (issue 22, idle22; review rev22w): a
running node no longer rewrites the log (two fsyncs, a file created and renamed) at every
height. What a restart replays is unchanged: the records of its height logged before a
crash, and none of a height nothing of which was durable. (idle22 appended instead and
kept up to 4 MiB of earlier heights, rewriting past that bound: the bound and its test
went with review rev22w, as the log holds one height again.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.events import TimeoutFired
from consensus.messages import Step
from fluxchain.core.encoding import pack
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
    """Neither the truncation nor the new records were durable: whether the old log
    survives or whatever part of the new one, a restart at that height replays none of the
    last height's records as its own."""
    path = tmp_path / "consensus.wal"
    wal = ConsensusWal(path)
    wal.start_height(1)
    for record in _timeouts(1, 2):
        wal.record(record)
    wal.flush()
    old = path.read_bytes()
    wal.start_height(2)
    assert wal.synced_size == 0  # the truncation is not durable yet
    wal.record(TimeoutFired(2, 0, Step.PROPOSE))
    new = path.read_bytes()
    wal.close()
    survivors = [old] + [new[:keep] for keep in range(len(new) + 1)]
    for survivor in survivors:  # the old log, or every cut point of the new one
        path.write_bytes(survivor)
        restarted = ConsensusWal(path)
        replayed = restarted.start_height(2)
        assert replayed in ([], [TimeoutFired(2, 0, Step.PROPOSE)]), len(survivor)
        assert replayed == ([TimeoutFired(2, 0, Step.PROPOSE)] if survivor == new else [])
        restarted.close()


def test_a_restart_replays_exactly_its_heights_records_from_a_running_log(
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


def test_the_log_holds_the_current_height_alone(tmp_path: Path) -> None:
    """What a restart reads is one height's records: earlier heights' are truncated away."""
    wal = ConsensusWal(tmp_path / "consensus.wal")
    wal.start_height(1)
    for height in range(2, 40):
        wal.start_height(height)
        for record in _timeouts(height, 4):
            wal.record(record)
        assert wal.path.stat().st_size == wal.size
    marker = wal_module._frame(pack([0, 39]))
    records = b"".join(wal_module._frame(wal_module._encode(r)) for r in _timeouts(39, 4))
    assert wal.path.read_bytes() == marker + records
    assert wal.replay(39) == _timeouts(39, 4)
    assert wal.replay(38) == []
    wal.close()


def test_a_log_of_several_heights_from_the_appending_build_is_still_replayed(
    tmp_path: Path,
) -> None:
    """idle22's build appended heights to one log: a node upgraded from it restarts with
    its height's records, those after the last height record."""
    path = tmp_path / "consensus.wal"
    path.write_bytes(
        b"".join(
            wal_module._frame(pack([0, height]))
            + b"".join(wal_module._frame(wal_module._encode(r)) for r in _timeouts(height, 2))
            for height in (4, 5, 6)
        )
    )
    restarted = ConsensusWal(path)
    assert restarted.start_height(6) == _timeouts(6, 2)
    restarted.close()
    assert ConsensusWal(path).replay(5) == []  # the rewrite kept height 6's alone
