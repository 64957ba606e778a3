"""The state tree's cut (docs/state-root.md §6): it folds to the root, a tree assembled
from checked chunks is the tree itself, and a chunk or a cut that lies is refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxchain.core.statetree import (
    CUT_BRANCH,
    CUT_LEAF,
    CutAssembler,
    CutError,
    Split,
    StateTree,
    cut_entry,
    cut_slots,
    decode_cut,
    encode_cut,
    fold_cut,
    path_prefix,
)
from tests.unit.test_statetree import DictStore, adversarial_pool, reference_root

SEED = 2023


def cut_of(state: dict[bytes, bytes], depth: int) -> tuple[list[bytes], dict[int, list]]:  # type: ignore[type-arg]
    groups: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in state.items():
        groups.setdefault(path_prefix(key, depth), []).append((key, value))
    return [cut_entry(groups.get(p, []), depth) for p in range(16**depth)], groups


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(adversarial_pool() + [bytes([i]) for i in range(60)]),
        st.binary(min_size=0, max_size=6),
        max_size=60,
    ),
    st.integers(1, 3),
    st.integers(1, 40),
)
def test_a_cut_folds_to_the_root_and_chunks_assemble_the_tree(
    state: dict[bytes, bytes], depth: int, chunk_prefixes: int
) -> None:
    """Whatever the state (empty, one key, keys sharing long prefixes) and however it is
    chunked: the cut folds to the root, and the assembled tree is the tree, down to the
    records it stores (reopened from them, it answers as the tree does)."""
    tree = StateTree.from_items(state.items())
    assert tree.root == reference_root(state)
    entries, groups = cut_of(state, depth)
    assert fold_cut(entries) == tree.root
    assert decode_cut(encode_cut(entries), depth) == tuple(entries)
    assembler = CutAssembler(tree.root, depth, entries)
    for first in range(0, 16**depth, chunk_prefixes):
        end = min(first + chunk_prefixes, 16**depth)
        assembler.add(first, end, [kv for p in range(first, end) for kv in groups.get(p, [])])
    reopened = StateTree.open(stored(assembler, state))
    assert reopened.root == tree.root and len(reopened) == len(state)
    # The very records the tree itself would store, branch for branch.
    persisting = StateTree.from_items(state.items(), persisting=True)
    assert sorted(r for r in assembler.records() if r[2] is not None) == sorted(
        r for r in persisting.records() if r[2] is not None
    )
    for key in [*list(state)[:5], b"absent"]:
        assert reopened.get(key) == state.get(key)
        assert reopened.prove(key) == tree.prove(key)


def stored(assembler: CutAssembler, state: dict[bytes, bytes]) -> DictStore:
    """A store holding `state` and the records the assembler made of it."""
    store = DictStore()
    store.values.update(state)
    for kind, name, value in assembler.records():
        assert value is not None
        if kind == "branch":
            store.branches[name.decode()] = value
        else:
            store.paths[name] = value
    return store


def _state(size: int) -> dict[bytes, bytes]:
    rng = random.Random(SEED)
    return {rng.randbytes(20): rng.randbytes(12) for _ in range(size)}


def test_a_chunk_that_does_not_match_its_cut_is_refused() -> None:
    state = _state(3_000)
    depth = 2
    root = StateTree.from_items(state.items()).root
    entries, groups = cut_of(state, depth)
    honest = [kv for p in range(16, 32) for kv in groups.get(p, [])]
    key, value = honest[0]
    other_key = next(k for k, _ in groups[40])
    lies = {
        "altered value": [(key, value + b"!"), *honest[1:]],
        "missing key": honest[1:],
        "extra key": [*honest, (b"\x00" * 20, b"forged")],
        "key of another chunk": [*honest, (other_key, state[other_key])],
        "key twice": [*honest, (key, value)],
    }
    for what, pairs in lies.items():
        assembler = CutAssembler(root, depth, entries)
        with pytest.raises(CutError) as caught:
            assembler.add(16, 32, pairs)
        assert caught.value.reason == "bad_chunk", what
    assembler = CutAssembler(root, depth, entries)
    assert assembler.add(16, 32, honest) == len(honest)
    with pytest.raises(CutError):
        assembler.add(250, 257, [])  # beyond the cut


def test_a_cut_that_does_not_fold_to_the_root_is_refused() -> None:
    state = _state(500)
    root = StateTree.from_items(state.items()).root
    entries, _ = cut_of(state, 1)
    forged = list(entries)
    forged[0] = cut_entry([(b"forged", b"state")], 1)
    assert fold_cut(forged) != root
    for lie in (forged, entries[:-1]):
        with pytest.raises(CutError) as caught:
            CutAssembler(root, 1, lie)
        assert caught.value.reason == "bad_manifest"


def test_an_entry_of_the_wrong_kind_is_refused_with_its_chunk() -> None:
    """The kind byte is not hashed: among filled siblings, a branch called a leaf folds to
    the same root. It cannot pass for all that: the chunk holding that prefix builds a
    branch, and is refused (the lie is charged to the peers offering that manifest)."""
    state = _state(500)
    root = StateTree.from_items(state.items()).root
    entries, groups = cut_of(state, 1)
    relabelled = list(entries)
    assert relabelled[5][0] == CUT_BRANCH
    relabelled[5] = bytes([CUT_LEAF]) + relabelled[5][1:]
    assembler = CutAssembler(root, 1, relabelled)
    with pytest.raises(CutError) as caught:
        assembler.add(5, 6, groups[5])
    assert caught.value.reason == "bad_chunk"


def test_a_malformed_cut_is_refused() -> None:
    entries, _ = cut_of(_state(100), 1)
    data = encode_cut(entries)
    for bad in (data[:-1], data + b"\x00", b"\x03" + data[1:]):
        with pytest.raises(CutError):
            decode_cut(bad, 1)
    with pytest.raises(CutError):
        decode_cut(data, 5)


def split_cut(
    state: dict[bytes, bytes], depth: int, nodes: list[tuple[int, int]]
) -> tuple[list[bytes], list[Split], list[list[tuple[bytes, bytes]]]]:
    """The cut of `state` at `depth` with `nodes` split (those that are branches), and the
    pairs of each of its slots, in slot order."""
    entries, _ = cut_of(state, depth)

    def under(at: int, prefix: int) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in state.items() if path_prefix(k, at) == prefix]

    splits: list[Split] = []
    for at, prefix in sorted(set(nodes)):  # a node is split once
        pairs = under(at, prefix)
        if len(pairs) < 2:
            continue  # not a branch: it cannot be split
        children = tuple(cut_entry(under(at + 1, 16 * prefix + i), at + 1) for i in range(16))
        splits.append((at, prefix, children))
    # Only splits whose parent is in the cut (a base node, or a child of a split).
    kept: list[Split] = []
    names = {(depth, p) for p in range(16**depth)}
    for split in splits:
        if (split[0], split[1]) in names:
            kept.append(split)
            names |= {(split[0] + 1, 16 * split[1] + i) for i in range(16)}
    slots = cut_slots(depth, entries, kept)
    return entries, kept, [under(at, prefix) for at, prefix, _ in slots]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(adversarial_pool() + [bytes([i]) for i in range(60)]),
        st.binary(min_size=0, max_size=6),
        max_size=60,
    ),
    st.integers(1, 2),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4095)), max_size=12),
    st.integers(1, 40),
)
def test_a_cut_with_split_nodes_assembles_the_tree(
    state: dict[bytes, bytes],
    depth: int,
    picks: list[tuple[int, int]],
    chunk_slots: int,
) -> None:
    """Nodes of the cut split into their children (as for keys ground into one prefix),
    to any depth: the slots are checked chunk by chunk, and the assembled records are
    the tree's own, branch for branch, the split nodes' branches included."""
    nodes = [(depth + extra, prefix % 16 ** (depth + extra)) for extra, prefix in picks]
    tree = StateTree.from_items(state.items())
    entries, splits, by_slot = split_cut(state, depth, nodes)
    assembler = CutAssembler(tree.root, depth, entries, splits)
    for first in range(0, len(by_slot), chunk_slots):
        end = min(first + chunk_slots, len(by_slot))
        assembler.add(first, end, [kv for pairs in by_slot[first:end] for kv in pairs])
    reopened = StateTree.open(stored(assembler, state))
    assert reopened.root == tree.root and len(reopened) == len(state)
    persisting = StateTree.from_items(state.items(), persisting=True)
    assert sorted(r for r in assembler.records() if r[2] is not None) == sorted(
        r for r in persisting.records() if r[2] is not None
    )


def test_a_split_that_does_not_fold_to_its_node_is_refused() -> None:
    """A manifest's split must fold to the node it refines, and name a branch of the cut;
    a chunk of a split node's slot is checked against the split's child entry."""
    state = _state(3_000)
    depth = 1
    root = StateTree.from_items(state.items()).root
    entries, splits, by_slot = split_cut(state, depth, [(1, 3)])
    assert len(splits) == 1
    at, prefix, children = splits[0]
    forged = list(children)
    forged[0], forged[1] = forged[1], forged[0]
    with pytest.raises(CutError, match="does not fold"):
        CutAssembler(root, depth, entries, [(at, prefix, tuple(forged))])
    with pytest.raises(CutError, match="not in the cut"):
        CutAssembler(root, depth, entries, [*splits, (3, 7, children)])
    assembler = CutAssembler(root, depth, entries, splits)
    slot = 3 + 5  # the sixth child of the split prefix 3
    key, value = by_slot[slot][0]
    with pytest.raises(CutError, match="bad_chunk"):
        assembler.add(slot, slot + 1, [(key, value + b"!"), *by_slot[slot][1:]])
    with pytest.raises(CutError, match="outside"):
        assembler.add(slot, slot + 1, [*by_slot[slot], by_slot[slot + 1][0]])
