"""The peer book: addresses this node may dial, when it may dial them, and who is banned.

Everything here is bounded and owned by one `Network`; nothing does I/O except through
the injected `PeerStore`. Times are wall-clock seconds from an injected clock, so bans
survive a restart and tests can move time.

Policies (docs/p2p.md explains them):
- Persistent peers come from the node's config; they are never evicted and are redialed
  forever, with backoff. Whether an address is persistent is not stored: the config of
  the current run decides.
- Discovered addresses come from PEERS frames and from what inbound peers advertise.
  When the book is full, a new address may only replace one whose dials have failed:
  a peer flooding us with addresses cannot push out the ones that worked (eclipse).
- A failed dial schedules the next one after base * 2^(failures-1) seconds, capped,
  multiplied by a jitter in [0.5, 1) so that nodes restarted together do not redial in
  lockstep; a discovered address is forgotten after `max_failures` failures in a row.
- Bans are keyed by "node:<hex key>" (a proven node key) or "ip:<address>", each with
  an expiry; at most `max_bans`, the soonest-expiring giving way to a new one.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from fluxchain.core.encoding import U64, as_bytes, as_int, as_list, as_str, pack, unpack
from fluxchain.core.errors import DecodeError, Reason
from p2p.messages import MAX_ADDRESS_LEN, parse_address

log = logging.getLogger("fluxchain.p2p")

Clock = Callable[[], float]

BOOK_FORMAT_VERSION: Final = 1
# 1,000 addresses is what CometBFT's address book considers "enough" before it stops
# asking for more; a few hundred KiB of memory at most.
DEFAULT_MAX_ADDRESSES: Final = 1000
# Bans are cheap entries (~100 bytes); 4,096 covers a sustained attack from many keys
# and addresses while keeping the table small.
DEFAULT_MAX_BANS: Final = 4096
# The stored book is never bigger than this (1,000 addresses + 4,096 bans at < 400
# bytes each); a bigger file is treated as corrupt.
MAX_BOOK_BYTES: Final = 4 * 1024 * 1024
_MAX_SELF_ADDRESSES: Final = 16


class PeerStore(Protocol):
    """Where the peer book is kept between runs (the node backs it with its LevelDB)."""

    def load(self) -> bytes | None:
        """The last saved book, or None if nothing was saved."""

    def save(self, data: bytes) -> None:
        """Replace the saved book with `data`."""


class MemoryPeerStore:
    """A PeerStore in memory: for tests, and for nodes that should forget their peers."""

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data

    def load(self) -> bytes | None:
        return self.data

    def save(self, data: bytes) -> None:
        self.data = data


class FilePeerStore:
    """A PeerStore in one file, replaced atomically (write a temp file, then rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def save(self, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def node_ban_key(node_key: bytes) -> str:
    """The ban key of a proven node key."""
    return "node:" + node_key.hex()


def ip_ban_key(ip: str) -> str:
    """The ban key of a remote IP address."""
    return "ip:" + ip


@dataclass(slots=True)
class AddressEntry:
    """What the book knows about one dialable address."""

    address: str
    persistent: bool = False
    node_key: bytes | None = None  # learned when a handshake to it succeeded
    last_seen: float = 0.0  # wall time of the last successful handshake; 0 = never
    failures: int = 0  # failed dials in a row
    next_dial_at: float = 0.0  # not before this wall time (backoff); not stored


@dataclass(frozen=True, slots=True)
class Ban:
    expires_at: float
    reason: str


class PeerBook:
    """Known addresses with dial backoff, and timed bans; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        rng: random.Random,
        store: PeerStore | None = None,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        max_bans: int = DEFAULT_MAX_BANS,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_failures: int = 8,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._store = store if store is not None else MemoryPeerStore()
        self.max_addresses = max_addresses
        self.max_bans = max_bans
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_failures = max_failures
        self._entries: dict[str, AddressEntry] = {}
        self._bans: dict[str, Ban] = {}
        self._self_addresses: set[str] = set()
        self.dirty = False

    # -- addresses ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, address: object) -> bool:
        return address in self._entries

    def entry(self, address: str) -> AddressEntry | None:
        """The entry of `address`, if known."""
        return self._entries.get(address)

    def entries(self) -> list[AddressEntry]:
        """Every known address (a copy of the list; entries are live)."""
        return list(self._entries.values())

    def add_persistent(self, address: str) -> None:
        """Add (or promote) an address from the config: always kept, always redialed."""
        parse_address(address)  # raise ValueError on a typo in the config
        entry = self._entries.get(address)
        if entry is None:
            self._entries[address] = AddressEntry(address, persistent=True)
        else:
            entry.persistent = True
        self._self_addresses.discard(address)

    def add_discovered(self, address: str, node_key: bytes | None = None) -> bool:
        """Add an address learned from a peer; return whether the book now holds it."""
        if address in self._entries:
            if node_key is not None:
                self._entries[address].node_key = node_key
            return True
        if address in self._self_addresses or len(address) > MAX_ADDRESS_LEN:
            return False
        try:
            parse_address(address)
        except ValueError:
            return False
        if len(self._entries) >= self.max_addresses and not self._evict_one_failed():
            return False
        self._entries[address] = AddressEntry(address, node_key=node_key)
        self.dirty = True
        return True

    def _evict_one_failed(self) -> bool:
        worst: AddressEntry | None = None
        for entry in self._entries.values():
            if entry.persistent or entry.failures == 0:
                continue
            if worst is None or (entry.failures, -entry.last_seen) > (
                worst.failures,
                -worst.last_seen,
            ):
                worst = entry
        if worst is None:
            return False
        del self._entries[worst.address]
        return True

    def mark_self(self, address: str) -> None:
        """`address` reached this very node: never dial it again (this run)."""
        entry = self._entries.pop(address, None)
        if entry is not None and entry.persistent:
            log.warning("event=persistent_peer_is_self address=%s", address)
        if len(self._self_addresses) < _MAX_SELF_ADDRESSES:
            self._self_addresses.add(address)

    def record_dial(self, address: str) -> None:
        """A dial to `address` starts: hold off further dials until it is decided."""
        entry = self._entries.get(address)
        if entry is not None:
            entry.next_dial_at = self._clock() + self.backoff_delay(entry.failures + 1)

    def record_success(self, address: str, node_key: bytes) -> None:
        """A handshake with `address` succeeded: reset its backoff."""
        entry = self._entries.get(address)
        if entry is None:
            return
        entry.node_key = node_key
        entry.failures = 0
        entry.last_seen = self._clock()
        entry.next_dial_at = 0.0
        self.dirty = True

    def record_failure(self, address: str) -> None:
        """A dial to `address` failed: back off, and forget it after too many failures."""
        entry = self._entries.get(address)
        if entry is None:
            return
        entry.failures += 1
        if not entry.persistent and entry.failures >= self.max_failures:
            del self._entries[address]
        else:
            entry.next_dial_at = self._clock() + self.backoff_delay(entry.failures)
        self.dirty = True

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failed dials in a row (0 if none)."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, 32)  # 2**32 * base is past any sane cap already
        delay = min(self.backoff_cap, self.backoff_base * 2.0**exponent)
        return delay * (0.5 + 0.5 * self._rng.random())

    def due(self, *, persistent: bool) -> list[AddressEntry]:
        """Addresses whose backoff has passed and whose node key is not banned."""
        now = self._clock()
        return [
            entry
            for entry in self._entries.values()
            if entry.persistent == persistent
            and entry.next_dial_at <= now
            and not (entry.node_key is not None and self.is_banned(node_ban_key(entry.node_key)))
        ]

    def sample(self, count: int, exclude: Iterable[str] = ()) -> list[str]:
        """Up to `count` random addresses that worked before (or are configured)."""
        excluded = set(exclude)
        good = [
            entry.address
            for entry in self._entries.values()
            if (entry.persistent or entry.last_seen > 0) and entry.address not in excluded
        ]
        return self._rng.sample(good, min(count, len(good)))

    # -- bans -----------------------------------------------------------------------

    def ban(self, key: str, duration: float, reason: str) -> None:
        """Ban `key` ("node:…" or "ip:…") for `duration` seconds from now."""
        expires_at = self._clock() + duration
        current = self._bans.get(key)
        if current is not None and current.expires_at >= expires_at:
            return
        if current is None and len(self._bans) >= self.max_bans:
            self.prune_bans()
            if len(self._bans) >= self.max_bans:
                soonest = min(self._bans, key=lambda k: self._bans[k].expires_at)
                del self._bans[soonest]
        self._bans[key] = Ban(expires_at, reason)
        self.dirty = True

    def is_banned(self, key: str) -> bool:
        """True while `key` is banned; an expired ban is removed on the way."""
        ban = self._bans.get(key)
        if ban is None:
            return False
        if ban.expires_at <= self._clock():
            del self._bans[key]
            self.dirty = True
            return False
        return True

    def ban_of(self, key: str) -> Ban | None:
        """The active ban of `key`, if any."""
        return self._bans.get(key) if self.is_banned(key) else None

    def unban(self, key: str) -> None:
        """Lift a ban (operator action)."""
        if self._bans.pop(key, None) is not None:
            self.dirty = True

    def prune_bans(self) -> None:
        """Drop every expired ban."""
        now = self._clock()
        expired = [key for key, ban in self._bans.items() if ban.expires_at <= now]
        for key in expired:
            del self._bans[key]
        if expired:
            self.dirty = True

    @property
    def ban_count(self) -> int:
        return len(self._bans)

    # -- persistence ----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical encoding: [version, [[address, node_key, last_seen_ms, failures]…],
        [[ban_key, expires_ms, reason]…]]."""
        self.prune_bans()
        addresses = [
            [e.address, e.node_key or b"", int(e.last_seen * 1000), e.failures]
            for e in sorted(self._entries.values(), key=lambda e: e.address)
        ]
        bans = [
            [key, int(ban.expires_at * 1000), ban.reason[:64]]
            for key, ban in sorted(self._bans.items())
        ]
        return pack([BOOK_FORMAT_VERSION, addresses, bans])

    def load_bytes(self, data: bytes) -> None:
        """Merge a stored book into this one (entries become non-persistent)."""
        obj = as_list(unpack(data, max_bytes=MAX_BOOK_BYTES), "book", length=3)
        version = as_int(obj[0], "book.version")
        if version != BOOK_FORMAT_VERSION:
            raise DecodeError(Reason.UNKNOWN_VERSION, f"peer book format {version}")
        for item in as_list(obj[1], "book.addresses", max_len=self.max_addresses):
            fields = as_list(item, "book.address", length=4)
            address = as_str(fields[0], "book.address", max_len=MAX_ADDRESS_LEN)
            node_key = as_bytes(fields[1], "book.node_key", max_len=33) or None
            if self.add_discovered(address, node_key):
                entry = self._entries[address]
                entry.last_seen = as_int(fields[2], "book.last_seen", 0, U64) / 1000
                entry.failures = as_int(fields[3], "book.failures", 0, 1000)
        for item in as_list(obj[2], "book.bans", max_len=self.max_bans):
            fields = as_list(item, "book.ban", length=3)
            key = as_str(fields[0], "book.ban_key", max_len=MAX_ADDRESS_LEN)
            expires_at = as_int(fields[1], "book.ban_expires", 0, U64) / 1000
            reason = as_str(fields[2], "book.ban_reason", max_len=64)
            if expires_at > self._clock() and len(self._bans) < self.max_bans:
                self._bans[key] = Ban(expires_at, reason)

    def load(self) -> None:
        """Load the stored book; a corrupt one is logged and ignored, never fatal."""
        data = self._store.load()
        if data is None:
            return
        try:
            self.load_bytes(data)
        except DecodeError as exc:
            log.warning("event=peer_book_unreadable reason=%s detail=%r", exc.reason, exc.message)
        self.dirty = False

    def save(self) -> None:
        """Write the book to the store."""
        self._store.save(self.to_bytes())
        self.dirty = False
