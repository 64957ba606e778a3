"""The peer book: addresses this node may dial, when it may dial them, and who is banned.

Everything here is bounded and owned by one `Network`; nothing does I/O except through
the injected `PeerStore`. Times are wall-clock seconds from an injected clock, so bans
survive a restart and tests can move time.

Policies (docs/p2p.md explains them):
- Persistent peers come from the node's config; they are never evicted and are redialed
  forever, with backoff. Whether an address is persistent is not stored: the config of
  the current run decides.
- Discovered addresses come from PEERS frames and from what inbound peers advertise.
  They live in two bucketed tables, after Bitcoin Core's address manager: "new"
  (heard of, never connected) and "tried" (a handshake succeeded). A new address goes
  to the bucket chosen by a keyed hash of its group and of the group of the peer that
  told us (`p2p/netgroup.py`), so one source group reaches at most
  NEW_BUCKETS_PER_SOURCE_GROUP buckets; a tried address goes to a bucket chosen by its
  own group and reaches at most TRIED_BUCKETS_PER_GROUP. The key is this node's secret
  (random, kept with the book), so an attacker cannot aim at the buckets of others.
  Buckets are bounded: in a full new bucket a newcomer may only replace an address
  whose dials failed, so a flood cannot push out untested or working ones; in a full
  tried bucket the least recently seen address goes back to the new table. One source
  or one subnet can therefore fill a few buckets, never the book (eclipse).
- A failed dial schedules the next one after base * 2^(failures-1) seconds, capped,
  multiplied by a jitter in [0.5, 1) so that nodes restarted together do not redial in
  lockstep; a discovered address is forgotten after `max_failures` failures in a row.
- Bans are keyed by "node:<hex key>" (a proven node key) or "ip:<address>" (an
  IPv4-mapped address as its IPv4), each with an expiry; at most `max_bans`, the
  soonest-expiring giving way to a new one.
- An address is keyed by its canonical spelling (`messages.canonical_address`: `0x7f.1:p`
  and `127.1:p` are `127.0.0.1:p`), wherever it comes from (config, peer exchange, an
  inbound peer, a stored book, a dial): one node is one entry, one backoff, one dial.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from fluxchain.core.encoding import U64, as_bytes, as_int, as_list, as_str, pack, unpack
from fluxchain.core.errors import DecodeError, Reason
from p2p.messages import MAX_ADDRESS_LEN, canonical_address, parse_ip
from p2p.netgroup import Netgroups

log = logging.getLogger("fluxchain.p2p")

Clock = Callable[[], float]

BOOK_FORMAT_VERSION: Final = 2
# The tables: 64 new buckets and 32 tried buckets of 16 addresses, 1,536 addresses in
# all, about what CometBFT's address book considers "enough" (1,000) with room for the
# buckets' uneven filling; a few hundred KiB of memory at most. Bitcoin Core keeps
# 1,024 + 256 buckets of 64 for a far bigger network; the proportions are the same:
# one source group reaches 1/16 of the new table, one group 1/16 of the tried table.
DEFAULT_NEW_BUCKETS: Final = 64
DEFAULT_TRIED_BUCKETS: Final = 32
DEFAULT_BUCKET_SIZE: Final = 16
NEW_BUCKETS_PER_SOURCE_GROUP: Final = 4
TRIED_BUCKETS_PER_GROUP: Final = 2
SECRET_SIZE: Final = 32
# Bans are cheap entries (~100 bytes); 4,096 covers a sustained attack from many keys
# and addresses while keeping the table small.
DEFAULT_MAX_BANS: Final = 4096
# The stored book is never bigger than this (1,536 addresses + 4,096 bans at < 500
# bytes each); a bigger file is treated as corrupt.
MAX_BOOK_BYTES: Final = 4 * 1024 * 1024
_MAX_SELF_ADDRESSES: Final = 16


def _any(address: str) -> bool:
    return True


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
    """The ban key of a remote IP address, an IPv4-mapped one as its IPv4 (`parse_ip`):
    a host banned where a dual-stack socket or a dial named it so is banned where it
    connects from over IPv4 too (rev26h)."""
    parsed = parse_ip(ip)
    return "ip:" + (ip if parsed is None else str(parsed))


@dataclass(slots=True)
class AddressEntry:
    """What the book knows about one dialable address."""

    address: str
    persistent: bool = False
    node_key: bytes | None = None  # learned when a handshake to it succeeded
    # the only key accepted at this address (configured as key@host:port); not stored
    pinned_key: bytes | None = None
    last_seen: float = 0.0  # wall time of the last successful handshake; 0 = never
    failures: int = 0  # failed dials in a row
    next_dial_at: float = 0.0  # not before this wall time (backoff); not stored
    source_group: str = ""  # the group of the peer that told us about it
    tried: bool = False  # in the tried table (a handshake with it succeeded)
    bucket: int = -1  # its bucket in its table; -1 for persistent addresses (no table)


@dataclass(frozen=True, slots=True)
class Ban:
    expires_at: float
    reason: str


def _key(address: str) -> str:
    """The book's key of `address` (its canonical spelling); one that is no host:port
    as it is, which no entry has."""
    try:
        return canonical_address(address)
    except ValueError:
        return address


class PeerBook:
    """Known addresses with dial backoff, and timed bans; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        rng: random.Random,
        store: PeerStore | None = None,
        netgroups: Netgroups | None = None,
        secret: bytes | None = None,
        new_buckets: int = DEFAULT_NEW_BUCKETS,
        tried_buckets: int = DEFAULT_TRIED_BUCKETS,
        bucket_size: int = DEFAULT_BUCKET_SIZE,
        max_bans: int = DEFAULT_MAX_BANS,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_failures: int = 8,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._store = store if store is not None else MemoryPeerStore()
        self.netgroups = netgroups if netgroups is not None else Netgroups()
        # The bucket key: a stored book brings its own (so a restart keeps the layout).
        self._secret = secret if secret is not None else secrets.token_bytes(SECRET_SIZE)
        self.bucket_size = bucket_size
        self.max_bans = max_bans
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_failures = max_failures
        self._entries: dict[str, AddressEntry] = {}
        self._new: list[list[str]] = [[] for _ in range(new_buckets)]
        self._tried: list[list[str]] = [[] for _ in range(tried_buckets)]
        self._bans: dict[str, Ban] = {}
        self._self_addresses: set[str] = set()
        self.dirty = False

    # -- addresses ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and _key(address) in self._entries

    @property
    def capacity(self) -> int:
        """How many discovered addresses the tables can hold at most."""
        return (len(self._new) + len(self._tried)) * self.bucket_size

    def entry(self, address: str) -> AddressEntry | None:
        """The entry of `address` (any spelling), if known."""
        return self._entries.get(_key(address))

    def entries(self) -> list[AddressEntry]:
        """Every known address (a copy of the list; entries are live)."""
        return list(self._entries.values())

    def group_of(self, address: str) -> str:
        """The network group of a dialable address (`Netgroups.group`)."""
        return self.netgroups.group(address)

    def new_bucket(self, group: str, source_group: str) -> int:
        """The new-table bucket of an address of `group` heard from `source_group`.

        The inner hash picks one of NEW_BUCKETS_PER_SOURCE_GROUP slots per source group,
        the outer one places that slot: whatever addresses one source sends, they land
        in at most that many buckets.
        """
        spread = self._hash("new-spread", group, source_group) % NEW_BUCKETS_PER_SOURCE_GROUP
        return self._hash("new", source_group, str(spread)) % len(self._new)

    def tried_bucket(self, address: str, group: str) -> int:
        """The tried-table bucket of `address`: one of TRIED_BUCKETS_PER_GROUP per group."""
        spread = self._hash("tried-spread", address) % TRIED_BUCKETS_PER_GROUP
        return self._hash("tried", group, str(spread)) % len(self._tried)

    def _hash(self, *parts: str) -> int:
        digest = hashlib.sha256(self._secret + b"\x00".join(p.encode() for p in parts))
        return int.from_bytes(digest.digest()[:8], "big")

    def add_persistent(self, address: str, pinned_key: bytes | None = None) -> None:
        """Add (or promote) an address from the config: always kept, always redialed;
        with `pinned_key`, dialed by that key only (the config said key@host:port).

        Persistent addresses live outside the tables, so no bucket eviction touches them.
        """
        address = canonical_address(address)  # raise ValueError on a typo in the config
        entry = self._entries.get(address)
        if entry is None:
            entry = self._entries[address] = AddressEntry(address, persistent=True)
        else:
            self._unbucket(entry)
            entry.persistent = True
        entry.pinned_key = pinned_key
        if pinned_key is not None:
            entry.node_key = pinned_key
        self._self_addresses.discard(address)

    def add_discovered(
        self, address: str, node_key: bytes | None = None, *, source: str = ""
    ) -> bool:
        """Add an address learned from a peer; return whether the book now holds it.

        `source` is the host of the peer that told us, a bare IP or name as the socket
        or dial named it (its own address when it advertised itself); it chooses the
        bucket, see the module docstring. Not host:port: refused (False).
        """
        try:
            address = canonical_address(address)
        except ValueError:
            return False
        if address in self._entries:
            # The key of a known address is learned by dialing it (record_success),
            # never from who says it lives there: an inbound peer sharing the address's
            # IP could otherwise rename the entry to its own key and make it look
            # connected already, so that it is never dialed.
            return True
        if address in self._self_addresses or len(address) > MAX_ADDRESS_LEN:
            return False
        try:
            group = self.group_of(address)
            # The host is grouped as it is: formed into "host:port", a bare IPv6 source
            # parsed as no address and every address it sent was refused (rev25p2 2).
            source_group = self.netgroups.source_group(source) if source else group
        except ValueError:
            return False
        entry = AddressEntry(address, node_key=node_key, source_group=source_group)
        if not self._place_new(entry, group):
            return False
        self.dirty = True
        return True

    def _place_new(self, entry: AddressEntry, group: str) -> bool:
        """Put `entry` in its new bucket, evicting a failed address if it is full."""
        index = self.new_bucket(group, entry.source_group)
        bucket = self._new[index]
        if len(bucket) >= self.bucket_size and not self._evict_failed(bucket):
            return False
        bucket.append(entry.address)
        entry.tried, entry.bucket = False, index
        self._entries[entry.address] = entry
        return True

    def _evict_failed(self, bucket: list[str]) -> bool:
        """Forget the address of `bucket` whose dials failed most (then: seen longest ago)."""
        worst: AddressEntry | None = None
        for address in bucket:
            entry = self._entries[address]
            if entry.failures == 0:
                continue
            if worst is None or (entry.failures, -entry.last_seen) > (
                worst.failures,
                -worst.last_seen,
            ):
                worst = entry
        if worst is None:
            return False
        self._forget(worst.address)
        return True

    def _unbucket(self, entry: AddressEntry) -> None:
        if entry.bucket >= 0:
            table = self._tried if entry.tried else self._new
            table[entry.bucket].remove(entry.address)
        entry.bucket, entry.tried = -1, False

    def _forget(self, address: str) -> AddressEntry | None:
        entry = self._entries.pop(address, None)
        if entry is not None:
            self._unbucket(entry)
            self.dirty = True
        return entry

    def _promote(self, entry: AddressEntry) -> None:
        """Move a new address we connected to into the tried table.

        A full tried bucket gives back its least recently seen address to the new table
        (Bitcoin Core tests it first; we keep it as a new address, to be dialed again).
        """
        group = self.group_of(entry.address)
        index = self.tried_bucket(entry.address, group)
        bucket = self._tried[index]
        if len(bucket) >= self.bucket_size:
            oldest = min((self._entries[a] for a in bucket), key=lambda e: e.last_seen)
            bucket.remove(oldest.address)
            del self._entries[oldest.address]
            oldest.bucket, oldest.tried = -1, False
            self._place_new(oldest, self.group_of(oldest.address))  # dropped if no room
        self._unbucket(entry)
        bucket.append(entry.address)
        entry.tried, entry.bucket = True, index

    def mark_self(self, address: str) -> None:
        """`address` reached this very node: never dial it again (this run)."""
        address = _key(address)
        entry = self._forget(address)
        if entry is not None and entry.persistent:
            log.warning("event=persistent_peer_is_self address=%s", address)
        if len(self._self_addresses) < _MAX_SELF_ADDRESSES:
            self._self_addresses.add(address)

    def record_dial(self, address: str) -> None:
        """A dial to `address` starts: hold off further dials until it is decided."""
        entry = self._entries.get(_key(address))
        if entry is not None:
            entry.next_dial_at = self._clock() + self.backoff_delay(entry.failures + 1)

    def record_success(self, address: str, node_key: bytes) -> None:
        """A handshake with `address` succeeded: reset its backoff, move it to tried."""
        entry = self._entries.get(_key(address))
        if entry is None:
            return
        entry.node_key = node_key
        entry.failures = 0
        entry.last_seen = self._clock()
        entry.next_dial_at = 0.0
        if not entry.persistent and not entry.tried:
            self._promote(entry)
        self.dirty = True

    def record_failure(self, address: str) -> None:
        """A dial to `address` failed: back off, and forget it after too many failures."""
        entry = self._entries.get(_key(address))
        if entry is None:
            return
        entry.failures += 1
        if not entry.persistent and entry.failures >= self.max_failures:
            self._forget(address)
        else:
            entry.next_dial_at = self._clock() + self.backoff_delay(entry.failures)
        self.dirty = True

    def hold_off(self, address: str, delay: float) -> None:
        """Dial `address` again no sooner than `delay` seconds from now (a full node
        that answered our GET_PEERS and closed: a slot will not free up at once)."""
        entry = self._entries.get(_key(address))
        if entry is not None:
            entry.next_dial_at = max(entry.next_dial_at, self._clock() + delay)

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

    def sample(self, count: int, exclude: Iterable[str] = (), *, proven: bool = False) -> list[str]:
        """Up to `count` random addresses that worked before (or are configured); with
        `proven`, also those whose node connected to us from there (a seed's book)."""
        excluded = {_key(address) for address in exclude}
        good = [
            entry.address
            for entry in self._entries.values()
            if (entry.persistent or entry.last_seen > 0 or (proven and entry.node_key))
            and entry.address not in excluded
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
        """Canonical encoding: [version, secret, [[address, node_key, last_seen_ms,
        failures, source_group, tried]…], [[ban_key, expires_ms, reason]…]].

        Persistent addresses are stored as plain new entries: the config of the next run
        decides again which addresses are persistent. Buckets are not stored: the same
        secret puts every address back in the same bucket.
        """
        self.prune_bans()
        addresses = [
            [
                e.address,
                e.node_key or b"",
                int(e.last_seen * 1000),
                e.failures,
                e.source_group,
                e.tried,
            ]
            for e in sorted(self._entries.values(), key=lambda e: e.address)
        ]
        bans = [
            [key, int(ban.expires_at * 1000), ban.reason[:64]]
            for key, ban in sorted(self._bans.items())
        ]
        return pack([BOOK_FORMAT_VERSION, self._secret, addresses, bans])

    def load_bytes(self, data: bytes, *, learnable: Callable[[str], bool] = _any) -> None:
        """Merge a stored book into this one (entries become non-persistent); an address
        `learnable` refuses is left out (`netgroup.LearnRule.allows`)."""
        obj = as_list(unpack(data, max_bytes=MAX_BOOK_BYTES), "book", length=4)
        version = as_int(obj[0], "book.version")
        if version != BOOK_FORMAT_VERSION:
            raise DecodeError(Reason.UNKNOWN_VERSION, f"peer book format {version}")
        secret = as_bytes(obj[1], "book.secret", size=SECRET_SIZE)
        records = as_list(obj[2], "book.addresses", max_len=self.capacity + 1024)
        if not self._entries or all(e.persistent for e in self._entries.values()):
            self._secret = secret  # nothing is bucketed yet: adopt the stored layout
        dropped = sum(1 for item in records if not self._load_record(item, learnable))
        if dropped:
            log.info("event=peer_book_dropped count=%d reason=unroutable_address", dropped)
        for item in as_list(obj[3], "book.bans", max_len=self.max_bans):
            fields = as_list(item, "book.ban", length=3)
            key = as_str(fields[0], "book.ban_key", max_len=MAX_ADDRESS_LEN)
            expires_at = as_int(fields[1], "book.ban_expires", 0, U64) / 1000
            reason = as_str(fields[2], "book.ban_reason", max_len=64)
            if expires_at > self._clock() and len(self._bans) < self.max_bans:
                self._bans[key] = Ban(expires_at, reason)

    def _load_record(self, item: object, learnable: Callable[[str], bool]) -> bool:
        """Merge one stored address (`load_bytes`); False if `learnable` refused it."""
        fields = as_list(item, "book.address", length=6)
        address = as_str(fields[0], "book.address", max_len=MAX_ADDRESS_LEN)
        node_key = as_bytes(fields[1], "book.node_key", max_len=33) or None
        last_seen = as_int(fields[2], "book.last_seen", 0, U64) / 1000
        failures = as_int(fields[3], "book.failures", 0, 1000)
        source_group = as_str(fields[4], "book.source_group", max_len=MAX_ADDRESS_LEN + 8)
        tried = fields[5]
        if type(tried) is not bool:
            raise DecodeError(Reason.BAD_FIELD, "book.tried must be a boolean")
        try:  # a book stored before keys were canonical may hold other spellings
            address = canonical_address(address)
        except ValueError:
            return True
        if address in self._entries or address in self._self_addresses:
            known = self._entries.get(address)
            if known is not None and known.persistent:
                known.node_key = known.node_key or node_key
                known.last_seen = max(known.last_seen, last_seen)
            return True
        if not learnable(address):
            return False
        try:
            group = self.group_of(address)
        except ValueError:
            return True
        entry = AddressEntry(
            address,
            node_key=node_key,
            last_seen=last_seen,
            failures=failures,
            source_group=source_group or group,
        )
        if tried:
            self._entries[address] = entry
            self._promote(entry)
        else:
            self._place_new(entry, group)
        return True

    def load(self, *, learnable: Callable[[str], bool] = _any) -> None:
        """Load the stored book (`load_bytes`); a corrupt one is logged and ignored, never
        fatal."""
        data = self._store.load()
        if data is None:
            return
        try:
            self.load_bytes(data, learnable=learnable)
        except DecodeError as exc:
            log.warning("event=peer_book_unreadable reason=%s detail=%r", exc.reason, exc.message)
        self.dirty = False

    def save(self) -> None:
        """Write the book to the store."""
        self._store.save(self.to_bytes())
        self.dirty = False
