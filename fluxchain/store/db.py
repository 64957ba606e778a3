"""The node's LevelDB: one database per node home, one atomic write batch per block.

Key layout (one-byte prefix + key):

    B height(8)   block bytes           C height(8)  commit certifying that block
    H hash(32)    height(8)             T txid(32)   [height, index in block]
    E height(8)   events of the block   S state key  state record (see core/records.py)
    N nibbles     state tree branch     P digest(32) state key whose tree path it is
    M name        chain meta: head height, genesis hash, validators that signed the head,
                  the base height (a state-synced node holds no block below it)
    Z height(8) index(4)   snapshot part: 0 the manifest, 1.. its chunks (store/snapshots.py)
    Y height(8) "m" manifest hash(32)            a state sync's manifest in use, and
    Y height(8) "c" manifest hash(32) index(4)   each chunk of it verified: an interrupted
                                                 state sync resumes from them

The state tree (core/statetree.py) is stored with the state: `N` + the branch's nibble path
in hex ("N" alone: the root record) and `P` + sha256(key) -> key, so that a reopened tree
reads a branch only when a walk enters it and finds each leaf's value under `S`.

A crash at any instant leaves either all of a block's writes or none of them: LevelDB
applies a write batch atomically, and `sync=True` puts it in the fsynced log first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import plyvel

from fluxchain.core.encoding import pack, unpack
from fluxchain.core.statetree import StateTree

BLOCK: Final = b"B"
COMMIT: Final = b"C"
HASH_INDEX: Final = b"H"
TX_INDEX: Final = b"T"
EVENTS: Final = b"E"
STATE: Final = b"S"
TREE_BRANCH: Final = b"N"
TREE_PATH: Final = b"P"
META: Final = b"M"
SNAPSHOT: Final = b"Z"
SNAPSHOT_END: Final = b"["  # the first key past every snapshot key
SYNC_PROGRESS: Final = b"Y"

META_HEIGHT: Final = META + b"height"
META_GENESIS: Final = META + b"genesis"
META_LAST_VALIDATORS: Final = META + b"last-validators"
META_BASE: Final = META + b"base"  # absent: the node holds every block from 1
# Everything a chain's data is kept under; state sync replaces all of it at once.
_CHAIN_PREFIXES: Final = (
    BLOCK,
    COMMIT,
    HASH_INDEX,
    TX_INDEX,
    EVENTS,
    STATE,
    TREE_BRANCH,
    TREE_PATH,
)


TreeRecords = Sequence[tuple[str, bytes, bytes | None]]  # StateTree.records()


def height_key(prefix: bytes, height: int) -> bytes:
    return prefix + height.to_bytes(8, "big")


class ChainDB:
    """Thin typed layer over plyvel; knows the key layout, not the rules."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        # A bloom filter per table file: a state read of an absent key (a transfer to a
        # new address; the State reads through to here) rarely touches the disk.
        # No compression: what a block writes is hashes, keys and signatures (tree
        # branches, the tx index, the txs), which Snappy shrank by 17 % at a cost of
        # ~3 µs of CPU a transfer in LevelDB's flushes and compactions, a tenth of
        # block import beside verification (measured, issue 24). Tables written
        # compressed before stay readable: each block says how it is stored.
        self._db = plyvel.DB(
            str(path), create_if_missing=True, bloom_filter_bits=10, compression=None
        )

    def close(self) -> None:
        self._db.close()

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def get_obj(self, key: bytes) -> Any:
        raw = self.get(key)
        return None if raw is None else unpack(raw)

    def get_meta(self, name: bytes) -> bytes | None:
        """A small record of the node's own (peer book, …), outside the chain's data."""
        return self.get(META + b"node/" + name)

    def put_meta(self, name: bytes, value: bytes) -> None:
        self._db.put(META + b"node/" + name, value, sync=True)

    def meta_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The node's own records whose name starts with `prefix` (names whole), in order."""
        start = len(META + b"node/")
        for key, value in self._db.iterator(prefix=META + b"node/" + prefix):
            yield key[start:], value

    def delete_meta(self, name: bytes) -> None:
        self._db.delete(META + b"node/" + name)

    def write_tree(self, tree_records: TreeRecords) -> None:
        """Store a whole state tree at once (a home written before the tree was stored)."""
        with self._db.write_batch(transaction=True, sync=True) as batch:
            _write_tree(batch, tree_records)

    def head_height(self) -> int | None:
        raw = self.get(META_HEIGHT)
        return None if raw is None else int.from_bytes(raw, "big")

    def state_items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """The state records whose table key starts with `prefix` (S stripped), in order."""
        for key, value in self._db.iterator(prefix=STATE + prefix):
            yield key[1:], value

    def write_genesis(
        self,
        genesis_hash: bytes,
        state_changes: list[tuple[bytes, bytes | None]],
        tree_records: TreeRecords,
    ) -> None:
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for key, value in state_changes:
                if value is not None:
                    batch.put(STATE + key, value)
            _write_tree(batch, tree_records)
            batch.put(META_GENESIS, genesis_hash)
            batch.put(META_HEIGHT, (0).to_bytes(8, "big"))

    def write_block(
        self,
        *,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        commit_bytes: bytes,
        tx_ids: Sequence[bytes],
        events: list[Any],
        state_changes: tuple[tuple[bytes, bytes | None], ...],
        tree_records: TreeRecords,
        last_validators: bytes,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        """Everything one block changes, in one atomic, synced batch: the state tree's
        records with the state they commit to.

        `meanwhile`, if given, runs in this thread while a helper thread writes the batch
        (LevelDB releases the GIL for the write and its fsync): work that does not touch
        this database and raises nothing. The call returns, or raises the write's error,
        once both are done, so the block is on disk when it returns, as without."""
        batch = self._db.write_batch(sync=True)
        batch.put(height_key(BLOCK, height), block_bytes)
        batch.put(height_key(COMMIT, height), commit_bytes)
        batch.put(HASH_INDEX + block_hash, height.to_bytes(8, "big"))
        # [height, index] is a fixarray of two ints: the height's encoding is shared
        head = b"\x92" + pack(height)
        for index, tx_id in enumerate(tx_ids):
            batch.put(TX_INDEX + tx_id, head + pack(index))
        batch.put(height_key(EVENTS, height), pack(events))
        for key, value in state_changes:
            if value is None:
                batch.delete(STATE + key)
            else:
                batch.put(STATE + key, value)
        _write_tree(batch, tree_records)
        batch.put(META_LAST_VALIDATORS, last_validators)
        batch.put(META_HEIGHT, height.to_bytes(8, "big"))
        if meanwhile is None:
            batch.write()
        else:
            _write_beside(batch.write, meanwhile)

    # -- state sync (store/snapshots.py, node/statesync.py) --------------------------------

    def base_height(self) -> int:
        """The lowest height whose block this node holds (1 unless it was state-synced)."""
        raw = self.get(META_BASE)
        return 1 if raw is None else int.from_bytes(raw, "big")

    def write_synced_state(
        self,
        *,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        commit_bytes: bytes,
        state_items: Iterator[tuple[bytes, bytes]],
        tree_records: TreeRecords,
        last_validators: bytes,
    ) -> None:
        """Replace this home's chain data by a verified snapshot's state and its block, in
        one atomic, synced batch: a crash leaves the home as it was (genesis) or synced,
        never a mix. The genesis hash and the node's own records stay."""
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for prefix in _CHAIN_PREFIXES:
                for key in self._db.iterator(prefix=prefix, include_value=False):
                    batch.delete(key)
            for key, value in state_items:
                batch.put(STATE + key, value)
            _write_tree(batch, tree_records)
            batch.put(height_key(BLOCK, height), block_bytes)
            batch.put(height_key(COMMIT, height), commit_bytes)
            batch.put(HASH_INDEX + block_hash, height.to_bytes(8, "big"))
            batch.put(META_LAST_VALIDATORS, last_validators)
            batch.put(META_BASE, height.to_bytes(8, "big"))
            batch.put(META_HEIGHT, height.to_bytes(8, "big"))
            for key in self._db.iterator(prefix=SYNC_PROGRESS, include_value=False):
                batch.delete(key)  # the progress it was assembled from

    def save_sync_manifest(self, height: int, manifest_hash: bytes, data: bytes) -> None:
        """Keep the manifest a state sync of `height` fetches chunks of (to resume it)."""
        self._db.put(height_key(SYNC_PROGRESS, height) + b"m" + manifest_hash, data, sync=True)

    def save_sync_chunk(self, height: int, manifest_hash: bytes, index: int, data: bytes) -> None:
        """Keep chunk `index` of that manifest, verified (to resume without fetching it)."""
        key = height_key(SYNC_PROGRESS, height) + b"c" + manifest_hash + index.to_bytes(4, "big")
        self._db.put(key, data, sync=True)

    def clear_sync_progress(self) -> None:
        """Drop everything kept for resuming a state sync, of any height: a sync keeps
        one cut at a time (what Sybils offering other cuts can make it keep is bounded)."""
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for key in self._db.iterator(prefix=SYNC_PROGRESS, include_value=False):
                batch.delete(key)

    def saved_sync_progress(self, height: int) -> list[tuple[bytes, list[tuple[int, bytes]]]]:
        """Each manifest kept for a state sync of `height`, with its chunks kept (index,
        bytes); re-checked by the caller, as anything read back from disk."""
        at = height_key(SYNC_PROGRESS, height)
        out = []
        for key, data in self._db.iterator(prefix=at + b"m"):
            digest = key[len(at) + 1 :]
            chunks = [
                (int.from_bytes(k[-4:], "big"), v)
                for k, v in self._db.iterator(prefix=at + b"c" + digest)
            ]
            out.append((data, chunks))
        return out

    def state_view(self) -> SnapshotView:
        """A consistent view of the committed state as of now, for taking a snapshot on
        another thread while blocks keep committing."""
        return SnapshotView(self._db.snapshot())

    def write_snapshot(self, height: int, parts: Sequence[bytes], keep: int) -> None:
        """Store a snapshot's parts (manifest first) and drop all but the `keep` newest."""
        older = [h for h in self.snapshot_heights() if h != height]
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for index, part in enumerate(parts):
                batch.put(_snapshot_key(height, index), part)
            for old in older[: max(0, len(older) + 1 - keep)]:
                for key in self._db.iterator(prefix=height_key(SNAPSHOT, old), include_value=False):
                    batch.delete(key)

    def snapshot_heights(self) -> list[int]:
        """Heights of the stored snapshots, oldest first.

        One record read per snapshot (each seek lands on the next height's manifest): a
        peer's GET_SNAPSHOTS must not make the node walk, and so read, every stored chunk."""
        heights: list[int] = []
        start = SNAPSHOT
        while True:
            found = self._db.iterator(start=start, stop=SNAPSHOT_END, include_value=False)
            key = next(iter(found), None)
            if key is None:
                return heights
            height = int.from_bytes(key[1:9], "big")
            heights.append(height)
            start = height_key(SNAPSHOT, height + 1)

    def snapshot_part(self, height: int, index: int) -> bytes | None:
        """Part `index` of the snapshot at `height` (0: its manifest)."""
        return self.get(_snapshot_key(height, index))


def _snapshot_key(height: int, index: int) -> bytes:
    return height_key(SNAPSHOT, height) + index.to_bytes(4, "big")


class SnapshotView:
    """The state as a LevelDB snapshot holds it (a `StateView` of store/snapshots.py)."""

    def __init__(self, snapshot: Any) -> None:
        self._snapshot = snapshot

    def tree_size(self) -> int:
        root = self._snapshot.get(TREE_BRANCH)
        return 0 if root is None else int.from_bytes(root[:8], "big")

    def keys_by_path(self) -> Iterator[tuple[bytes, bytes]]:
        for name, key in self._snapshot.iterator(prefix=TREE_PATH):
            yield name[1:], key

    def value(self, key: bytes) -> bytes | None:
        value: bytes | None = self._snapshot.get(STATE + key)
        return value

    def close(self) -> None:
        self._snapshot.close()


class StoredState:
    """The committed state and its tree as the store holds them: the State's `Backing`
    and the StateTree's `TreeSource` (core/state.py, core/statetree.py)."""

    def __init__(self, db: ChainDB) -> None:
        self._db = db
        self._tree: StateTree | None = None

    def check_with(self, tree: StateTree) -> None:
        """Read every state record through `tree` from now on (its root is the head's)."""
        self._tree = tree

    def get(self, key: bytes) -> bytes | None:
        """The committed record under `key`. Once `check_with` gave it the tree, it is the
        tree's leaf value: read with the branches on its path, each checked against the
        hash its parent holds: a damaged or lost record raises StoreError(store_mismatch)
        and is never used, and one that should not be there is never seen (the tree says
        the key is absent). The branches stay loaded: later reads of their keys cost no
        disk read."""
        if self._tree is not None:
            return self._tree.get(key)
        return self._db.get(STATE + key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._db.state_items(prefix)

    def branch(self, path: str) -> bytes | None:
        return self._db.get(TREE_BRANCH + path.encode())

    def leaf(self, digest: bytes) -> bytes | None:
        key = self._db.get(TREE_PATH + digest)
        return None if key is None else self._db.get(STATE + key)


def _write_beside(write: Callable[[], None], meanwhile: Callable[[], None]) -> None:
    """Run `write` on a helper thread and `meanwhile` on this one; return once both are
    done, raising what `write` raised (the caller undoes the block on a failed write)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            write()
        except BaseException as exc:  # handed to the caller's thread, raised there
            failed.append(exc)

    writer = threading.Thread(target=run, name="block-write", daemon=True)
    writer.start()
    try:
        meanwhile()
    finally:
        writer.join()
        if failed:
            raise failed[0]


def _write_tree(batch: Any, records: TreeRecords) -> None:
    for kind, name, value in records:
        key = (TREE_BRANCH if kind == "branch" else TREE_PATH) + name
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
