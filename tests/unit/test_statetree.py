"""The state tree: its root is a function of the state alone, and its proofs convince a
light client that holds nothing but the root.

Every root is checked against `reference_root`, a direct recursive reading of the
construction in docs/state-root.md that shares no code with the module under test.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import defaultdict
from functools import cache

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxchain.core.errors import DecodeError, StoreError
from fluxchain.core.statetree import (
    _SHAPE,
    EMPTY_ROOT,
    StateProof,
    StateTree,
    _shape_of,
    verify_proof,
)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def reference_root(state: dict[bytes, bytes]) -> bytes:
    """The root as docs/state-root.md defines it, computed the slow, obvious way."""
    entries = [
        (hashlib.sha256(key).hexdigest(), b"\x00" + sha256(key) + value)
        for key, value in state.items()
    ]

    def subtree(entries: list[tuple[str, bytes]], depth: int) -> bytes:
        if not entries:
            return bytes(32)
        if len(entries) == 1:
            return sha256(entries[0][1])
        children = [
            subtree([entry for entry in entries if entry[0][depth] == nibble], depth + 1)
            for nibble in "0123456789abcdef"
        ]
        return sha256(b"\x01" + b"".join(children))

    return subtree(entries, 0)


@cache
def colliding_keys() -> dict[int, list[bytes]]:
    """Small keys, found by brute force, whose paths share long prefixes with one another.

    groups[5] is a pair whose paths share their first 5 nibbles, p; groups[n] for n in
    4, 3, 2 holds keys whose paths share exactly n nibbles with p. Trees of them need
    chains of branches, splits deep below the root and collapses all the way back up.
    """
    by_prefix: dict[int, dict[str, list[bytes]]] = {n: defaultdict(list) for n in (2, 3, 4, 5)}
    for counter in range(1 << 17):
        key = b"k" + counter.to_bytes(3, "big")
        path = hashlib.sha256(key).hexdigest()
        for nibbles, index in by_prefix.items():
            index[path[:nibbles]].append(key)
    for prefix, pair in by_prefix[5].items():
        groups = {5: pair[:2]}
        for nibbles in (4, 3, 2):
            groups[nibbles] = [
                key
                for key in by_prefix[nibbles][prefix[:nibbles]]
                if hashlib.sha256(key).hexdigest()[nibbles] != prefix[nibbles]
            ][:3]
        if len(pair) >= 2 and all(groups.values()):
            return groups
    raise AssertionError("no nested family of colliding keys below 2**17")


def adversarial_pool() -> list[bytes]:
    pool = [key for keys in colliding_keys().values() for key in keys]
    return [*pool, b"", b"a", b"b", b"x" * 1000]


def apply(state: dict[bytes, bytes], batch: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in batch:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value


# -- the construction, byte by byte ------------------------------------------------------


def test_empty_tree_has_the_zero_root() -> None:
    assert bytes(32) == EMPTY_ROOT
    assert StateTree().root == EMPTY_ROOT
    assert StateTree.from_items([]).root == EMPTY_ROOT
    assert len(StateTree()) == 0


def test_one_key_root_is_its_leaf_hash() -> None:
    tree = StateTree()
    root = tree.update([(b"acct", b"\x05")])
    assert root == sha256(b"\x00" + sha256(b"acct") + b"\x05")
    assert root.hex() == "e724c0e0af4779fee3328a252d4d3f40d093ced417a6709232adbc22116c0fe4"


def test_two_keys_under_one_branch() -> None:
    # sha256(b"a") starts with nibble c, sha256(b"b") with 3: both sit just below the root
    assert hashlib.sha256(b"a").hexdigest()[0] == "c"
    assert hashlib.sha256(b"b").hexdigest()[0] == "3"
    children = [bytes(32)] * 16
    children[0xC] = sha256(b"\x00" + sha256(b"a") + b"1")
    children[0x3] = sha256(b"\x00" + sha256(b"b") + b"2")
    expected = sha256(b"\x01" + b"".join(children))
    assert StateTree.from_items([(b"a", b"1"), (b"b", b"2")]).root == expected
    assert expected.hex() == "937e2c9f8a181670d6083434dbdb71446650221ac3600f32944b4174d26fecad"
    assert StateTree().update([(b"b", b"2"), (b"a", b"1")]) == expected


def test_leaf_and_branch_preimages_differ_in_their_first_byte() -> None:
    keys = colliding_keys()[5]
    tree = StateTree.from_items([(keys[0], b"v"), (keys[1], b"w")])
    assert tree.root == reference_root({keys[0]: b"v", keys[1]: b"w"})
    assert tree.root != sha256(b"\x00" + sha256(keys[0]) + b"v")


# -- canonical: the root depends on the final state only ------------------------------


def batches_of_ops() -> st.SearchStrategy[list[list[tuple[bytes, bytes | None]]]]:
    key = st.one_of(st.sampled_from(adversarial_pool()), st.binary(max_size=3))
    value = st.one_of(st.none(), st.binary(max_size=40))
    return st.lists(st.lists(st.tuples(key, value), max_size=25), max_size=8)


@settings(max_examples=300, deadline=None)
@given(batches_of_ops())
def test_root_depends_only_on_the_final_state(
    batches: list[list[tuple[bytes, bytes | None]]],
) -> None:
    state: dict[bytes, bytes] = {}
    tree = StateTree()
    for batch in batches:
        apply(state, batch)
        assert tree.update(batch) == reference_root(state)
        assert len(tree) == len(state)
    assert tree.root == StateTree.from_items(state.items()).root
    assert tree.root == StateTree.from_items(sorted(state.items(), reverse=True)).root
    one_batch = StateTree()
    one_batch.update([op for batch in batches for op in batch])
    assert one_batch.root == tree.root
    for key, value in state.items():
        assert tree.get(key) == value


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.binary(max_size=8), st.binary(max_size=8), max_size=60), st.randoms())
def test_insertion_order_and_batch_split_do_not_matter(
    state: dict[bytes, bytes], rng: random.Random
) -> None:
    items = list(state.items())
    rng.shuffle(items)
    cut = rng.randint(0, len(items))
    tree = StateTree()
    tree.update(items[:cut])
    tree.update(items[cut:])
    assert tree.root == reference_root(state) == StateTree.from_items(state.items()).root


def test_last_write_in_a_batch_wins() -> None:
    tree = StateTree()
    tree.update([(b"k", b"1"), (b"k", b"2"), (b"j", b"1"), (b"j", None)])
    assert tree.get(b"k") == b"2"
    assert tree.get(b"j") is None
    assert tree.root == reference_root({b"k": b"2"})


def test_deleting_everything_returns_the_empty_root() -> None:
    state = {i.to_bytes(4, "big"): b"v%d" % i for i in range(500)}
    tree = StateTree.from_items(state.items())
    assert len(tree) == 500
    assert tree.update([(key, None) for key in state]) == EMPTY_ROOT
    assert len(tree) == 0
    assert tree.update([(b"again", b"1")]) == reference_root({b"again": b"1"})


def test_deleting_absent_keys_is_a_no_op() -> None:
    tree = StateTree.from_items([(b"a", b"1"), (b"b", b"2")])
    before = tree.root
    assert tree.update([(b"absent", None), (b"also absent", None)]) == before
    assert len(tree) == 2
    assert StateTree().update([(b"absent", None)]) == EMPTY_ROOT


def test_two_independent_trees_agree() -> None:
    ops = [(i.to_bytes(3, "big"), None if i % 7 == 0 else b"%d" % (i * i)) for i in range(3000)]
    first, second = StateTree(), StateTree()
    for start in range(0, 3000, 250):
        first.update(ops[start : start + 250])
    second.update(reversed(ops[::2]))  # a different order and split of the same writes
    second.update(ops[1::2])
    second.update([op for op in ops if op[1] is None])
    assert (
        first.root
        == second.root
        == StateTree.from_items((key, value) for key, value in ops if value is not None).root
    )


def test_large_state_built_at_once_or_block_by_block() -> None:
    # Above 2**15 keys the sort goes through buckets: both paths must agree.
    state = {b"acct" + i.to_bytes(4, "big"): i.to_bytes(8, "big") for i in range(40_000)}
    items = list(state.items())
    by_blocks = StateTree()
    for start in range(0, len(items), 5_000):
        by_blocks.update(items[start : start + 5_000])
    at_once = StateTree.from_items(reversed(items))
    assert at_once.root == by_blocks.root == reference_root(state)
    assert len(at_once) == 40_000
    changes = [(key, None if i % 3 else b"changed") for i, key in enumerate(list(state)[::2])]
    apply(state, changes)
    assert at_once.update(changes) == reference_root(state)


def test_keys_of_any_length() -> None:
    state = {b"": b"empty key", b"k" * 5000: b"long key", b"v": b"x" * 100_000}
    tree = StateTree.from_items(state.items())
    assert tree.root == reference_root(state)
    for key, value in state.items():
        assert tree.get(key) == value
        assert verify_proof(tree.root, key, value, tree.prove(key))


# -- adversarial shapes: long shared prefixes -------------------------------------------


@pytest.mark.parametrize("nibbles", [2, 3, 4, 5])
def test_colliding_keys_share_exactly_their_prefix(nibbles: int) -> None:
    prefix = hashlib.sha256(colliding_keys()[5][0]).hexdigest()
    for key in colliding_keys()[nibbles]:
        path = hashlib.sha256(key).hexdigest()
        assert path[:nibbles] == prefix[:nibbles]
        assert nibbles == 5 or path[nibbles] != prefix[nibbles]


def test_every_insert_and_delete_order_of_colliding_keys() -> None:
    groups = colliding_keys()
    keys = [*groups[5], groups[4][0], groups[3][0], groups[2][0]]
    for order in itertools.permutations(keys):
        tree = StateTree()
        state: dict[bytes, bytes] = {}
        for key in order:  # splits, one key at a time
            state[key] = key[::-1]
            assert tree.update([(key, key[::-1])]) == reference_root(state)
        for key in reversed(order):  # collapses, back up to the empty tree
            del state[key]
            assert tree.update([(key, None)]) == reference_root(state)
        assert tree.root == EMPTY_ROOT


def test_collapse_and_split_in_one_batch() -> None:
    pair = colliding_keys()[5]
    triple = [*colliding_keys()[4], *colliding_keys()[3]][:3]
    tree = StateTree.from_items([(pair[0], b"1"), (pair[1], b"2"), (triple[0], b"3")])
    # the pair's chain collapses while the triple's prefix splits, in one batch
    batch = [(pair[1], None), (triple[1], b"4"), (triple[2], b"5"), (triple[0], None)]
    state = {pair[0]: b"1", triple[1]: b"4", triple[2]: b"5"}
    assert tree.update(batch) == reference_root(state)
    assert tree.update([(pair[1], b"6"), (triple[0], b"7")]) == reference_root(
        {**state, pair[1]: b"6", triple[0]: b"7"}
    )


# -- proofs ---------------------------------------------------------------------------


def sample_state() -> dict[bytes, bytes]:
    state = {b"acct" + i.to_bytes(2, "big"): b"balance %d" % i for i in range(300)}
    state.update({key: b"adversarial" for keys in colliding_keys().values() for key in keys})
    return state


def test_every_inclusion_proof_verifies() -> None:
    state = sample_state()
    tree = StateTree.from_items(state.items())
    for key, value in state.items():
        proof = tree.prove(key)
        assert verify_proof(tree.root, key, value, proof)
        assert not verify_proof(tree.root, key, value + b"!", proof)
        assert not verify_proof(tree.root, key, None, proof)
        assert not verify_proof(tree.root, key + b"!", value, proof)


def test_a_proof_does_not_serve_another_key() -> None:
    state = sample_state()
    tree = StateTree.from_items(state.items())
    keys = list(state)
    for key, other in itertools.pairwise(keys):
        assert not verify_proof(tree.root, other, state[key], tree.prove(key))
        assert not verify_proof(tree.root, other, state[other], tree.prove(key))


def test_non_inclusion_proofs() -> None:
    state = sample_state()
    tree = StateTree.from_items(state.items())
    pool = adversarial_pool()
    absent = [b"missing %d" % i for i in range(300)] + [key + b"?" for key in pool]
    ended_at_a_leaf = 0
    for key in absent:
        proof = tree.prove(key)
        ended_at_a_leaf += bool(proof.other_leaf)
        assert verify_proof(tree.root, key, None, proof)
        assert not verify_proof(tree.root, key, b"", proof)
    assert ended_at_a_leaf > 0  # both endings, another key's leaf and an empty slot, seen
    assert ended_at_a_leaf < len(absent)
    for key in state:  # a present key has no valid proof of absence
        assert not verify_proof(tree.root, key, None, tree.prove(key))
        assert not verify_proof(tree.root, key, None, tree.prove(key + b"?"))


def test_proofs_in_tiny_trees() -> None:
    empty = StateTree()
    assert verify_proof(EMPTY_ROOT, b"k", None, empty.prove(b"k"))
    assert not verify_proof(EMPTY_ROOT, b"k", b"v", empty.prove(b"k"))
    single = StateTree.from_items([(b"k", b"v")])
    assert verify_proof(single.root, b"k", b"v", single.prove(b"k"))
    assert verify_proof(single.root, b"j", None, single.prove(b"j"))
    assert not verify_proof(single.root, b"k", None, single.prove(b"k"))


def test_proof_against_an_old_root_fails_after_a_change() -> None:
    state = sample_state()
    tree = StateTree.from_items(state.items())
    changed, *others = list(state)
    old_root = tree.root
    old_proofs = {key: tree.prove(key) for key in state}
    tree.update([(changed, b"new value")])
    assert verify_proof(old_root, changed, state[changed], old_proofs[changed])
    assert not verify_proof(tree.root, changed, state[changed], old_proofs[changed])
    assert not verify_proof(old_root, changed, b"new value", tree.prove(changed))
    for key in others:  # the change sits among the siblings on every other key's path
        assert not verify_proof(tree.root, key, state[key], old_proofs[key])
        assert verify_proof(tree.root, key, state[key], tree.prove(key))


def test_tampered_proofs_fail() -> None:
    state = sample_state()
    tree = StateTree.from_items(state.items())
    key = next(iter(state))
    proof = tree.prove(key)
    for level_index, level in enumerate(proof.levels):
        for position in (0, 1, 2, len(level) - 1):
            tampered = bytearray(level)
            tampered[position] ^= 1
            levels = list(proof.levels)
            levels[level_index] = bytes(tampered)
            assert not verify_proof(tree.root, key, state[key], StateProof(tuple(levels)))
    assert not verify_proof(tree.root, key, state[key], StateProof(proof.levels[1:]))
    assert not verify_proof(tree.root, key, state[key], StateProof((*proof.levels, b"\0\0")))


def test_a_proof_has_one_encoding() -> None:
    # Naming the path's own child in a level, with any hash for it, must not still verify.
    state = sample_state()
    tree = StateTree.from_items(state.items())
    for key in list(state)[:40]:
        proof = tree.prove(key)
        path = hashlib.sha256(key).hexdigest()
        for depth, level in enumerate(proof.levels):
            own = int(path[depth], 16)
            bitmap = int.from_bytes(level[:2], "big")
            hashes = [level[i : i + 32] for i in range(2, len(level), 32)]
            named = [index for index in range(16) if bitmap >> index & 1]
            hashes.insert(sum(index < own for index in named), b"\x07" * 32)
            padded = (bitmap | 1 << own).to_bytes(2, "big") + b"".join(hashes)
            levels = (*proof.levels[:depth], padded, *proof.levels[depth + 1 :])
            assert not verify_proof(tree.root, key, state[key], StateProof(levels))


def test_a_leaf_out_of_its_place_proves_no_absence() -> None:
    # A root no honest tree has: b"b"'s leaf (path 3e...) put in slot c, where b"a" would be.
    assert hashlib.sha256(b"a").hexdigest()[0] == "c"
    children = [bytes(32)] * 16
    other_leaf = b"\x00" + sha256(b"b") + b"2"
    children[0xC] = sha256(other_leaf)
    forged_root = sha256(b"\x01" + b"".join(children))
    no_siblings = b"\x00\x00"
    assert not verify_proof(forged_root, b"a", None, StateProof((no_siblings,), other_leaf))


def test_proof_fields_round_trip_through_msgpack() -> None:
    state = sample_state()
    tree = StateTree.from_items(state.items())
    for key in [*list(state)[:50], b"absent 1", b"absent 2"]:
        proof = tree.prove(key)
        wire = msgpack.packb(proof.to_fields(), use_bin_type=True)
        assert StateProof.from_fields(msgpack.unpackb(wire, raw=False)) == proof


@pytest.mark.parametrize(
    "fields",
    [
        [],
        ["text"],
        [b"", 7],
        [b"", b"\x00"],  # bitmap cut short
        [b"", b"\x00\x01"],  # bitmap names a child but no hash follows
        [b"", b"\x00\x01" + bytes(32)],  # an empty child sent as a hash
        [b"", b"\x00\x00" + b"\x01" * 32],  # a hash the bitmap does not name
        [b"\x01" + bytes(32)],  # other_leaf that is not a leaf preimage
        [b"\x00" + bytes(31)],  # other_leaf too short to hold a path
        [b"", *[b"\x00\x00"] * 65],  # deeper than a path is long
    ],
)
def test_malformed_proof_fields_are_rejected(fields: list[object]) -> None:
    with pytest.raises(DecodeError):
        StateProof.from_fields(fields)


# -- a stored tree, reopened ---------------------------------------------------------------


class DictStore:
    """What the node's store keeps of a tree (fluxchain/store/db.py), in dicts: the
    records of `records`, and the state values the leaves hold."""

    def __init__(self) -> None:
        self.branches: dict[str, bytes] = {}
        self.paths: dict[bytes, bytes] = {}
        self.values: dict[bytes, bytes] = {}

    def write(self, tree: StateTree, batch: list[tuple[bytes, bytes | None]]) -> None:
        apply(self.values, batch)
        records = tree.records()
        tree.records_written()
        for kind, name, value in records:
            table: dict = self.branches if kind == "branch" else self.paths  # type: ignore[type-arg]
            key = name.decode() if kind == "branch" else name
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value

    def branch(self, path: str) -> bytes | None:
        return self.branches.get(path)

    def leaf(self, digest: bytes) -> bytes | None:
        key = self.paths.get(digest)
        return None if key is None else self.values.get(key)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(adversarial_pool() + [bytes([i]) for i in range(40)]),
                st.one_of(st.none(), st.binary(min_size=0, max_size=8)),
            ),
            max_size=30,
        ),
        min_size=1,
        max_size=8,
    ),
    st.data(),
)
def test_a_reopened_tree_is_the_tree_that_was_stored(
    batches: list[list[tuple[bytes, bytes | None]]], data: st.DataObject
) -> None:
    """Batch by batch, a node's tree stores its records with the state; reopened from
    them at any point (reading branches only as walks enter them), it has the same root,
    answers the same gets and proofs, and goes on to the same roots as a tree held in
    memory that never stopped."""
    store = DictStore()
    tree = StateTree(persisting=True)
    never_stopped = StateTree()
    state: dict[bytes, bytes] = {}
    for batch in batches:
        tree.update(batch)
        never_stopped.update(batch)
        apply(state, batch)
        store.write(tree, batch)
        if data.draw(st.booleans(), "restart"):
            tree = StateTree.open(store)
        assert tree.root == never_stopped.root == reference_root(state)
        assert len(tree) == len(state)
        for key in [*list(state)[:5], b"absent"]:
            assert tree.get(key) == state.get(key)
            assert tree.prove(key) == never_stopped.prove(key)


def test_reopening_reads_only_the_root_and_what_walks_enter() -> None:
    store = DictStore()
    tree = StateTree(persisting=True)
    batch: list[tuple[bytes, bytes | None]] = [
        (i.to_bytes(4, "big"), b"v" * 10) for i in range(5_000)
    ]
    tree.update(batch)
    store.write(tree, batch)
    reads: list[str] = []
    branch = store.branch

    def counted(path: str) -> bytes | None:
        reads.append(path)
        return branch(path)

    store.branch = counted  # type: ignore[method-assign]
    reopened = StateTree.open(store)
    assert reads == [""] and reopened.root == tree.root
    assert reopened.get((7).to_bytes(4, "big")) == b"v" * 10
    assert 1 < len(reads) <= 5  # the root and the branches down to one key's leaf


def test_a_damaged_stored_branch_is_refused() -> None:
    """A record that does not hash to what its parent holds is never used."""
    store = DictStore()
    tree = StateTree(persisting=True)
    batch: list[tuple[bytes, bytes | None]] = [
        (bytes([i, j]), b"x") for i in range(16) for j in range(16)
    ]
    tree.update(batch)
    store.write(tree, batch)
    deep = max(store.branches, key=len)
    record = bytearray(store.branches[deep])
    record[10] ^= 1
    store.branches[deep] = bytes(record)
    reopened = StateTree.open(store)
    with pytest.raises(StoreError, match="damaged"):
        for key, _ in batch:
            reopened.get(key)


# -- the branches' remembered shapes (statetree._SHAPE) ------------------------------------


def _loaded_branches(tree: StateTree) -> list[list[object]]:
    found, stack = [], [tree._top]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            found.append(node)
            stack.extend(node[:16])
    return found


def test_remembered_branch_shapes_match_the_branches() -> None:
    """A branch keeps its record's head and leaf digests (its shape) from one block to
    the next, while only values change under it. Through inserts that split deep
    prefixes, deletes that collapse them, new values, and restarts from the stored
    records, every shape a branch holds is the one its children give, and what is
    stored reopens as the same tree."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    pool = adversarial_pool() + [b"acct" + i.to_bytes(2, "big") for i in range(300)]
    store = DictStore()
    tree = StateTree(persisting=True)
    state: dict[bytes, bytes] = {}
    remembered = 0
    for block in range(60):
        batch: list[tuple[bytes, bytes | None]]
        if state and rng.random() < 0.5:  # a block of new values only: no shape changes
            batch = [
                (key, rng.randbytes(6)) for key in rng.sample(sorted(state), min(30, len(state)))
            ]
        else:
            batch = [
                (key, None if rng.random() < 0.3 else rng.randbytes(rng.randrange(9)))
                for key in rng.sample(pool, rng.randrange(1, 80))
            ]
        apply(state, batch)
        assert tree.update(batch) == reference_root(state), seed
        for branch in _loaded_branches(tree):
            if branch[_SHAPE] is not None:
                remembered += 1
                assert branch[_SHAPE] == _shape_of(branch), (seed, block)
        store.write(tree, batch)
        if rng.random() < 0.2:
            tree = StateTree.open(store)
            assert all(tree.get(key) == value for key, value in state.items()), seed
    assert remembered > 0
    reopened = StateTree.open(store)
    assert reopened.root == reference_root(state)
    assert all(reopened.get(key) == value for key, value in state.items())


def test_stored_records_are_those_of_the_same_state_built_at_once() -> None:
    """Block by block, through new values, inserts that split deep prefixes (new branches
    made with their shapes), deletes that collapse them and restarts, the records a tree
    stores are byte for byte the records of a tree built at once from the same state
    (`from_items`, which works every shape out from its children): the store never
    depends on the path the state took."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    pool = adversarial_pool() + [b"acct" + i.to_bytes(2, "big") for i in range(400)]
    store = DictStore()
    tree = StateTree(persisting=True)
    state: dict[bytes, bytes] = {}
    for block in range(40):
        keys = rng.sample(sorted(state), min(len(state), rng.randrange(60))) if state else []
        batch: list[tuple[bytes, bytes | None]] = [(key, rng.randbytes(5)) for key in keys]
        batch += [
            (key, None if rng.random() < 0.25 else rng.randbytes(rng.randrange(9)))
            for key in rng.sample(pool, rng.randrange(1, 90))
        ]
        rng.shuffle(batch)
        apply(state, batch)
        assert tree.update(batch) == reference_root(state), (seed, block)
        store.write(tree, batch)
        fresh = DictStore()
        fresh.values = dict(state)
        at_once = StateTree.from_items(state.items(), persisting=True)
        for kind, name, value in at_once.records():
            assert value is not None
            if kind == "branch":
                fresh.branches[name.decode()] = value
            else:
                fresh.paths[name] = value
        assert store.branches == fresh.branches, (seed, block)
        assert store.paths == fresh.paths, (seed, block)
        if rng.random() < 0.2:
            tree = StateTree.open(store)
