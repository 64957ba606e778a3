"""The chain state: typed records under byte keys, with a write set per block.

Every record lives under `table prefix (1 byte) + id`. The whole state is held in memory
(decoded) and mirrored on disk by the store; a block's writes collect in a pending layer
that `commit` folds into the committed layer and returns as encoded changes for the state
tree and the store's write batch, or that `discard` drops. `snapshot`/`revert` undo the
writes of one transaction while a proposer builds a block.

Records are frozen dataclasses with `to_fields()`; each table names the class that
decodes it (`fluxchain.core.schema`).

A node's State reads through to its store (`Backing`): the committed layer is then a cache
of the records decoded so far, filled on first read, updated by `commit` after the store
has written the block's batch, so it never differs from the disk. Nothing is read at
start-up, which is what makes a restart cheap (docs/storage.md). Without a backing (tests,
tools) the committed layer holds the whole state.

A module may keep a derived index over one table (placement's node index is the one): it
registers a `Watcher` with `watch`, which builds it from the table, and the State tells it
of every change to what `get` returns for that table (puts, deletes, reverts, discards, a
load), so the index always equals a fresh build from the records it sees. It belongs to
this State (owned by the chain), never to the process, and holds nothing the state does
not: a restarted node rebuilds the same index from the same records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Protocol

from fluxchain.core.encoding import MAX_ARRAY, MAX_STR, pack, unpack
from fluxchain.core.errors import BlockError, DecodeError, Reason, StoreError


class Record(Protocol):
    def to_fields(self) -> list[Any]: ...


class Watcher(Protocol):
    """A derived index over one table, kept equal to a build from that table's records."""

    def build(self, items: Iterable[tuple[bytes, Any]]) -> None:
        """Forget everything and index `items` (every record of the table, in key order)."""

    def changed(self, key: bytes, before: Any, after: Any) -> None:
        """The record `get(key)` returns went from `before` to `after` (None = absent)."""


class Backing(Protocol):
    """The committed records as the store holds them, encoded (a node's store checks
    each against the state tree before returning it: store/db.py `StoredState`)."""

    def get(self, key: bytes) -> bytes | None:
        """The encoded record under `key`, None if there is none."""

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, encoded record) of every key starting with `prefix`, in key order."""


Decoder = Callable[[Any], Any]

_DELETED: Final = object()
_ABSENT: Final = object()

# An encoding this short cannot hold an array or a string longer than `unpack` accepts
# (each item takes at least a byte), nor exceed its size bound: only longer records are
# decoded again before they are written (`check_loadable`).
LOADABLE_WITHOUT_CHECK: Final = min(MAX_ARRAY, MAX_STR)


class State:
    """Committed records plus the pending writes of the block being applied."""

    __slots__ = (
        "_backing",
        "_by_table",
        "_committed",
        "_decoders",
        "_journal",
        "_journaling",
        "_pending",
        "_pin_absent",
        "_watchers",
        "_watching",
    )

    def __init__(self, decoders: Mapping[bytes, Decoder], backing: Backing | None = None) -> None:
        self._decoders = decoders
        self._backing = backing
        # Without a backing: every committed record. With one: the records read or written
        # so far (None: deleted by a block since the start, or absent and pinned).
        self._committed: dict[bytes, Any] = {}
        self._by_table: dict[bytes, set[bytes]] = {prefix: set() for prefix in decoders}
        self._pending: dict[bytes, Any] = {}
        self._journal: list[tuple[bytes, Any]] = []
        self._journaling = True
        # While a block is imported, a key read absent is pinned as absent (below).
        self._pin_absent = False
        self._watchers: dict[int, Watcher] = {}  # by the table's one-byte prefix
        self._watching: list[Watcher | None] = [None] * 256  # the same, for the write path

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: bytes) -> Any:
        """The record under `key` as of the pending writes, None if there is none."""
        value = self._pending.get(key, _ABSENT)
        if value is _ABSENT:
            value = self._committed.get(key, _ABSENT)
            if value is _ABSENT:
                return None if self._backing is None else self._fetch(key)
            return value
        return None if value is _DELETED else value

    def committed(self, key: bytes) -> Any:
        """The record under `key` as of the last commit, ignoring pending writes."""
        value = self._committed.get(key, _ABSENT)
        if value is _ABSENT:
            return None if self._backing is None else self._fetch(key)
        return value

    def _fetch(self, key: bytes) -> Any:
        """Read a committed record from the backing store, decode it and keep it."""
        assert self._backing is not None
        raw = self._backing.get(key)
        if raw is None:
            # Not kept: reads of absent keys (API queries for any address) must not grow
            # memory; the store's bloom filter makes the next such read cheap. Except
            # while a block is imported: its reads are bounded by its txs, and the key it
            # reads absent is most often one it then writes (a transfer's new payee),
            # which `pin_committed` would otherwise walk the state tree for once more.
            if self._pin_absent:
                self._committed[key] = None
            return None
        record = self._decoders[key[:1]](unpack(raw))
        self._committed[key] = record
        return record

    def pin_committed(self, keys: Iterable[bytes]) -> None:
        """Hold the committed record of each of `keys` in the committed layer, an absent
        one included, so that reading it later never reaches the store.

        For the keys a block is about to change, before the state tree takes the change:
        the store's reads are checked against that tree (docs/storage.md), which then
        holds the block's values until it is committed or undone, and undoing it reads
        what these keys held (`execute.abort`). Bounded by the keys blocks write.
        """
        if self._backing is None:
            return  # the committed layer holds every record already
        committed = self._committed
        for key in keys:
            if key not in committed and self._fetch(key) is None:
                committed[key] = None

    def committed_view(self) -> State:
        """A State that reads the committed layer only, sharing it (nothing is copied):
        what checks of incoming txs read while a block's writes are pending. Writes made
        through the view stay in the view."""
        view = State.__new__(State)
        view._decoders, view._backing, view._committed, view._by_table = (
            self._decoders,
            self._backing,
            self._committed,
            self._by_table,
        )
        view._pending, view._journal, view._journaling = {}, [], False
        view._pin_absent = False
        # No watchers: the derived indexes follow the state's own writes, not a view's.
        view._watchers, view._watching = {}, [None] * 256
        return view

    def keys(self, prefix: bytes) -> list[bytes]:
        """Every key of one table (`prefix` is its one-byte tag), sorted."""
        if self._backing is not None:
            found = {k for k, _ in self._backing.items(prefix)}
        else:
            found = {k for k in self._by_table[prefix[:1]] if k.startswith(prefix)}
        for key, value in self._pending.items():
            if key.startswith(prefix):
                if value is _DELETED:
                    found.discard(key)
                else:
                    found.add(key)
        return sorted(found)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        """(key, record) of one table in key order."""
        for key in self.keys(prefix):
            record = self.get(key)
            if record is None:
                # Listed by the store, absent from the tree its reads are checked against.
                raise StoreError(
                    Reason.STORE_MISMATCH,
                    f"the store lists state key {key.hex()[:32]} that its state tree lacks",
                )
            yield key, record

    def __len__(self) -> int:
        """The number of committed records (with a backing, counted in the store)."""
        if self._backing is not None:
            return sum(1 for _ in self._backing.items(b""))
        return len(self._committed)

    # -- writing ---------------------------------------------------------------------------

    def put(self, key: bytes, record: Any) -> None:
        if self._journaling:
            self._journal.append((key, self._pending.get(key, _ABSENT)))
        watcher = self._watching[key[0]]
        if watcher is not None:
            watcher.changed(key, self.get(key), record)
        self._pending[key] = record

    def delete(self, key: bytes) -> None:
        if self._journaling:
            self._journal.append((key, self._pending.get(key, _ABSENT)))
        watcher = self._watching[key[0]]
        if watcher is not None:
            watcher.changed(key, self.get(key), None)
        self._pending[key] = _DELETED

    # -- derived indexes -------------------------------------------------------------------

    def watch(self, prefix: bytes, watcher: Watcher) -> None:
        """Keep `watcher` equal to a build from table `prefix` (built now, from `items`)."""
        self._watchers[prefix[0]] = watcher
        self._watching[prefix[0]] = watcher
        watcher.build(self.items(prefix[:1]))

    def attach(self, prefix: bytes, watcher: Watcher) -> None:
        """Keep `watcher`, equal to a build from table `prefix` already, without building
        it (a view's overlay of its state's index: no walk of the table)."""
        self._watchers[prefix[0]] = watcher
        self._watching[prefix[0]] = watcher

    def watcher(self, prefix: bytes) -> Watcher | None:
        """The watcher of table `prefix`, None if it has none."""
        return self._watchers.get(prefix[0])

    def _rebuild_watchers(self) -> None:
        for table, watcher in self._watchers.items():
            watcher.build(self.items(bytes((table,))))

    def set_journaling(self, on: bool) -> None:
        """Turn the undo journal off while importing a block: a failing tx there makes the
        whole block invalid and every pending write is discarded, so no single tx is undone.
        Meanwhile, keys read absent are pinned as absent in the committed layer (as
        `pin_committed` pins a block's changed keys), so that the block reads each of
        them from the store once."""
        self._journaling = on
        self._pin_absent = not on

    def snapshot(self) -> int:
        """A mark that `revert` can return to (only meaningful while journaling)."""
        return len(self._journal)

    def revert(self, mark: int) -> None:
        """Undo every write made since `snapshot()` returned `mark`."""
        journal, pending, watchers = self._journal, self._pending, self._watchers
        while len(journal) > mark:
            key, previous = journal.pop()
            watcher = watchers.get(key[0]) if watchers else None
            before = self.get(key) if watcher is not None else None
            if previous is _ABSENT:
                del pending[key]
            else:
                pending[key] = previous
            if watcher is not None:
                watcher.changed(key, before, self.get(key))

    def discard(self) -> None:
        """Drop every pending write."""
        if self._watchers:
            for key in sorted(self._pending):
                watcher = self._watchers.get(key[0])
                if watcher is not None:
                    before = self.get(key)
                    del self._pending[key]
                    watcher.changed(key, before, self.committed(key))
        self._clear_pending()

    def _clear_pending(self) -> None:
        self._pending.clear()
        self._journal.clear()

    def has_pending(self) -> bool:
        return bool(self._pending)

    def pending_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The pending writes, encoded, in key order (None marks a deletion). A record
        that could not be decoded again raises BlockError(record_too_large)."""
        changes: list[tuple[bytes, bytes | None]] = []
        for key in sorted(self._pending):
            value = self._pending[key]
            if value is _DELETED:
                if self.committed(key) is not None:
                    changes.append((key, None))
            else:
                encoded = pack(value.to_fields())
                if len(encoded) > LOADABLE_WITHOUT_CHECK:
                    self.check_loadable(key, encoded)
                changes.append((key, encoded))
        return changes

    def check_loadable(self, key: bytes, encoded: bytes) -> None:
        """Raise BlockError(record_too_large) unless `encoded` decodes as the record of
        `key`'s table the way a restarted node reads it: the last line of defence, at write
        time, behind the bound each rule keeps on the collection it grows. A block that
        would write such a record is invalid (its builder drops it, importers refuse it),
        so no node ever stores a state it cannot load."""
        try:
            self._decoders[key[:1]](unpack(encoded))
        except DecodeError as exc:
            raise BlockError(
                Reason.RECORD_TOO_LARGE,
                f"state record {key[:24]!r} ({len(encoded)} bytes) would not load again:"
                f" {exc.message}",
            ) from None

    def commit(self) -> None:
        """Fold the pending writes into the committed layer."""
        committed, by_table = self._committed, self._by_table
        if self._backing is not None:
            # the store holds the block already: the cache takes what it wrote
            for key, value in self._pending.items():
                committed[key] = None if value is _DELETED else value
            self._clear_pending()
            return
        for key, value in self._pending.items():
            if value is _DELETED:
                if committed.pop(key, None) is not None:
                    by_table[key[:1]].discard(key)
            else:
                if key not in committed:
                    by_table[key[:1]].add(key)
                committed[key] = value
        self._clear_pending()  # what `get` returns is unchanged: no watcher is told

    # -- loading ---------------------------------------------------------------------------

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Fill an empty state from encoded (key, value) pairs, as the store holds them."""
        assert self._backing is None, "a backed state reads its store on demand"
        for key, raw in items:
            record = self._decoders[key[:1]](unpack(raw))
            self._committed[key] = record
            self._by_table[key[:1]].add(key)
        self._rebuild_watchers()

    def encoded_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every committed record, encoded, in no particular order (for rebuilding the tree)."""
        if self._backing is not None:
            yield from self._backing.items(b"")
            return
        for key, record in self._committed.items():
            yield key, pack(record.to_fields())
