"""The bounded id sets every relayed tx and gossip frame passes through (perf14w).

A node remembers, per peer, the tx ids that peer is known to hold (16,384 each), and
the gossip it has seen (100,000). Once full, every new id forgets the oldest. With a plain
dict the oldest key was found by scanning past the slots of the keys deleted before it:
each insert at capacity cost time linear in the capacity (3 µs at 16,384, 15 µs at
100,000), ~60 µs per relayed tx on a node with 18 peers after a minute and a half at
200 tx/s. These tests hold an insert into a full set to the same cost whatever its
capacity, and the sets to their first-in, first-out meaning."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from p2p.peer import BoundedSet, SeenTimes

SMALL, LARGE = 1_000, 100_000
INSERTS = 20_000


def _keys(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(count)]


def _cost_at_capacity(capacity: int, insert: Callable[[bytes], object], seed: int) -> float:
    """Seconds of CPU for INSERTS new keys into a structure already holding `capacity`."""
    keys = _keys(capacity + INSERTS, seed)
    for key in keys[:capacity]:
        insert(key)
    started = time.process_time()
    for key in keys[capacity:]:
        insert(key)
    return time.process_time() - started


def _best_of_three(make: Callable[[int], Callable[[bytes], object]], capacity: int) -> float:
    return min(_cost_at_capacity(capacity, make(capacity), seed) for seed in (1, 2, 3))


def test_adding_to_a_full_bounded_set_costs_the_same_whatever_its_capacity() -> None:
    """Inserting into a full set of 100,000 ids costs about what a full set of 1,000 does
    (the old dict: ~50 times more)."""

    def make(capacity: int) -> Callable[[bytes], object]:
        return BoundedSet(capacity).add

    small, large = _best_of_three(make, SMALL), _best_of_three(make, LARGE)
    print(f"µs an insert at capacity: {1e6 * small / INSERTS:.2f} at {SMALL}, "
          f"{1e6 * large / INSERTS:.2f} at {LARGE}")  # fmt: skip
    assert large < 4 * small + 0.01


def test_accepting_into_full_seen_times_costs_the_same_whatever_its_capacity() -> None:
    """The same for the times gossip was last accepted (consensus frames)."""

    def make(capacity: int) -> Callable[[bytes], object]:
        seen = SeenTimes(capacity)
        return lambda key: seen.accept(key, 0.0, 1.0)

    small, large = _best_of_three(make, SMALL), _best_of_three(make, LARGE)
    print(f"µs an accept at capacity: {1e6 * small / INSERTS:.2f} at {SMALL}, "
          f"{1e6 * large / INSERTS:.2f} at {LARGE}")  # fmt: skip
    assert large < 4 * small + 0.01


def test_a_full_bounded_set_forgets_its_oldest_id_first() -> None:
    """Three ids in a set of two: the first is forgotten, a repeat is not new and does not
    refresh its place, and `add_all` means what `add` one by one means."""
    ids = _keys(4, seed=7)
    one = BoundedSet(2)
    assert [one.add(i) for i in (ids[0], ids[1], ids[0], ids[2])] == [True, True, False, True]
    assert ids[0] not in one and ids[1] in one and ids[2] in one
    batch = BoundedSet(2)
    assert batch.add_all([ids[0], ids[1], ids[0], ids[2]]) == [ids[0], ids[1], ids[2]]
    assert list(batch) == list(one) == [ids[1], ids[2]]
    assert batch.add_all([ids[2], ids[3]]) == [ids[3]]
    assert list(batch) == [ids[2], ids[3]] and len(batch) == 2
    batch.discard(ids[2])
    assert ids[2] not in batch and batch.add(ids[2])


def test_note_all_leaves_a_bounded_set_as_add_all_does() -> None:
    """`note_all` (the relay's inserts whose new ids nobody reads, wan16b) keeps the same
    ids in the same order as `add_all`: repeats within a batch and ids already held
    keep their places, the oldest are forgotten past the capacity."""
    seed = 16
    rng = random.Random(seed)
    pool = _keys(40, seed)
    noted, added = BoundedSet(25), BoundedSet(25)
    for _ in range(300):
        batch = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        noted.note_all(batch)
        added.add_all(batch)
        assert list(noted) == list(added), f"seed {seed}"
    assert len(noted) == 25


def test_seen_times_accepts_again_only_after_the_interval_and_forgets_the_oldest() -> None:
    """A key is refused within `after` of its last acceptance, accepted after it; a full
    table forgets the key accepted longest ago (an acceptance refreshes a key's age)."""
    a, b, c = _keys(3, seed=8)
    seen = SeenTimes(2)
    assert seen.accept(a, 0.0, 1.0) and seen.accept(b, 0.5, 1.0)
    assert not seen.accept(a, 0.9, 1.0)
    assert seen.accept(a, 1.0, 1.0)  # a is now the newest
    assert seen.accept(c, 1.1, 1.0)  # b, the oldest, is forgotten
    assert seen.accept(b, 1.2, 1.0)  # accepted again at once: it was forgotten
    assert not seen.accept(c, 1.3, 1.0)
