"""A state whose keys were ground into one cut prefix must still be snapshotted.

Found by the issue 23 state-sync review (review23s). `build_snapshot` cuts the state at
the depth where no d-nibble prefix holds more than a chunk may (6 MiB, 200,000 pairs)
and gives up with StoreError beyond depth 4. Key paths are sha256 of keys the users
choose (addresses, app names): about 65,536 hashes per key put a key under one
16-bit prefix, and once that prefix holds more than a chunk, no node can snapshot the
state again, and state sync is gone for the whole network.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

from fluxchain.core.crypto import sha256
from fluxchain.core.statetree import MAX_CUT_DEPTH, CutAssembler, StateTree, path_prefix
from fluxchain.store.snapshots import MAX_CHUNK_BYTES, build_snapshot, decode_chunk

TARGET_PREFIX = 0x2323  # the 16-bit (depth 4) path prefix the attacker grinds into
VALUE_BYTES = 1024 * 1024  # large records: few keys to grind for the test


def _ground_keys(wanted: int) -> list[bytes]:
    """Keys whose path starts with TARGET_PREFIX: ~65,536 hashes per key."""
    keys: list[bytes] = []
    for n in count():
        key = b"app/ground-" + str(n).encode()
        if path_prefix(key, MAX_CUT_DEPTH) == TARGET_PREFIX:
            keys.append(key)
            if len(keys) == wanted:
                return keys
    raise AssertionError("unreachable")


class _View:
    """A committed state as build_snapshot reads it."""

    def __init__(self, items: dict[bytes, bytes]) -> None:
        self._items = items

    def tree_size(self) -> int:
        return len(self._items)

    def keys_by_path(self) -> Iterator[tuple[bytes, bytes]]:
        yield from sorted((sha256(key), key) for key in self._items)

    def value(self, key: bytes) -> bytes | None:
        return self._items.get(key)


def test_keys_ground_into_one_prefix_do_not_stop_snapshots() -> None:
    """Attack: records whose keys share one depth-4 path prefix, more bytes than a chunk
    holds. The node must still produce a snapshot that a syncing node verifies."""
    wanted = MAX_CHUNK_BYTES // VALUE_BYTES + 1
    items = {key: bytes([i]) * VALUE_BYTES for i, key in enumerate(_ground_keys(wanted))}
    items.update({f"other-{i}".encode(): b"v" for i in range(100)})
    root = StateTree.from_items(items.items()).root
    manifest, chunks = build_snapshot(_View(items), 7, root)
    assembler = CutAssembler(root, manifest.depth, manifest.entries, manifest.splits)
    got: dict[bytes, bytes] = {}
    for index, data in enumerate(chunks):
        first, end = manifest.chunk_range(index)
        pairs = decode_chunk(data)
        assembler.add(first, end, pairs)
        got.update(pairs)
    assert got == items
