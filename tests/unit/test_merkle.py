"""Merkle roots of tx ids and events: RFC 6962's tree, checked against its definition."""

from __future__ import annotations

import hashlib

from fluxchain.core.merkle import EMPTY_ROOT, merkle_root


def rfc6962_root(items: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 §2.1, read literally: split at the largest power of two < n."""
    if not items:
        return hashlib.sha256(b"").digest()
    if len(items) == 1:
        return hashlib.sha256(b"\x00" + items[0]).digest()
    split = 1
    while split * 2 < len(items):
        split *= 2
    left, right = rfc6962_root(items[:split]), rfc6962_root(items[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_every_size_up_to_70_matches_the_rfc() -> None:
    items = [hashlib.sha256(bytes([i])).digest() for i in range(70)]
    for size in range(71):
        assert merkle_root(items[:size]) == rfc6962_root(items[:size]), size


def test_leaves_of_any_length_and_the_empty_tree() -> None:
    items = [b"", b"a", b"event" * 40]
    assert merkle_root(items) == rfc6962_root(items)
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_a_repeated_last_leaf_changes_the_root() -> None:
    """No Bitcoin-style duplication: [a, b, c] and [a, b, c, c] differ."""
    a, b, c = (bytes([i]) * 32 for i in range(3))
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])
