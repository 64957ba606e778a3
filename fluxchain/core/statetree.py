"""The state commitment: a 16-ary compressed sparse Merkle trie over the chain state.

The chain state is a map from byte keys to byte values; `StateTree.root` commits to it and
goes into every block header as ``state_root``. docs/state-root.md gives the construction
byte by byte and the reasons for its shape. The rules this module keeps:

* A key's *path* is sha256(key), read as 64 hex nibbles. A key's leaf sits at the shortest
  prefix of its path that no other key shares; every prefix that two or more keys share
  is a branch. So the shape, and with it the root, depends on the current set of
  (key, value) pairs alone, never on the order or the batches that produced it.
* leaf hash   = sha256(0x00 || path || value)
  branch hash = sha256(0x01 || child_0 || ... || child_15)        (513-byte preimage)
  An empty child is 32 zero bytes; the root of the empty tree is 32 zero bytes; the root
  of a one-key tree is that key's leaf hash.
* Block import is bounded by the number of sha256 calls and by cache misses, not by bytes
  hashed: hence a flat 16-child branch hash, raw values in leaves, and one sorted sweep.

Persistence (docs/storage.md): a tree made with `persisting=True` records which branches
each `update` touched and which keys it added or removed; `records` turns them into store
records (the branch at each nibble path, and each key under its path digest) that the node
writes in the block's own batch, and `records_written` forgets them once that batch is on
disk: a write that fails leaves them for the next one. `StateTree.open` reopens such a tree from a
`TreeSource` with nothing but its root loaded: a branch is read when a walk first enters
it, and checked against the hash its parent holds, so a node restarts without rebuilding
the tree from the whole state, and a damaged record is refused, never used.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from operator import itemgetter
from typing import Any, Protocol, TypeVar

from fluxchain.core.errors import DecodeError, Reason, StoreError

EMPTY_ROOT = bytes(32)  # also the hash of an empty child slot
LEAF_PREFIX = 0x00  # RFC 6962 domain separation: a leaf preimage can never be a branch's
BRANCH_PREFIX = 0x01
HASH_SIZE = 32
PATH_NIBBLES = 64  # sha256 paths; two keys sharing all 64 nibbles would be a collision
NIBBLES = "0123456789abcdef"  # a path is walked as its hexdigest() characters

# A branch is a list of 18: its 16 children, each a branch, a leaf or None (empty), then
# its own hash preimage, 0x01 || 16 child hashes, kept current as its children change,
# then its shape (below). A leaf is its own preimage, 0x00 || path || value. Plain lists
# and bytes make the trie a chain of pointers: on the import path a cache miss costs as
# much as a sha256 call, and following a pointer touches two objects where a dict lookup
# by position touches four.
_Branch = list[Any]
_Node = _Branch | bytes | None
_PREIMAGE = 16
# A branch's shape: what its stored record holds besides the child hashes (the record's
# 5-byte head with the kind bitmaps, and its leaf children's path digests), or None until
# `_encode` works it out. A block's new values for keys already in the tree (its
# commonest change) leave every shape as it was, and working one out was a loop over 16
# children for each branch a block wrote; so every change of which child is in a slot
# goes through `_set_child`, which forgets the shape there, and a branch an insert makes
# gets its shape as it is made (`_insert`).
_SHAPE = 17
_NIBBLE = {nibble: index for index, nibble in enumerate(NIBBLES)}
_LEAF_HEADER = bytes((LEAF_PREFIX,))
_BRANCH_HEADER = bytes((BRANCH_PREFIX,))
_EMPTY_BRANCH = _BRANCH_HEADER + bytes(16 * HASH_SIZE)
_BUCKETED_SORT_FROM = 1 << 15  # below this many keys one sort() is as fast
_path_of = itemgetter(0)  # of a (path, digest, value, key) item of a sweep
_Value = TypeVar("_Value", bytes, bytes | None)

# Stored records. A branch: kind 0x01, a 2-byte bitmap of its branch children and one of
# its leaf children, its 16 child hashes as in its preimage (32 zero bytes for an empty
# slot), then the path digests of its leaf children in slot order. The root record (path
# "") starts with the tree's size (8 bytes), then the top node: a branch record, or kind
# 0x00 and the path digest of a tree's only key.
RECORD_BRANCH = 0x01
RECORD_LEAF = 0x00


class TreeSource(Protocol):
    """Where a reopened tree reads what it has not loaded yet (the node's store)."""

    def branch(self, path: str) -> bytes | None:
        """The record of the branch at nibble path `path` ("" = the root record)."""

    def leaf(self, digest: bytes) -> bytes | None:
        """The value of the key whose path digest is `digest`."""


class _Stub:
    """A branch not read from the store yet; `path` is where it sits."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class StateTree:
    """The trie of the current state, held in memory and updated once per block."""

    __slots__ = ("_dirty", "_keys", "_root", "_size", "_source", "_top")

    def __init__(self, *, persisting: bool = False) -> None:
        self._top: _Node = None  # the root node
        self._root = EMPTY_ROOT  # its hash
        self._size = 0
        self._source: TreeSource | None = None
        # Since the last records_written: the branches updates went through or made, by path
        # (None: the branch there collapsed), and the path digests of keys added (-> key)
        # or removed (-> None). None: the tree does not persist.
        self._dirty: dict[str, _Branch | None] | None = {} if persisting else None
        self._keys: dict[bytes, bytes | None] = {}

    @classmethod
    def open(cls, source: TreeSource) -> StateTree:
        """The tree whose records `source` holds, with only its root read; an empty tree
        if there are none."""
        tree = cls(persisting=True)
        tree._source = source
        record = source.branch("")
        if record is None:
            return tree
        tree._size = int.from_bytes(record[:8], "big")
        top = record[8:]
        if top[0] == RECORD_LEAF:
            tree._top = tree._load_leaf(top[1 : 1 + HASH_SIZE])
        else:
            tree._top = tree._load_branch("", top)
        tree._root = _hash_of(tree._top)
        return tree

    def _mark_all(self) -> None:
        """Mark every branch of a tree held whole in memory for the next records."""
        dirty: dict[str, _Branch | None] = {"": None}
        stack: list[tuple[str, _Node]] = [("", self._top)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, list):
                dirty[path] = node
                stack.extend((path + NIBBLES[i], node[i]) for i in range(16))
        self._dirty = dirty

    def records(self) -> list[tuple[str, bytes, bytes | None]]:
        """What changed since the last `records_written`, as store records: ("branch",
        path, record or None to delete) and ("key", path digest, key or None to delete).

        Nothing is forgotten here: until the caller's write succeeds and it calls
        `records_written`, a failed write can be retried, or the update undone by another
        (an undone change is then written as what it was, which changes nothing).
        """
        dirty = self._dirty
        assert dirty is not None, "records of a tree that does not persist"
        records: list[tuple[str, bytes, bytes | None]] = []
        # Sorted by their names alone (str and bytes sort in C): the pairs would compare
        # as tuples, each comparison two.
        for path in sorted(dirty):
            branch = dirty[path]
            if path == "":  # the root record: the tree's size and its top node
                records.append(("branch", b"", self._root_record()))
            else:
                records.append(
                    ("branch", path.encode(), None if branch is None else _encode(branch))
                )
        keys = self._keys
        records.extend(("key", digest, keys[digest]) for digest in sorted(keys))
        return records

    def records_written(self) -> None:
        """The store holds every record `records` returned: start the next set afresh."""
        assert self._dirty is not None, "records of a tree that does not persist"
        self._dirty = {}
        self._keys = {}

    def _root_record(self) -> bytes | None:
        top = self._top
        if top is None:
            return None
        size = self._size.to_bytes(8, "big")
        if isinstance(top, list):
            return size + _encode(top)
        return size + bytes((RECORD_LEAF,)) + top[1 : 1 + HASH_SIZE]

    # -- reading a reopened tree ----------------------------------------------------------

    def _resolve(self, parent: _Branch, index: int) -> _Node:
        """The child at `index` of `parent`, read from the store if it was not yet."""
        child: _Node | _Stub = parent[index]
        if isinstance(child, _Stub):
            record = self._source.branch(child.path) if self._source is not None else None
            if record is None:
                raise _damaged(f"the branch at {child.path!r} is missing")
            loaded = self._load_branch(child.path, record)
            expected = bytes(parent[_PREIMAGE][1 + HASH_SIZE * index : 1 + HASH_SIZE * (index + 1)])
            if sha256(loaded[_PREIMAGE]).digest() != expected:
                raise _damaged(f"the branch at {child.path!r} does not match its parent")
            parent[index] = loaded
            return loaded
        return child

    def _load_branch(self, path: str, record: bytes) -> _Branch:
        """A branch from its record; its leaves are read at once, its branches stay stubs.

        The bitmaps are not covered by the branch's hash, so each must agree with the
        hashes: a slot is filled exactly when its hash is not zero. A slot marked with the
        wrong kind is caught when its child is read (its hash would not match)."""
        if len(record) < 5 + 16 * HASH_SIZE or record[0] != RECORD_BRANCH:
            raise _damaged(f"the branch record at {path!r} is malformed")
        branches = int.from_bytes(record[1:3], "big")
        leaves = int.from_bytes(record[3:5], "big")
        preimage = bytearray(_BRANCH_HEADER + record[5 : 5 + 16 * HASH_SIZE])
        leaf_slots = [i for i in range(16) if leaves >> i & 1]
        filled = branches | leaves
        if branches & leaves or len(record) != 5 + HASH_SIZE * (16 + len(leaf_slots)):
            raise _damaged(f"the branch record at {path!r} is malformed")
        # its shape is the record's, whose bitmaps the loop below holds to the hashes
        shape = (record[:5], record[5 + 16 * HASH_SIZE :])
        branch: _Branch = [None] * 16 + [preimage, shape]
        for i in range(16):
            empty = preimage[1 + HASH_SIZE * i : 1 + HASH_SIZE * (i + 1)] == EMPTY_ROOT
            if empty == bool(filled >> i & 1):
                raise _damaged(f"the branch record at {path!r} is malformed")
            if branches >> i & 1:
                branch[i] = _Stub(path + NIBBLES[i])
        offset = 5 + 16 * HASH_SIZE
        for i in leaf_slots:
            leaf = self._load_leaf(record[offset : offset + HASH_SIZE])
            if sha256(leaf).digest() != preimage[1 + HASH_SIZE * i : 1 + HASH_SIZE * (i + 1)]:
                raise _damaged(f"a leaf under {path!r} does not match its branch")
            branch[i] = leaf
            offset += HASH_SIZE
        return branch

    def _load_leaf(self, digest: bytes) -> bytes:
        value = self._source.leaf(digest) if self._source is not None else None
        if value is None:
            raise _damaged(f"the value of leaf {digest.hex()[:16]} is missing")
        return _LEAF_HEADER + digest + value

    @classmethod
    def from_items(
        cls, items: Iterable[tuple[bytes, bytes]], *, persisting: bool = False
    ) -> StateTree:
        """Build the tree of a whole state at once; a repeated key keeps its last value.
        Sorted by path, every subtree is one contiguous run of keys. `persisting`: the
        tree persists, and its first records hold all of it."""
        work = _sorted_by_path(dict(items).items())
        tree = cls()
        if work:
            tree._top, tree._root = _build(work)
            tree._size = len(work)
        if persisting:  # the whole tree is for the next records
            tree._keys = {digest: key for _, digest, _, key in work}
            tree._mark_all()
        return tree

    @property
    def root(self) -> bytes:
        return self._root

    def __len__(self) -> int:
        return self._size

    def get(self, key: bytes) -> bytes | None:
        """The value under `key`, None if it has none."""
        digest = sha256(key).digest()
        path, node, depth = digest.hex(), self._top, 0
        while isinstance(node, list):
            # Every state read walks here (a read of the store checks it against the
            # tree): a _Stub is recognised inline, as in the update sweep.
            index = _NIBBLE[path[depth]]
            child = node[index]
            node = self._resolve(node, index) if type(child) is _Stub else child
            depth += 1
        if node is None or not node.startswith(digest, 1):
            return None
        return node[1 + HASH_SIZE :]

    def update(self, changes: Iterable[tuple[bytes, bytes | None]]) -> bytes:
        """Apply one block's changes (value None = delete; deleting an absent key is a no-op;
        the last write to a key in the batch wins); return the new root.

        One sweep over the changes in path order. `stack` holds the branches above the
        current key's leaf; once the next path leaves a branch, nothing below it changes
        any more, so it is hashed into its parent then (post-order). Each touched branch
        is hashed once per batch, and memory is walked in the order from_items laid it out.
        """
        work = _sorted_by_path(dict(changes).items())
        stack: list[_Branch] = []  # stack[d] is the branch at depth d on `path`
        path = ""
        dirty = self._dirty
        if dirty is not None and work:
            dirty[""] = None  # the root record is written from the top node
        # The hottest loop of block import: each step is written out here rather than
        # called (a call costs as much as a step), and a _Stub is recognised inline and
        # read from the store only then.
        for next_path, digest, value, key in work:
            # The branches kept: those on the shared prefix of the two paths (found one
            # nibble at a time from the top: neighbours in path order part within a few).
            depth = len(stack)
            keep = 1
            while keep < depth and next_path[keep - 1] == path[keep - 1]:
                keep += 1
            # Hash each branch the next path leaves into its parent, deepest first.
            while depth > keep:
                depth -= 1
                offset = 1 + HASH_SIZE * _NIBBLE[path[depth - 1]]
                stack[depth - 1][_PREIMAGE][offset : offset + HASH_SIZE] = sha256(
                    stack.pop()[_PREIMAGE]
                ).digest()
            path = next_path
            # Down from the deepest branch kept, pushing every branch on the path: what is
            # left at its end is the key's leaf, another key's leaf, or None; `parent`
            # holds it at `index`.
            if depth:
                parent = stack[-1]
                index = _NIBBLE[path[depth - 1]]
                node = parent[index]
                if type(node) is _Stub:
                    node = self._resolve(parent, index)
            else:
                node = self._top
            while type(node) is list:
                if dirty is not None:
                    dirty[path[:depth]] = node
                stack.append(node)
                parent = node
                index = _NIBBLE[path[depth]]
                node = node[index]
                if type(node) is _Stub:
                    node = self._resolve(parent, index)
                depth += 1
            if value is not None and depth and node is not None and node.startswith(digest, 1):
                # The commonest change: a new value for a key already here (a leaf
                # preimage is 0x00 || path digest || value); the shape stays.
                leaf = _LEAF_HEADER + digest + value
                parent[index] = leaf
                offset = 1 + HASH_SIZE * index
                parent[_PREIMAGE][offset : offset + HASH_SIZE] = sha256(leaf).digest()
            else:
                self._write(stack, path, digest, value, key, node)
        _fold(stack, path, 1)
        self._root = sha256(stack[0][_PREIMAGE]).digest() if stack else _hash_of(self._top)
        return self._root

    # -- the sweep's changes of shape ------------------------------------------------------

    def _write(
        self,
        stack: list[_Branch],
        path: str,
        digest: bytes,
        value: bytes | None,
        key: bytes,
        node: bytes | None,
    ) -> None:
        """Give the key (`digest` its path) `value`, None deleting it, in the cases the
        sweep does not write inline (all but a new value for a key under a branch); `node`
        is what the sweep found at the end of its path."""
        # A leaf preimage is 0x00 || path digest || value: is it this key's leaf?
        if node is not None and node.startswith(digest, 1):
            if value is None:
                if self._dirty is not None:
                    self._keys[digest] = None
                self._delete(stack, path)
            else:
                assert not stack, "a known key's new value under a branch is written inline"
                self._top = _LEAF_HEADER + digest + value  # the tree's only key
        elif value is not None:
            if self._dirty is not None:
                self._keys[digest] = key
            self._insert(stack, path, _LEAF_HEADER + digest + value, node)

    def prove(self, key: bytes) -> StateProof:
        """The path to where `key`'s leaf is, or would be: proves its value or its absence."""
        digest = sha256(key).digest()
        path = digest.hex()
        levels: list[bytes] = []
        node = self._top
        while isinstance(node, list):
            index = _NIBBLE[path[len(levels)]]
            levels.append(_siblings(node[_PREIMAGE], index))
            node = self._resolve(node, index)
        if node is None or node.startswith(digest, 1):
            return StateProof(tuple(levels))
        return StateProof(tuple(levels), other_leaf=node)

    # -- reshaping: the sweep is at `path`, and `stack` holds every branch above it ------

    def _set_child(self, stack: list[_Branch], path: str, child: _Node, child_hash: bytes) -> None:
        """Put `child` at depth len(stack) on `path`, in the branch atop the stack."""
        if stack:
            branch = stack[-1]
            branch[_SHAPE] = None  # what is in the slot changes (a new value alone does not)
            _attach(branch, _NIBBLE[path[len(stack) - 1]], child, child_hash)
        else:
            self._top = child  # hashed when the sweep ends

    def _insert(self, stack: list[_Branch], path: str, leaf: bytes, occupant: bytes | None) -> None:
        if occupant is not None:
            # Another key owned this prefix alone; now both share it, so branches grow
            # down to the first nibble where the two paths part.
            other_path = occupant[1 : 1 + HASH_SIZE].hex()
            split = len(stack)
            while path[split] == other_path[split]:
                split += 1
            # The occupant moves down unchanged: its hash is the one its branch holds for
            # it now (a leaf's slot gets its hash whenever the leaf is put there; only a
            # branch's slot waits for the fold), or, at the top, hashed once.
            if stack:
                offset = 1 + HASH_SIZE * _NIBBLE[path[len(stack) - 1]]
                occupant_hash = stack[-1][_PREIMAGE][offset : offset + HASH_SIZE]
            else:
                occupant_hash = sha256(occupant).digest()
            # Branches grow down from here to the nibble where the two paths part. Each
            # new branch's shape is known as it is made (one branch child on the way down,
            # then the two leaves, in slot order); of the branches already here, only the
            # one above them (or the top) changes what is in a slot.
            above = len(stack)
            for depth in range(above, split + 1):
                index = _NIBBLE[path[depth]]
                if depth < split:
                    bits = 1 << index
                    shape = (bytes((RECORD_BRANCH, bits >> 8, bits & 0xFF, 0, 0)), b"")
                else:
                    other = _NIBBLE[other_path[split]]
                    bits = 1 << index | 1 << other
                    low, high = (leaf, occupant) if index < other else (occupant, leaf)
                    shape = (
                        bytes((RECORD_BRANCH, 0, 0, bits >> 8, bits & 0xFF)),
                        low[1 : 1 + HASH_SIZE] + high[1 : 1 + HASH_SIZE],
                    )
                branch: _Branch = [None] * 16 + [bytearray(_EMPTY_BRANCH), shape]
                if depth == above:
                    self._set_child(stack, path, branch, EMPTY_ROOT)  # hashed when folded
                else:
                    _attach(stack[-1], _NIBBLE[path[depth - 1]], branch, EMPTY_ROOT)
                if self._dirty is not None:
                    self._dirty[path[:depth]] = branch
                stack.append(branch)
            branch = stack[-1]
            _attach(branch, _NIBBLE[other_path[split]], occupant, occupant_hash)
            _attach(branch, _NIBBLE[path[split]], leaf, sha256(leaf).digest())
        else:
            self._set_child(stack, path, leaf, sha256(leaf).digest())
        self._size += 1

    def _delete(self, stack: list[_Branch], path: str) -> None:
        self._set_child(stack, path, None, EMPTY_ROOT)
        self._size -= 1
        # A branch left with one key below it is no longer a shared prefix: that key's leaf
        # rises into the branch's place, and on up while the next branch holds only it.
        # A branch whose one child is a branch still has two keys below it, and stays.
        while stack:
            children = [child for child in stack[-1][:_PREIMAGE] if child is not None]
            if len(children) != 1 or isinstance(children[0], list | _Stub):
                return
            stack.pop()
            if self._dirty is not None:
                self._dirty[path[: len(stack)]] = None  # collapsed: its record goes
            self._set_child(stack, path, children[0], sha256(children[0]).digest())


def _attach(branch: _Branch, index: int, child: _Node, child_hash: bytes | bytearray) -> None:
    branch[index] = child
    branch[_PREIMAGE][1 + HASH_SIZE * index : 1 + HASH_SIZE * (index + 1)] = child_hash


def _fold(stack: list[_Branch], path: str, keep: int) -> None:
    """Hash the branches deeper than `keep` - 1 into their parents, deepest first."""
    while len(stack) > keep:
        branch = stack.pop()
        offset = 1 + HASH_SIZE * _NIBBLE[path[len(stack) - 1]]
        stack[-1][_PREIMAGE][offset : offset + HASH_SIZE] = sha256(branch[_PREIMAGE]).digest()


def _build(work: list[tuple[str, bytes, bytes, bytes]]) -> tuple[_Node, bytes]:
    """The trie of `work` (sorted by path, not empty) and its hash, in one sweep.

    In path order a key's leaf sits one nibble below the longest prefix it shares with
    either neighbour; the branches above it open on the way down and are hashed into their
    parents as soon as the next key leaves them, as in `StateTree.update`.
    """
    stack: list[_Branch] = []
    shared_before = -1
    for index, (path, digest, value, _) in enumerate(work):
        shared_after = -1
        if index + 1 < len(work):
            following = work[index + 1][0]
            shared_after = 0
            while path[shared_after] == following[shared_after]:
                shared_after += 1
        depth = max(shared_before, shared_after) + 1
        leaf = _LEAF_HEADER + digest + value
        if depth == 0:  # the only key
            return leaf, sha256(leaf).digest()
        while len(stack) < depth:
            branch: _Branch = [None] * 16 + [bytearray(_EMPTY_BRANCH), None]
            if stack:
                stack[-1][_NIBBLE[path[len(stack) - 1]]] = branch
            stack.append(branch)
        _attach(stack[-1], _NIBBLE[path[depth - 1]], leaf, sha256(leaf).digest())
        _fold(stack, path, max(shared_after + 1, 1))
        shared_before = shared_after
    return stack[0], sha256(stack[0][_PREIMAGE]).digest()


def _sorted_by_path(
    pairs: Iterable[tuple[bytes, _Value]],
) -> list[tuple[str, bytes, _Value, bytes]]:
    """(path, digest, value, key) for each (key, value), in path order.

    Large inputs are first dealt into 4096 buckets by their first three nibbles, so that
    each comparison sort runs on a run small enough to stay in cache: sorting a million
    scattered objects in one go is bound by cache misses, not by comparisons.
    """
    work: list[tuple[str, bytes, _Value, bytes]] = [
        (digest.hex(), digest, value, key)
        for key, value in pairs
        for digest in (sha256(key).digest(),)
    ]
    # By the path alone (paths are distinct: the keys are): a tuple comparison would
    # compare the paths twice, once for equality and once for order.
    if len(work) < _BUCKETED_SORT_FROM:
        work.sort(key=_path_of)
        return work
    buckets: list[list[tuple[str, bytes, _Value, bytes]]] = [[] for _ in range(16**3)]
    for item in work:
        buckets[int(item[0][:3], 16)].append(item)
    for bucket in buckets:
        bucket.sort(key=_path_of)
    return [item for bucket in buckets for item in bucket]


def _encode(branch: _Branch) -> bytes:
    """The stored record of a loaded branch (see RECORD_BRANCH)."""
    shape: tuple[bytes, bytes] | None = branch[_SHAPE]
    if shape is None:
        branch[_SHAPE] = shape = _shape_of(branch)
    preimage: bytearray = branch[_PREIMAGE]
    return shape[0] + preimage[1:] + shape[1]


def _shape_of(branch: _Branch) -> tuple[bytes, bytes]:
    """A branch's record head (kind and bitmaps) and its leaf children's path digests."""
    branches = leaves = 0
    digests = []
    for i in range(16):
        child = branch[i]
        if child is None:
            continue
        if type(child) is bytes:
            leaves |= 1 << i
            digests.append(child[1 : 1 + HASH_SIZE])
        else:
            branches |= 1 << i
    head = bytes((RECORD_BRANCH, branches >> 8, branches & 0xFF, leaves >> 8, leaves & 0xFF))
    return head, b"".join(digests)


def _damaged(what: str) -> StoreError:
    return StoreError(Reason.STORE_MISMATCH, f"stored state tree is damaged: {what}")


def _hash_of(node: _Node) -> bytes:
    if node is None:
        return EMPTY_ROOT
    return sha256(node[_PREIMAGE] if isinstance(node, list) else node).digest()


@dataclass(frozen=True, slots=True)
class StateProof:
    """The branches from the root down to where a key's leaf is, or would be.

    levels[d] holds the siblings of the path at depth d: a 2-byte big-endian bitmap (bit i
    set = child i is not empty; the path's own child never has its bit set) followed by
    the hashes of those children in nibble order. The walk ends at the key's own leaf (the
    verifier hashes it from key and value), at an empty slot, or at the leaf of another
    key that owns the prefix, given in `other_leaf` as that leaf's whole preimage.
    """

    levels: tuple[bytes, ...]
    other_leaf: bytes = b""

    # Written by hand, not declared with `@record`: the wire form is one flat array of 1 to 65
    # byte strings (`other_leaf`, then the levels), which no fixed list of fields describes,
    # and the encoding is pinned by the golden vectors and the light clients that check it.
    def to_fields(self) -> list[int | bytes]:
        return [self.other_leaf, *self.levels]

    @classmethod
    def from_fields(cls, fields: Sequence[object]) -> StateProof:
        blobs = [field for field in fields if isinstance(field, bytes)]
        if len(blobs) != len(fields) or not 1 <= len(blobs) <= PATH_NIBBLES + 1:
            raise DecodeError(Reason.MALFORMED, "a state proof is 1 to 65 byte strings")
        proof = cls(tuple(blobs[1:]), blobs[0])
        if not _is_well_formed(proof):
            raise DecodeError(Reason.MALFORMED, "state proof level or leaf is malformed")
        return proof


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    """True iff `proof` shows key -> value (or key absent when value is None) under root."""
    if not _is_well_formed(proof):
        return False
    digest = sha256(key).digest()
    path = digest.hex()
    depth = len(proof.levels)
    if value is not None:
        if proof.other_leaf:
            return False
        node_hash = sha256(_LEAF_HEADER + digest + value).digest()
    elif not proof.other_leaf:
        node_hash = EMPTY_ROOT
    else:
        # Another key's leaf where ours would be proves absence only if it owns our prefix.
        other_path = proof.other_leaf[1 : 1 + HASH_SIZE].hex()
        if other_path == path or other_path[:depth] != path[:depth]:
            return False
        node_hash = sha256(proof.other_leaf).digest()
    for level_depth in range(depth - 1, -1, -1):
        level = proof.levels[level_depth]
        own_slot = NIBBLES.index(path[level_depth])
        bitmap = int.from_bytes(level[:2], "big")
        if bitmap >> own_slot & 1:
            return False
        children: list[bytes] = []
        start = 2
        for slot in range(16):
            if slot == own_slot:
                children.append(node_hash)
            elif bitmap >> slot & 1:
                children.append(level[start : start + HASH_SIZE])
                start += HASH_SIZE
            else:
                children.append(EMPTY_ROOT)
        node_hash = sha256(_BRANCH_HEADER + b"".join(children)).digest()
    return node_hash == root


def _siblings(preimage: bytearray, own_index: int) -> bytes:
    bitmap = 0
    hashes: list[bytes] = []
    for index in range(16):
        child_hash = bytes(preimage[1 + HASH_SIZE * index : 1 + HASH_SIZE * (index + 1)])
        if index != own_index and child_hash != EMPTY_ROOT:
            bitmap |= 1 << index
            hashes.append(child_hash)
    return bitmap.to_bytes(2, "big") + b"".join(hashes)


def _is_well_formed(proof: StateProof) -> bool:
    """One encoding per proof: exact lengths, no empty child sent as a hash, a real leaf."""
    if len(proof.levels) > PATH_NIBBLES:
        return False
    if proof.other_leaf and (
        len(proof.other_leaf) < 1 + HASH_SIZE or proof.other_leaf[0] != LEAF_PREFIX
    ):
        return False
    for level in proof.levels:
        if (
            len(level) < 2
            or len(level) != 2 + HASH_SIZE * int.from_bytes(level[:2], "big").bit_count()
        ):
            return False
        if any(level[i : i + HASH_SIZE] == EMPTY_ROOT for i in range(2, len(level), HASH_SIZE)):
            return False
    return True


# -- cuts: the tree seen from a fixed depth, for state sync ----------------------------------
#
# A snapshot (store/snapshots.py) sends the state in chunks that a new node checks one by
# one against a trusted header's state root. The bridge is the *cut* at depth d: for each
# of the 16**d nibble prefixes, what sits at that position of the trie built from the keys
# with that prefix alone: nothing, one key's leaf, or a branch. Those entries determine
# the root (`fold_cut`), and each chunk, a run of whole prefixes, determines its own
# entries (`cut_entry`), so a chunk is checked on arrival, alone, and a lie is pinned on
# the one peer that sent it. docs/state-root.md §6.

CUT_EMPTY = 0
CUT_LEAF = 1
CUT_BRANCH = 2
MAX_CUT_DEPTH = 4  # 65,536 prefixes: a manifest of at most ~2 MiB
_CUT_ENTRY_SIZE = 1 + HASH_SIZE


class CutError(ValueError):
    """A cut or a chunk does not match what it claims to be; `reason` names how."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[CutError], tuple[str, str]]:
        # Chunks are checked on other processes: the error must cross back whole.
        return CutError, (self.reason, self.message)


def cut_depth(size: int) -> int:
    """The cut depth for a state of `size` keys: about 256 keys per prefix, at least 1."""
    depth = 1
    while depth < MAX_CUT_DEPTH and 16**depth * 256 < size:
        depth += 1
    return depth


def path_prefix(key: bytes, depth: int) -> int:
    """The index of `key`'s path prefix of `depth` nibbles."""
    return int.from_bytes(sha256(key).digest()[:4], "big") >> (32 - 4 * depth)


def encode_cut(entries: Sequence[bytes]) -> bytes:
    """Entries on the wire: per prefix a kind byte, then the hash unless it is empty."""
    return b"".join(entry if entry else bytes((CUT_EMPTY,)) for entry in entries)


def decode_cut(data: bytes, depth: int) -> tuple[bytes, ...]:
    """The entries of `encode_cut`; CutError unless there are exactly 16**depth of them."""
    if not 1 <= depth <= MAX_CUT_DEPTH:
        raise CutError("bad_manifest", f"cut depth {depth} outside [1, {MAX_CUT_DEPTH}]")
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        kind = data[offset]
        if kind == CUT_EMPTY:
            entries.append(b"")
            offset += 1
        elif kind in (CUT_LEAF, CUT_BRANCH) and offset + _CUT_ENTRY_SIZE <= len(data):
            entries.append(data[offset : offset + _CUT_ENTRY_SIZE])
            offset += _CUT_ENTRY_SIZE
        else:
            raise CutError("bad_manifest", f"cut entry {len(entries)} is malformed")
    if len(entries) != 16**depth:
        raise CutError("bad_manifest", f"{len(entries)} cut entries for depth {depth}")
    return tuple(entries)


def fold_cut(entries: Sequence[bytes]) -> bytes:
    """The root of the tree whose nodes at the cut are `entries` (16**d, in prefix order).

    Folding follows the tree's shape rules: a position with no key is empty, one whose
    only key is a leaf holds that leaf (lifted), anything else is a branch."""
    level = list(entries)
    while len(level) > 1:
        level = [fold_children(level[start : start + 16]) for start in range(0, len(level), 16)]
    return level[0][1:] if level[0] else EMPTY_ROOT


def fold_children(children: Sequence[bytes]) -> bytes:
    """The cut entry of a node from the cut entries of its 16 children."""
    filled = [child for child in children if child]
    if not filled:
        return b""
    if len(filled) == 1 and filled[0][0] == CUT_LEAF:
        return filled[0]
    preimage = _BRANCH_HEADER + b"".join(c[1:] if c else EMPTY_ROOT for c in children)
    return bytes((CUT_BRANCH,)) + sha256(preimage).digest()


# A split: (depth, prefix, the 16 cut entries of its children) -- a node of the cut that
# holds more than one chunk may, replaced by its children (docs/storage.md "Snapshots").
Split = tuple[int, int, tuple[bytes, ...]]
# A slot: (depth, prefix, cut entry) -- a leaf of the cut once the splits are applied;
# the slots of a cut, in path order, are what chunks are made of.
Slot = tuple[int, int, bytes]


def cut_slots(depth: int, entries: Sequence[bytes], splits: Sequence[Split] = ()) -> list[Slot]:
    """The slots of the cut `entries` (16**depth) refined by `splits`, in path order.

    CutError("bad_manifest") unless each split names a branch node of the cut (once) and
    its children fold to that node's entry: then the slots determine the root as the
    entries do, and a chunk of slots is checked on its own."""
    by_node: dict[tuple[int, int], tuple[bytes, ...]] = {}
    for at, prefix, children in splits:
        if not depth <= at < PATH_NIBBLES or len(children) != 16 or (at, prefix) in by_node:
            raise CutError("bad_manifest", f"split ({at}, {prefix}) is malformed or repeated")
        by_node[(at, prefix)] = tuple(children)
    out: list[Slot] = []
    stack = [(depth, prefix, entry) for prefix, entry in reversed(list(enumerate(entries)))]
    used = 0
    while stack:
        at, prefix, entry = stack.pop()
        below = by_node.get((at, prefix))
        if below is None:
            out.append((at, prefix, entry))
            continue
        if not entry or entry[0] != CUT_BRANCH or fold_children(below) != entry:
            raise CutError("bad_manifest", f"split ({at}, {prefix}) does not fold to its node")
        used += 1
        stack.extend((at + 1, 16 * prefix + i, below[i]) for i in range(15, -1, -1))
    if used != len(by_node):
        raise CutError("bad_manifest", "a split of a node that is not in the cut")
    return out


def _subtree(work: list[tuple[str, bytes, bytes, bytes]], depth: int) -> tuple[_Node, bytes]:
    """The node at depth `depth` built from `work` (sorted by path, one shared prefix of
    that length), and its cut entry."""
    if not work:
        return None, b""
    if len(work) == 1:
        _, digest, value, _ = work[0]
        leaf = _LEAF_HEADER + digest + value
        return leaf, bytes((CUT_LEAF,)) + sha256(leaf).digest()
    top, _ = _build(work)
    branch: _Branch = top  # type: ignore[assignment]  # two keys or more: a branch
    for nibble in work[0][0][:depth]:  # down the shared prefix, branches all the way
        branch = branch[_NIBBLE[nibble]]
    return branch, bytes((CUT_BRANCH,)) + sha256(branch[_PREIMAGE]).digest()


def cut_entry(pairs: Iterable[tuple[bytes, bytes]], depth: int) -> bytes:
    """The cut entry of the keys of one prefix (b"" for none)."""
    return _subtree(_sorted_by_path(pairs), depth)[1]


@dataclass(frozen=True, slots=True)
class ChunkRecords:
    """What a checked chunk contributes to the stored tree (store/db.py's records)."""

    keys: int
    leaves: dict[int, bytes]  # slot index -> path digest, for each slot holding one key
    branches: list[tuple[str, bytes]]  # nibble path -> branch record, below the cut
    paths: list[tuple[bytes, bytes]]  # (path digest, key) of every key


def check_chunk(
    depth: int, entries: Sequence[bytes], first: int, pairs: Iterable[tuple[bytes, bytes]]
) -> ChunkRecords:
    """Check the keys of prefixes [first, first + len(entries)) against their cut
    `entries`; return the tree records they make (see `check_slots`)."""
    slots = [(depth, first + i, entry) for i, entry in enumerate(entries)]
    return check_slots(slots, first, pairs)


def check_slots(
    slots: Sequence[Slot], first: int, pairs: Iterable[tuple[bytes, bytes]]
) -> ChunkRecords:
    """Check the keys of a chunk against its `slots` (slot indexes from `first`, in path
    order); return the tree records they make. CutError("bad_chunk") unless they build
    exactly those entries (no key outside the slots, none twice, every slot matching).

    Pure and self-contained, so that chunks can be checked on other processes."""
    work = _sorted_by_path(pairs)
    if len({item[1] for item in work}) != len(work):
        raise CutError("bad_chunk", "a key appears twice")
    if not slots:
        raise CutError("bad_chunk", "a chunk of no slot")
    lows = [prefix << 4 * (PATH_NIBBLES - at) for at, prefix, _ in slots]
    last_at, last_prefix, _ = slots[-1]
    high = (last_prefix + 1) << 4 * (PATH_NIBBLES - last_at)
    # Slots of one depth (no split among them, the usual chunk): a shift finds the slot.
    shift = 4 * (PATH_NIBBLES - last_at)
    uniform = all(at == last_at for at, _, _ in slots)
    base = slots[0][1]
    groups: dict[int, list[tuple[str, bytes, bytes, bytes]]] = {}
    for item in work:
        path = int.from_bytes(item[1], "big")
        slot = (path >> shift) - base if uniform else bisect_right(lows, path) - 1
        if slot < 0 or path >= high:
            end = first + len(slots)
            raise CutError("bad_chunk", f"key {item[1].hex()[:16]} outside [{first}, {end})")
        groups.setdefault(slot, []).append(item)
    leaves: dict[int, bytes] = {}
    branches: list[tuple[str, bytes]] = []
    for slot, (at, prefix, expected) in enumerate(slots):
        group = groups.get(slot, [])
        node, entry = _subtree(group, at)
        if entry != expected:
            raise CutError("bad_chunk", f"slot {first + slot} does not match the manifest")
        if isinstance(node, bytes):
            leaves[first + slot] = group[0][1]
        elif node is not None:
            _branch_records(node, f"{prefix:0{at}x}", branches)
    return ChunkRecords(len(work), leaves, branches, [(d, k) for _, d, _, k in work])


def restrict_chunk(
    checked: ChunkRecords, slots: Sequence[Slot], keep: dict[int, int]
) -> ChunkRecords:
    """The records of a checked chunk that fall under the slots in `keep` (slot index ->
    its position in `slots`).

    State sync takes a chunk whose slots overlap slots it already verified (from another
    manifest of the same cut, with other chunk boundaries) only for the slots it still
    lacks, so that no key or branch is counted twice."""
    wanted = {(slots[i][0], slots[i][1]) for i in keep.values()}
    depths = sorted({at for at, _ in wanted})

    def kept(path: int, nibbles: int) -> bool:
        return any((at, path >> 4 * (nibbles - at)) in wanted for at in depths if at <= nibbles)

    paths = [(d, k) for d, k in checked.paths if kept(int.from_bytes(d, "big"), PATH_NIBBLES)]
    return ChunkRecords(
        len(paths),
        {index: d for index, d in checked.leaves.items() if index in keep},
        [(p, r) for p, r in checked.branches if kept(int(p, 16) if p else 0, len(p))],
        paths,
    )


def _branch_records(top: _Branch, path: str, out: list[tuple[str, bytes]]) -> None:
    stack: list[tuple[str, _Branch]] = [(path, top)]
    while stack:
        at, branch = stack.pop()
        out.append((at, _encode(branch)))
        stack.extend(
            (at + NIBBLES[i], child) for i, child in enumerate(branch[:16]) if type(child) is list
        )


class CutAssembler:
    """Checks the chunks of a snapshot on arrival and gathers the tree's records.

    Made from the cut a manifest claims, which must fold to the trusted `root`
    (CutError "bad_manifest" if not); `add` checks one chunk (`check_chunk`), or `keep`
    takes one checked elsewhere; `records` then gives every record of the whole tree as
    `StateTree.records` does, the branches above the cut built from the cut itself. The
    tree is never held in memory: a node reopens it from its records (`StateTree.open`)
    like after any restart, and the root record carries the trusted root by construction.
    """

    def __init__(
        self, root: bytes, depth: int, entries: Sequence[bytes], splits: Sequence[Split] = ()
    ) -> None:
        if len(entries) != 16**depth:
            raise CutError("bad_manifest", f"{len(entries)} cut entries for depth {depth}")
        if fold_cut(entries) != root:
            raise CutError("bad_manifest", "the cut does not fold to the trusted state root")
        self.root = root
        self.depth = depth
        self.entries = tuple(entries)
        self.splits = tuple(splits)
        self.slots = cut_slots(depth, entries, splits)  # what chunks are made of
        self._chunks: list[ChunkRecords] = []

    def add(self, first: int, end: int, pairs: Iterable[tuple[bytes, bytes]]) -> int:
        """Check and keep the chunk holding slots [first, end); return its key count."""
        if not 0 <= first < end <= len(self.slots):
            raise CutError("bad_chunk", f"slots [{first}, {end}) outside the cut")
        return self.keep(check_slots(self.slots[first:end], first, pairs))

    def keep(self, checked: ChunkRecords) -> int:
        """Keep the records of a chunk `check_chunk` accepted against this cut."""
        self._chunks.append(checked)
        return checked.keys

    def records(self) -> list[tuple[str, bytes, bytes | None]]:
        """Every record of the tree, once every chunk was kept (as `StateTree.records`)."""
        leaves: dict[int, bytes] = {}
        size = 0
        out: list[tuple[str, bytes, bytes | None]] = []
        for chunk in self._chunks:
            leaves.update(chunk.leaves)
            size += chunk.keys
            out.extend(("branch", path.encode(), record) for path, record in chunk.branches)
            out.extend(("key", digest, key) for digest, key in chunk.paths)
        out.extend(("branch", path.encode(), record) for path, record in self._split(leaves))
        out.extend(("branch", path.encode(), record) for path, record in self._top(leaves, size))
        return out

    def _split(self, leaves: dict[int, bytes]) -> list[tuple[str, bytes]]:
        """The records of the split nodes (branches between the cut and its slots)."""
        index = {(at, prefix): i for i, (at, prefix, _) in enumerate(self.slots)}
        out: list[tuple[str, bytes]] = []
        for at, prefix, children in self.splits:
            below = []
            for i, child in enumerate(children):
                slot = index.get((at + 1, 16 * prefix + i))
                digest = leaves.get(slot, b"") if slot is not None else b""
                below.append(
                    (child[0], child[1:], digest) if child else (CUT_EMPTY, EMPTY_ROOT, b"")
                )
            out.append((f"{prefix:0{at}x}", _cut_branch_record(below)))
        return out

    def _top(self, leaves: dict[int, bytes], size: int) -> list[tuple[str, bytes]]:
        """The records of the branches above the cut, and the root record, folded as
        `fold_cut` folds (a lone leaf rises; its digest comes from its chunk)."""
        # Each position: (kind, hash, path digest of a leaf or b"").
        slot_of = {prefix: i for i, (at, prefix, _) in enumerate(self.slots) if at == self.depth}
        level = [
            (e[0], e[1:], leaves.get(slot_of.get(p, -1), b""))
            if e
            else (CUT_EMPTY, EMPTY_ROOT, b"")
            for p, e in enumerate(self.entries)
        ]
        out: list[tuple[str, bytes]] = []
        depth = self.depth
        while depth > 0:
            depth -= 1
            parents = []
            for index in range(len(level) // 16):
                children = level[16 * index : 16 * index + 16]
                filled = [c for c in children if c[0] != CUT_EMPTY]
                if not filled:
                    parents.append((CUT_EMPTY, EMPTY_ROOT, b""))
                elif len(filled) == 1 and filled[0][0] == CUT_LEAF:
                    parents.append(filled[0])
                else:
                    record = _cut_branch_record(children)
                    hashed = sha256(_BRANCH_HEADER + record[5 : 5 + 16 * HASH_SIZE]).digest()
                    parents.append((CUT_BRANCH, hashed, record))
                    if depth:
                        out.append((f"{index:0{depth}x}", record))
            level = parents
        kind, _, detail = level[0]
        if kind == CUT_EMPTY:
            return out
        top = detail if kind == CUT_BRANCH else bytes((RECORD_LEAF,)) + detail
        out.append(("", size.to_bytes(8, "big") + top))
        return out


def _cut_branch_record(children: Sequence[tuple[int, bytes, bytes]]) -> bytes:
    """The stored record (see RECORD_BRANCH) of a branch whose children are cut entries."""
    branches = leaves = 0
    digests = []
    for i, (kind, _, detail) in enumerate(children):
        if kind == CUT_LEAF:
            leaves |= 1 << i
            digests.append(detail)
        elif kind == CUT_BRANCH:
            branches |= 1 << i
    head = bytes((RECORD_BRANCH, branches >> 8, branches & 0xFF, leaves >> 8, leaves & 0xFF))
    return head + b"".join(c[1] for c in children) + b"".join(digests)
