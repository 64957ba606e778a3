"""State snapshots for state sync: what a node takes, keeps and serves, byte by byte.

A snapshot of height H is the state after block H cut into chunks. Its *manifest* says
how: the cut depth d, the cut's 16**d entries (core/statetree.py: what sits at each
d-nibble prefix of the tree) and the first prefix of each chunk. A chunk holds every
(key, value) whose path starts with one of its prefixes. So a new node checks:

- the manifest against the state root of a header it trusts (the cut must fold to it),
  before it asks for any chunk;
- each chunk against the manifest, as it arrives (its keys must build exactly the cut's
  entries for its prefixes): a corrupt chunk is pinned on the peer that sent it.

Wire and disk forms (docs/storage.md "Snapshots"):

    manifest = [1, height, state_root, depth, cut, [chunk_start, ...]]
    chunk    = [key_0, value_0, key_1, value_1, ...]          (paths ascending)

Snapshots are taken from a LevelDB snapshot of the store right after block H commits,
on a worker thread, and stored in the same database (`ChainDB.write_snapshot`); the node
keeps the newest few.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final, Protocol

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import as_bytes, as_int, pack, unpack
from fluxchain.core.errors import DecodeError, Reason, StoreError
from fluxchain.core.statetree import (
    HASH_SIZE,
    MAX_CUT_DEPTH,
    PATH_NIBBLES,
    CutError,
    Split,
    cut_depth,
    cut_entry,
    decode_cut,
    encode_cut,
    fold_cut,
)

SNAPSHOT_FORMAT: Final = 2  # 2: splits
MiB: Final = 1024 * 1024
# A chunk closes once it holds this much: big enough that per-frame costs vanish, small
# enough that a lying peer wastes a second of our work at most and that chunks from
# several peers are in flight at once.
CHUNK_TARGET_BYTES: Final = 1 * MiB
# No chunk may exceed this (a p2p frame is 8 MiB): a prefix run that would is cut one
# nibble deeper instead.
MAX_CHUNK_BYTES: Final = 6 * MiB
# Framing per pair: two bin headers of at most 5 bytes each.
_PAIR_OVERHEAD: Final = 10
MAX_CHUNK_PAIRS: Final = 200_000
# Nodes of the cut split into their children because they hold more than a chunk may
# (keys ground into one prefix): each costs the grinder ~16**depth hashes per key, so
# an honest state has none and an attacker few; bounded so that a manifest stays a frame.
MAX_SPLITS: Final = 4096
MAX_CHUNKS: Final = 16**MAX_CUT_DEPTH + 15 * MAX_SPLITS  # a chunk holds at least one slot
MAX_MANIFEST_BYTES: Final = (
    MAX_CHUNKS * (1 + HASH_SIZE) + MAX_CHUNKS * 5 + MAX_SPLITS * (16 * (1 + HASH_SIZE) + 16) + 1024
)


@dataclass(frozen=True, slots=True)
class Manifest:
    """How the state after block `height` is cut into chunks (see the module docstring)."""

    height: int
    state_root: bytes
    depth: int
    entries: tuple[bytes, ...]  # the cut: 16**depth entries in prefix order
    chunk_starts: tuple[int, ...]  # chunk i holds slots [starts[i], starts[i + 1])
    splits: tuple[Split, ...] = ()  # nodes refined into their children, in (depth, prefix) order

    @property
    def chunks(self) -> int:
        return len(self.chunk_starts)

    @property
    def slot_count(self) -> int:
        """How many slots the cut has (core/statetree.py `cut_slots`)."""
        return int(16**self.depth) + 15 * len(self.splits)

    def chunk_range(self, index: int) -> tuple[int, int]:
        """The slots [first, end) of chunk `index` (0-based)."""
        starts = self.chunk_starts
        end = starts[index + 1] if index + 1 < len(starts) else self.slot_count
        return starts[index], end

    def encode(self) -> bytes:
        return pack(
            [
                SNAPSHOT_FORMAT,
                self.height,
                self.state_root,
                self.depth,
                encode_cut(self.entries),
                list(self.chunk_starts),
                [[at, prefix, encode_cut(children)] for at, prefix, children in self.splits],
            ]
        )

    def hash(self) -> bytes:
        return sha256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """A manifest from a peer; DecodeError(MALFORMED) for anything but the one
        canonical encoding of a well-formed manifest."""
        fields = unpack(data, max_bytes=MAX_MANIFEST_BYTES, max_array=MAX_CHUNKS)
        if type(fields) is not list or len(fields) != 7:
            raise DecodeError(Reason.MALFORMED, "a manifest is an array of 7 fields")
        if as_int(fields[0], "manifest.format", 0, 255) != SNAPSHOT_FORMAT:
            raise DecodeError(Reason.UNKNOWN_VERSION, f"manifest format {fields[0]}")
        height = as_int(fields[1], "manifest.height", 1, 2**63)
        root = as_bytes(fields[2], "manifest.state_root", size=HASH_SIZE)
        depth = as_int(fields[3], "manifest.depth", 1, MAX_CUT_DEPTH)
        cut = as_bytes(fields[4], "manifest.cut", max_len=MAX_MANIFEST_BYTES)
        try:
            entries = decode_cut(cut, depth)
        except CutError as exc:
            raise DecodeError(Reason.MALFORMED, exc.message) from None
        splits = _decode_splits(fields[6], depth)
        slots = 16**depth + 15 * len(splits)
        if type(fields[5]) is not list or not fields[5]:
            raise DecodeError(Reason.MALFORMED, "manifest.chunk_starts: a non-empty list")
        starts = tuple(as_int(s, "manifest.chunk_starts", 0, slots - 1) for s in fields[5])
        if starts[0] != 0 or any(a >= b for a, b in pairwise(starts)):
            raise DecodeError(Reason.MALFORMED, "manifest.chunk_starts: not 0, then ascending")
        return cls(height, root, depth, entries, starts, splits)


def _decode_splits(field: object, depth: int) -> tuple[Split, ...]:
    """The splits of a manifest, in ascending (depth, prefix) order (one encoding only);
    whether they fit the cut is `cut_slots`'s to judge."""
    if type(field) is not list or len(field) > MAX_SPLITS:
        raise DecodeError(Reason.MALFORMED, f"manifest.splits: a list of at most {MAX_SPLITS}")
    splits: list[Split] = []
    for item in field:
        if type(item) is not list or len(item) != 3:
            raise DecodeError(Reason.MALFORMED, "manifest.splits: [depth, prefix, children]")
        at = as_int(item[0], "manifest.split.depth", depth, PATH_NIBBLES - 1)
        prefix = as_int(item[1], "manifest.split.prefix", 0, 16**at - 1)
        data = as_bytes(item[2], "manifest.split.children", max_len=16 * (1 + HASH_SIZE))
        try:
            children = decode_cut(data, 1)
        except CutError as exc:
            raise DecodeError(Reason.MALFORMED, exc.message) from None
        splits.append((at, prefix, children))
    if any((a[0], a[1]) >= (b[0], b[1]) for a, b in pairwise(splits)):
        raise DecodeError(Reason.MALFORMED, "manifest.splits: not in ascending order")
    return tuple(splits)


def encode_chunk(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A chunk's bytes: its keys and values alternating, in path order."""
    return pack([item for pair in pairs for item in pair])


def decode_chunk(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of a chunk from a peer; DecodeError if it is malformed.
    Whether they belong where the manifest says is `CutAssembler.add`'s to judge."""
    items = unpack(data, max_bytes=MAX_CHUNK_BYTES, max_array=2 * MAX_CHUNK_PAIRS)
    if type(items) is not list or len(items) % 2 or not all(type(i) is bytes for i in items):
        raise DecodeError(Reason.MALFORMED, "a chunk is an array of key, value byte strings")
    return list(zip(items[::2], items[1::2], strict=True))


class StateView(Protocol):
    """A consistent read-only view of a committed state (a LevelDB snapshot)."""

    def tree_size(self) -> int:
        """The number of keys in the state."""

    def keys_by_path(self) -> Iterator[tuple[bytes, bytes]]:
        """(path digest, key) of every key, in path order."""

    def value(self, key: bytes) -> bytes | None:
        """The state record under `key`."""


def build_snapshot(
    view: StateView, height: int, state_root: bytes, target: int = CHUNK_TARGET_BYTES
) -> tuple[Manifest, list[bytes]]:
    """The manifest and chunks of the state `view` holds (the state after `height`).

    A node of the cut that holds more than a chunk may (keys ground into one prefix) is
    split into its 16 children, again if need be, so that it spans several chunks, each
    checked on its own. Raises StoreError(store_mismatch) if the view's records do not
    fold to `state_root` (a damaged store must not be served), or if one record alone is
    larger than a chunk."""
    depth = cut_depth(view.tree_size())
    manifest, chunks = _build_at(view, height, state_root, depth, target)
    if fold_cut(manifest.entries) != state_root:
        raise StoreError(
            Reason.STORE_MISMATCH, f"the stored state at {height} does not fold to its root"
        )
    return manifest, chunks


def _fits(group: Sequence[tuple[bytes, bytes]]) -> bool:
    size = sum(len(k) + len(v) + _PAIR_OVERHEAD for k, v in group)
    return size <= MAX_CHUNK_BYTES and len(group) <= MAX_CHUNK_PAIRS


def _slots_of(
    group: list[tuple[bytes, bytes]], at: int, prefix: int, splits: list[Split]
) -> Iterator[tuple[list[tuple[bytes, bytes]], int]]:
    """The slots (their pairs and depth) the keys of node (at, prefix) make, in path
    order: the node itself if it fits one chunk, else its children's, recorded as a
    split."""
    if _fits(group):
        yield group, at
        return
    if len(group) < 2 or at + 1 >= PATH_NIBBLES or len(splits) == MAX_SPLITS:
        raise StoreError(Reason.STORE_MISMATCH, "a state record too large for any chunk")
    shift = 4 * (PATH_NIBBLES - at - 1)
    below: list[list[tuple[bytes, bytes]]] = [[] for _ in range(16)]
    for key, value in group:
        below[(int.from_bytes(sha256(key), "big") >> shift) & 15].append((key, value))
    splits.append((at, prefix, tuple(cut_entry(sub, at + 1) for sub in below)))
    for i, sub in enumerate(below):
        yield from _slots_of(sub, at + 1, 16 * prefix + i, splits)


def _build_at(
    view: StateView, height: int, state_root: bytes, depth: int, target: int
) -> tuple[Manifest, list[bytes]]:
    shift = 4 * (2 * HASH_SIZE - depth)
    entries = [b""] * 16**depth
    splits: list[Split] = []
    starts: list[int] = []
    chunks: list[bytes] = []
    current: list[tuple[bytes, bytes]] = []
    current_bytes = 0
    slot = 0  # the index of the next slot
    group: list[tuple[bytes, bytes]] = []
    group_prefix = -1

    def add_slot(pairs: list[tuple[bytes, bytes]]) -> None:
        nonlocal current, current_bytes, slot
        size = sum(len(k) + len(v) + _PAIR_OVERHEAD for k, v in pairs)
        if current and (
            current_bytes + size > target or len(current) + len(pairs) > MAX_CHUNK_PAIRS
        ):
            chunks.append(encode_chunk(current))
            current, current_bytes = [], 0
            starts.append(slot)
        current.extend(pairs)
        current_bytes += size
        slot += 1

    def close_group(until: int) -> None:
        """Add the slots of the group, and the empty slots of the prefixes before `until`."""
        nonlocal slot
        if group:
            entries[group_prefix] = cut_entry(group, depth)
            for pairs, _ in _slots_of(group, depth, group_prefix, splits):
                add_slot(pairs)
        # Empty prefixes are slots too, without pairs: they join the current chunk.
        slot += until - (group_prefix + 1)

    starts.append(0)
    for digest, key in view.keys_by_path():
        prefix = int.from_bytes(digest, "big") >> shift
        if prefix != group_prefix:
            close_group(prefix)
            group, group_prefix = [], prefix
        value = view.value(key)
        if value is None:
            raise StoreError(Reason.STORE_MISMATCH, f"state key {key.hex()[:16]} has no record")
        group.append((key, value))
    close_group(16**depth)
    chunks.append(encode_chunk(current))
    splits.sort(key=lambda split: (split[0], split[1]))
    return (
        Manifest(height, state_root, depth, tuple(entries), tuple(starts), tuple(splits)),
        chunks,
    )
