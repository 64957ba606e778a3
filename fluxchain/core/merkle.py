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
