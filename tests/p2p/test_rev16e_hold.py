"""rev16e: defences of fix16f's two-lane send queue that held under review.

Random mixes of consensus and bulk frames (lane overrides included), bulk reserves and
batch limits: the queue never exceeds its bounds, `len`/`room` stay exact after batches
mixing lanes, per-lane `queued`/`taken` counts match what left (a GET_TXS clock starts
neither early nor late), each lane keeps its order, and a waiting bulk frame is written
within `bulk_turn_after` + 1 writes."""

from __future__ import annotations

import random
from collections import deque

from p2p.messages import (
    MAX_BATCH_BYTES,
    MAX_BATCHED_FRAME,
    Gossip,
    Kind,
    Lane,
    MiB,
    encode,
    frame_kind,
    lane_of,
)
from p2p.peer import SendQueue

TURN = 4  # Limits.bulk_turn_after
SEED = 16_005
KINDS = (Kind.VOTE, Kind.PROPOSAL, Kind.TXS, Kind.TX_IDS, Kind.GET_TXS, Kind.TX_BODIES)


def _frame(kind: Kind, serial: int, size: int) -> bytes:
    return encode(Gossip(kind, serial.to_bytes(4, "big") * max(1, size // 4)))


def test_rev16e_bounds_counts_and_order_hold_under_random_mixes_of_both_lanes() -> None:
    rng = random.Random(SEED)
    max_frames, max_bytes = 64, 2 * MiB
    queue = SendQueue(max_frames, max_bytes, TURN)
    expected: tuple[deque[bytes], deque[bytes]] = (deque(), deque())
    queued_bytes = 0
    run = 0  # writes in a row that took no bulk frame while one waited
    for step in range(20_000):
        where = f"seed {SEED}, step {step}"
        if rng.random() < 0.6:
            kind = rng.choice(KINDS)
            size = rng.choice((100, 3000, 60_000, MAX_BATCHED_FRAME + 1, 300_000))
            frame = _frame(kind, step, size)
            lane = rng.choice((None, None, Lane.CONSENSUS)) if kind is Kind.TXS else None
            bulk = kind in (Kind.TXS, Kind.TX_IDS, Kind.GET_TXS, Kind.TX_BODIES)
            keep = (max_frames // 4, max_bytes // 4) if bulk else (0, 0)
            fits = (
                len(queue) + keep[0] < max_frames
                and queued_bytes + len(frame) + keep[1] <= max_bytes
            )
            assert queue.put(frame, *keep, lane) == fits, where
            if fits:
                expected[lane_of(kind) if lane is None else lane].append(frame)
                queued_bytes += len(frame)
        elif len(queue):
            had_bulk = bool(expected[Lane.BULK])
            batch = queue.take_batch(rng.choice((1, 8, 256)), MAX_BATCHED_FRAME, MAX_BATCH_BYTES)
            took_bulk = False
            for frame in batch:
                heads = [i for i, q in enumerate(expected) if q and q[0] == frame]
                assert heads, f"{where}: a lane's order broke"
                expected[heads[0]].popleft()
                queued_bytes -= len(frame)
                took_bulk |= heads[0] == Lane.BULK
            assert sum(map(len, batch)) <= max(MAX_BATCH_BYTES, len(batch[0])), where
            if had_bulk and not took_bulk:
                run += 1
                assert run <= TURN, f"{where}: a bulk frame waited past its turn"
            else:
                run = 0
        assert len(queue) == len(expected[0]) + len(expected[1]) <= max_frames, where
        assert queue.room() == max_bytes - queued_bytes >= 0, where
        for lane in Lane:
            assert queue.queued[lane] - queue.taken[lane] == len(expected[lane]), where


def test_rev16e_a_get_txs_mark_is_reached_only_when_it_leaves_in_a_turn_batch() -> None:
    """tx relay by id: a GET_TXS request's time starts once it left; a bulk turn whose
    batch mixes lanes must count it then, not when consensus frames overtook it."""
    queue = SendQueue(64, MiB, TURN)
    assert queue.put(_frame(Kind.TX_IDS, 1, 100))
    assert queue.put(_frame(Kind.GET_TXS, 2, 100))
    mark = queue.queued[Lane.BULK]
    big = MAX_BATCHED_FRAME + 1
    for i in range(TURN):
        assert queue.put(_frame(Kind.PROPOSAL, 10 + i, big))
        assert frame_kind(queue.take_batch(256, MAX_BATCHED_FRAME, MAX_BATCH_BYTES)[0]) == (
            Kind.PROPOSAL
        )
        assert queue.taken[Lane.BULK] < mark, "counted as sent while still queued"
    assert queue.put(_frame(Kind.VOTE, 20, 100))
    turn = queue.take_batch(256, MAX_BATCHED_FRAME, MAX_BATCH_BYTES)
    # A bulk turn batches its lane's frames first, then consensus ones (rev16e 1's fix).
    assert [frame_kind(f) for f in turn] == [Kind.TX_IDS, Kind.GET_TXS, Kind.VOTE]
    assert queue.taken[Lane.BULK] >= mark
