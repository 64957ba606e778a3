"""A node restarts from its LevelDB home without rebuilding anything: the state is read
through on demand and the state tree is reopened from its stored records, checked against
the head block's state root (issue 18)."""

from __future__ import annotations

from pathlib import Path

import plyvel
import pytest

from fluxchain.core.accounts import get_account
from fluxchain.core.errors import Reason, StoreError
from fluxchain.core.statetree import StateTree
from fluxchain.store.chain import Chain
from fluxchain.store.db import TREE_BRANCH, TREE_PATH
from tests.support.chain import Builder, devnet_genesis, funded_key, open_chain


def _home_with_blocks(path: Path, blocks: int = 6) -> bytes:
    """A home with `blocks` blocks of transfers to fresh addresses; returns the head root."""
    chain = open_chain(path)
    builder = Builder(chain)
    for height in range(blocks):
        txs = [builder.transfer(funded_key(), bytes([height, i]) * 10) for i in range(20)]
        builder.commit(txs)
    root = chain.tree.root
    chain.close()
    return root


def test_a_restarted_node_reads_its_tree_and_state_on_demand(tmp_path: Path) -> None:
    root = _home_with_blocks(tmp_path / "home")
    chain = open_chain(tmp_path / "home")
    try:
        assert chain.head is not None and chain.tree.root == root == chain.head.state_root
        # what the open did not read is read when asked, and agrees with a full rebuild
        assert get_account(chain.state, bytes([3, 7]) * 10).balance > 0
        rebuilt = StateTree.from_items(chain.state.encoded_items())
        assert rebuilt.root == root
        # and the node goes on committing blocks
        builder = Builder(
            chain, time_ms=chain.head_time_ms, last_commit=chain.get_commit(chain.height)
        )
        builder.commit([builder.transfer(funded_key(), b"\x09" * 20)])
        assert StateTree.from_items(chain.state.encoded_items()).root == chain.tree.root
    finally:
        chain.close()


def test_a_stored_tree_that_disagrees_with_the_head_refuses_to_start(tmp_path: Path) -> None:
    """The stored tree's root is checked against the head block before anything runs: a
    damaged or foreign tree stops the node with a clear error instead of forking it."""
    _home_with_blocks(tmp_path / "home")
    db = plyvel.DB(str(tmp_path / "home"))
    record = bytearray(db.get(TREE_BRANCH))
    record[-1] ^= 0xFF  # one hash byte of the root branch
    db.put(TREE_BRANCH, bytes(record))
    db.close()
    with pytest.raises(StoreError) as refused:
        Chain.open(tmp_path / "home", devnet_genesis())
    assert refused.value.reason is Reason.STORE_MISMATCH
    assert "stored state tree root" in refused.value.message
    assert refused.value.message.endswith("of head block 6")


def test_a_home_without_a_stored_tree_builds_it_once(tmp_path: Path) -> None:
    """A home written before the tree was stored: the first start builds the tree from the
    state and stores it; later starts reopen it."""
    root = _home_with_blocks(tmp_path / "home")
    db = plyvel.DB(str(tmp_path / "home"))
    for prefix in (TREE_BRANCH, TREE_PATH):
        for key in list(db.iterator(prefix=prefix, include_value=False)):
            db.delete(key)
    db.close()
    for _ in range(2):
        chain = open_chain(tmp_path / "home")
        assert chain.tree.root == root
        chain.close()
    db = plyvel.DB(str(tmp_path / "home"))
    assert db.get(TREE_BRANCH) is not None
    db.close()


def test_queries_for_absent_accounts_do_not_grow_memory(tmp_path: Path) -> None:
    """The state reads through to the store and keeps what it decoded; a read of a key
    that does not exist (an API query for any address) must keep nothing, or anyone
    could grow a node's memory one query at a time."""
    _home_with_blocks(tmp_path / "home", blocks=1)
    chain = open_chain(tmp_path / "home")
    try:
        get_account(chain.state, b"\xee" * 20)
        kept = len(chain.state._committed)  # the decoded cache (white box: its size)
        for i in range(2_000):
            assert get_account(chain.state, b"\xee" + i.to_bytes(19, "big")).balance == 0
        assert len(chain.state._committed) == kept
    finally:
        chain.close()
