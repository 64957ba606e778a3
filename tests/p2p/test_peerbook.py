"""The peer book: backoff, bounds, bans with expiry, and persistence."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from p2p.peerbook import FilePeerStore, MemoryPeerStore, PeerBook, ip_ban_key, node_ban_key

pytestmark = pytest.mark.filterwarnings("error")


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_book(clock: FakeClock, **kwargs: object) -> PeerBook:
    return PeerBook(clock=clock, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def test_backoff_is_exponential_jittered_and_capped() -> None:
    book = make_book(FakeClock(), backoff_base=1.0, backoff_cap=60.0)
    assert book.backoff_delay(0) == 0.0
    for failures in range(1, 12):
        nominal = min(60.0, 2.0 ** (failures - 1))
        delay = book.backoff_delay(failures)
        assert 0.5 * nominal <= delay < nominal <= 60.0
    # The jitter comes from the injected RNG: the same seed gives the same schedule.
    again = make_book(FakeClock(), backoff_base=1.0, backoff_cap=60.0)
    fresh = make_book(FakeClock(), backoff_base=1.0, backoff_cap=60.0)
    assert [again.backoff_delay(n) for n in range(1, 8)] == [
        fresh.backoff_delay(n) for n in range(1, 8)
    ]


def test_failed_dials_back_off_and_discovered_addresses_are_forgotten() -> None:
    clock = FakeClock()
    book = make_book(clock, max_failures=3)
    book.add_persistent("10.0.0.1:1")
    assert book.add_discovered("10.0.0.2:2")
    for _ in range(5):
        book.record_failure("10.0.0.1:1")
        book.record_failure("10.0.0.2:2")
    assert "10.0.0.2:2" not in book  # forgotten after 3 failures
    entry = book.entry("10.0.0.1:1")
    assert entry is not None and entry.failures == 5  # persistent: kept, backing off
    assert book.due(persistent=True) == []
    clock.now += 60
    assert [e.address for e in book.due(persistent=True)] == ["10.0.0.1:1"]
    book.record_success("10.0.0.1:1", b"\x02" * 33)
    assert entry.failures == 0 and entry.next_dial_at == 0.0


def test_a_full_book_only_replaces_failed_addresses() -> None:
    book = make_book(FakeClock(), new_buckets=1, tried_buckets=1, bucket_size=3)
    for i in range(3):
        assert book.add_discovered(f"10.0.0.{i}:1")
    # Good (never failed) addresses cannot be pushed out by a flood of new ones.
    assert not book.add_discovered("10.9.9.9:1")
    book.record_failure("10.0.0.1:1")
    assert book.add_discovered("10.9.9.9:1")
    assert "10.0.0.1:1" not in book and len(book) == 3
    assert not book.add_discovered("not an address")


def test_bans_expire_with_the_clock() -> None:
    clock = FakeClock()
    book = make_book(clock)
    key = node_ban_key(b"\x02" * 33)
    book.ban(key, 100.0, "rate_limited")
    assert book.is_banned(key)
    clock.now += 99
    assert book.is_banned(key)
    clock.now += 2
    assert not book.is_banned(key)
    assert book.ban_count == 0


def test_ban_table_is_bounded() -> None:
    clock = FakeClock()
    book = make_book(clock, max_bans=3)
    for i in range(5):
        book.ban(ip_ban_key(f"10.0.0.{i}"), 100.0 + i, "x")
    assert book.ban_count == 3
    # The soonest-expiring bans gave way.
    assert not book.is_banned(ip_ban_key("10.0.0.0"))
    assert book.is_banned(ip_ban_key("10.0.0.4"))


def test_book_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    for store in (MemoryPeerStore(), FilePeerStore(tmp_path / "peers.bin")):
        book = make_book(clock, store=store)
        book.add_persistent("10.0.0.1:1")
        book.add_discovered("10.0.0.2:2")
        book.record_success("10.0.0.2:2", b"\x03" * 33)
        book.ban(node_ban_key(b"\x02" * 33), 50.0, "bad_signature")
        book.ban(ip_ban_key("10.0.0.9"), -1.0, "expired already")
        book.save()

        restored = make_book(clock, store=store)
        restored.load()
        entry = restored.entry("10.0.0.2:2")
        assert entry is not None and entry.node_key == b"\x03" * 33 and entry.last_seen > 0
        # Persistence of "persistent" belongs to the config, not to the book.
        first = restored.entry("10.0.0.1:1")
        assert first is not None and not first.persistent
        assert restored.is_banned(node_ban_key(b"\x02" * 33))
        assert restored.ban_count == 1


def test_a_corrupt_book_is_ignored() -> None:
    book = make_book(FakeClock(), store=MemoryPeerStore(b"\xc1 not a book"))
    book.load()
    assert len(book) == 0


def test_an_inbound_peer_cannot_rename_a_known_address_to_its_own_key() -> None:
    """Issue 22 review: a peer connecting from a known address's IP and advertising its
    port used to overwrite the entry's key with its own, so the address looked
    connected already and was never dialed again (a persistent peer cut off). The key of
    a known address is learned only by dialing it."""
    book = make_book(FakeClock())
    persistent, honest, squatter = b"\x02" + b"\x01" * 32, b"\x02" + b"\x02" * 32, b"\x03" * 33
    book.add_persistent("10.1.0.2:26600")
    book.record_success("10.1.0.2:26600", persistent)
    assert book.add_discovered("10.1.0.2:26600", squatter, source="10.1.0.2")
    entry = book.entry("10.1.0.2:26600")
    assert entry is not None and entry.persistent and entry.node_key == persistent
    assert book.add_discovered("10.2.0.2:26600", honest, source="10.9.0.1")
    assert book.add_discovered("10.2.0.2:26600", squatter, source="10.2.0.2")
    known = book.entry("10.2.0.2:26600")
    assert known is not None and known.node_key == honest


def test_a_persistent_address_given_by_key_is_pinned_to_it() -> None:
    book = make_book(FakeClock())
    key = b"\x02" + b"\x07" * 32
    book.add_persistent("10.1.0.2:26600", key)
    entry = book.entry("10.1.0.2:26600")
    assert entry is not None and entry.pinned_key == key and entry.node_key == key
