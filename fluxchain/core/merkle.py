"""Merkle roots over tx ids and events (RFC 6962 §2.1 tree shape).

leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right), the empty tree's
root is SHA-256(""). A level with an odd count promotes its last node unchanged, which
gives exactly RFC 6962's split at the largest power of two and avoids Bitcoin's
duplicate-last-leaf ambiguity (two different lists can never share a root).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


def merkle_root(items: Sequence[bytes]) -> bytes:
    """Root of the tree whose leaves are `items` in order."""
    if not items:
        return EMPTY_ROOT
    sha = hashlib.sha256
    level = [sha(b"\x00" + item).digest() for item in items]
    while len(level) > 1:
        paired = [
            sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def merkle_path(items: Sequence[bytes], index: int) -> list[bytes]:
    """The sibling hashes from leaf `index` up to the root of `items`' tree, lowest first.

    A level where the walk's node is the odd one out (promoted unchanged) adds nothing, so
    the path's length follows from (index, count) and `verify_merkle_path` checks it."""
    if not 0 <= index < len(items):
        raise IndexError(f"leaf {index} of {len(items)}")
    sha = hashlib.sha256
    level = [sha(b"\x00" + item).digest() for item in items]
    path: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        paired = [
            sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level, index = paired, index // 2
    return path


def verify_merkle_path(
    root: bytes, item: bytes, index: int, count: int, path: Sequence[bytes]
) -> bool:
    """True iff `item` is leaf `index` of a `count`-leaf tree with `root`, by `path`.

    Every sibling is used exactly once and none is left over, so a path cannot be padded.
    What this proves is membership: the leaf and node prefixes keep an inner node from
    passing for a leaf. (`count` only shapes the walk; the root does not commit to it.)"""
    if not 0 <= index < count or any(len(h) != 32 for h in path):
        return False
    sha = hashlib.sha256
    node = sha(b"\x00" + item).digest()
    used = 0
    width = count
    while width > 1:
        if index ^ 1 < width:  # the node has a sibling at this level
            if used == len(path):
                return False
            sibling = path[used]
            used += 1
            pair = sibling + node if index & 1 else node + sibling
            node = sha(b"\x01" + pair).digest()
        width, index = (width + 1) // 2, index // 2
    return used == len(path) and node == root
