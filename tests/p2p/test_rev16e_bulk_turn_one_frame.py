"""rev16e 1: a bulk turn carries one tx frame while the consensus lane's head is a frame
too big to batch (block sync answers, full proposals, snapshot parts).

`SendQueue.take_batch` stops batching at the first consensus frame it leaves out ("a
consensus frame left out goes before any bulk frame"), also in a bulk turn: the turn
writes its first tx frame alone. A peer syncing from us keeps up to
`max_inflight_requests` (8) BLOCKS answers of up to 8 MiB queued, so each of our tx
frames to it (TX_IDS every 100 ms, GET_TXS, TX_BODIES answers: a few KiB each) costs
five writes, four of them BLOCKS: one small tx frame per 32 MiB, 2.7 s at 100 Mbit/s.
Under FIFO (before fix16f) the small frames queued between two BLOCKS left together in
one batch. What the user sees: tx relay to a catching-up peer stalls; its GET_TXS to us
are answered seconds late (scored undelivered at its 1 s `tx_fetch_timeout`, moved to
other announcers), our announcements pile up to the bulk share and are dropped.
Fix direction: in a bulk turn, batch the tx frames queued behind the first (up to
MAX_BATCH_BYTES) before the unbatchable consensus head, or count turns in bytes.
"""

from __future__ import annotations

from p2p.messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_FRAMES,
    MAX_BATCHED_FRAME,
    Gossip,
    Kind,
    MiB,
    encode,
)
from p2p.peer import SendQueue

TURN = 4  # Limits.bulk_turn_after
BLOCKS_SIZE = MiB  # a block sync answer (up to 8 MiB): never batched (> MAX_BATCHED_FRAME)
TX_FRAMES = 20  # small tx frames (3 KiB each, 60 KiB in all: one batch's worth)


def _frame(kind: Kind, tag: int, size: int) -> bytes:
    return encode(Gossip(kind, tag.to_bytes(4, "big") * (size // 4)))


def test_rev16e_small_tx_frames_leave_in_one_bulk_turn_behind_block_sync_answers() -> None:
    queue = SendQueue(2048, 24 * MiB, TURN)
    txs = [_frame(Kind.TXS, i, 3 * 1024) for i in range(TX_FRAMES)]
    for tx in txs:
        assert queue.put(tx)
    left: set[bytes] = set()
    writes = 0
    blocks_bytes = 0
    serial = 1000
    while len(left) < TX_FRAMES:
        # The syncing peer's next GET_BLOCKS is answered before the queue drains (8 in
        # flight): BLOCKS answers always wait in the consensus lane.
        while len(queue) - (TX_FRAMES - len(left)) < 4:
            assert queue.put(_frame(Kind.PROPOSAL, serial, BLOCKS_SIZE))
            serial += 1
        batch = queue.take_batch(MAX_BATCH_FRAMES, MAX_BATCHED_FRAME, MAX_BATCH_BYTES)
        writes += 1
        for frame in batch:
            if frame in txs:
                left.add(frame)
            else:
                blocks_bytes += len(frame)
        assert writes < 500
    assert writes <= TURN + 1, (
        f"{TX_FRAMES} small tx frames ({TX_FRAMES * 3} KiB, one batch) took {writes} "
        f"writes to leave, {blocks_bytes / MiB:.0f} MiB of block sync answers written "
        f"before the last ({blocks_bytes * 8 / 100e6:.1f} s at 100 Mbit/s)"
    )
