"""Defences of wan16b's relay speed-ups that held under review rev16d."""

from __future__ import annotations

import random

import pytest

from p2p.limits import Rate, TokenBucket
from p2p.messages import MAX_TX_IDS_PER_ANNOUNCE, TX_ID_SIZE, split_ids
from p2p.peer import BoundedSet

pytestmark = pytest.mark.filterwarnings("error")

SEED = 1616


def test_rev16d_note_all_keeps_what_add_all_keeps_in_the_same_order_at_the_bound() -> None:
    """Batches past the capacity, with ids present, repeated and evicted within a batch:
    `note_all` leaves the same keys in the same (eviction) order as `add_all`."""
    rng = random.Random(SEED)
    for capacity in (1, 3, 8):
        noted, added = BoundedSet(capacity), BoundedSet(capacity)
        for _ in range(400):
            batch = [bytes([rng.randrange(12)]) for _ in range(rng.randrange(0, 2 * capacity + 2))]
            noted.note_all(batch)
            added.add_all(batch)
            assert list(noted) == list(added), f"seed {SEED} capacity {capacity} batch {batch}"


def _old_take(state: list[float], rate: Rate, now: float, amount: float, keep: float) -> bool:
    """TokenBucket.take before wan16b; `state` is [tokens, updated]."""
    elapsed = max(0.0, now - state[1])
    state[0] = min(rate.burst, state[0] + elapsed * rate.per_second)
    state[1] = now
    if state[0] < amount + keep:
        return False
    state[0] -= amount
    return True


def test_rev16d_token_bucket_take_answers_as_before_with_time_going_back_and_big_keeps() -> None:
    rng = random.Random(SEED)
    for rate in (Rate(10_000, 20_000), Rate(0.5, 2.0), Rate(0.0, 5.0), Rate(3.0, 0.0)):
        bucket, old, now = TokenBucket(rate, 100.0), [rate.burst, 100.0], 100.0
        for step in range(2_000):
            now += rng.choice((-1.0, -1e-9, 0.0, 1e-12, 0.001, 0.3, 5.0))
            amount = rng.choice((0.0, 1.0, 7.0, rate.burst, rate.burst + 1))
            keep = rng.choice((0.0, 1.0, rate.burst, 2 * rate.burst + 1))
            expected = _old_take(old, rate, now, amount, keep)
            assert bucket.take(now, amount, keep) == expected, f"seed {SEED} {rate} step {step}"
            assert bucket.available(now) == min(rate.burst, old[0]), f"seed {SEED} step {step}"
            old[1] = now


def test_rev16d_split_ids_cuts_any_length_as_slicing_does() -> None:
    """Empty, ragged (not whole ids) and the largest list: the ids slicing gives."""
    rng = random.Random(SEED)
    for length in (0, 1, 31, 33, 64, 65, TX_ID_SIZE * MAX_TX_IDS_PER_ANNOUNCE):
        data = rng.randbytes(length)
        sliced = [data[i : i + TX_ID_SIZE] for i in range(0, len(data), TX_ID_SIZE)]
        assert split_ids(data) == sliced, f"seed {SEED} length {length}"
