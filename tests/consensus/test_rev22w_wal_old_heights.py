"""Review rev22w of 1faf8aa: the consensus WAL keeps the earlier heights' records now.

A running node appends each height's record instead of rewriting the log, so the log holds
up to COMPACT_AT_BYTES (4 MiB, ~700 idle heights) of earlier heights' records that no
restart needs. The replay reads from the start and stops at the first record it cannot
read, taking it for a torn tail: one damaged byte anywhere in those earlier heights now
makes a restart replay nothing of its own height (the proposal, the proof of lock, the
fired timeouts the WAL exists to keep), where the log before held its height alone. The
records carry no checksum, so the damage is not told from a torn tail either.
"""

from __future__ import annotations

from pathlib import Path

from consensus.events import TimeoutFired
from consensus.messages import Step
from fluxchain.node import wal as wal_module
from fluxchain.node.wal import ConsensusWal, WalRecord


def _timeouts(height: int) -> list[WalRecord]:
    return [TimeoutFired(height, round_, Step.PRECOMMIT) for round_ in range(3)]


def test_a_damaged_byte_in_an_earlier_heights_record_loses_nothing_of_the_current_height(
    tmp_path: Path,
) -> None:
    path = tmp_path / "consensus.wal"
    wal = ConsensusWal(path)
    for height in range(1, 4):  # a running node reaches heights 2 and 3
        wal.start_height(height)
        for record in _timeouts(height):
            wal.record(record)
        wal.flush()  # as before each signature: all of it durable
    wal.close()

    # Bit rot in a record of height 1, if the log still holds one: its length's top bit.
    raw = bytearray(path.read_bytes())
    old = raw.find(wal_module._frame(wal_module._encode(_timeouts(1)[0])))
    if old >= 0:
        raw[old] ^= 0x80
        path.write_bytes(bytes(raw))

    restarted = ConsensusWal(path)
    try:
        replayed = restarted.start_height(3)
    finally:
        restarted.close()
    assert replayed == _timeouts(3), (
        f"a restart at height 3 replayed {len(replayed)} of its 3 records: damage in height "
        f"1's record (at byte {old} of the log) ended the replay before height 3"
    )
