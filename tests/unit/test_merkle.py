"""Merkle roots of tx ids and events: RFC 6962's tree, checked against its definition."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from fluxchain.core.merkle import EMPTY_ROOT, merkle_path, merkle_root, verify_merkle_path


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


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70), st.data())
def test_merkle_path_proves_each_leaf_and_nothing_else(
    items: list[bytes], data: st.DataObject
) -> None:
    """Every leaf's path leads to the root; a wrong leaf, a trimmed or padded path, or an
    inner node passed off as a leaf does not."""
    root = merkle_root(items)
    index = data.draw(st.integers(0, len(items) - 1))
    path = merkle_path(items, index)
    assert verify_merkle_path(root, items[index], index, len(items), path)
    assert not verify_merkle_path(root, items[index] + b"x", index, len(items), path)
    assert not verify_merkle_path(root, items[index], index, len(items), [*path, root])
    if path:
        assert not verify_merkle_path(root, items[index], index, len(items), path[:-1])
        flipped = bytes([path[0][0] ^ 1]) + path[0][1:]
        assert not verify_merkle_path(root, items[index], index, len(items), [flipped, *path[1:]])
    if len(items) >= 2:  # the hash of two leaves is an inner node, never a leaf
        inner = hashlib.sha256(
            b"\x01"
            + hashlib.sha256(b"\x00" + items[0]).digest()
            + hashlib.sha256(b"\x00" + items[1]).digest()
        ).digest()
        assert not verify_merkle_path(root, inner, 0, (len(items) + 1) // 2, path[1:])
