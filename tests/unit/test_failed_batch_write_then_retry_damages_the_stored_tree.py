"""Attack (review of issue 18): the block's batch write fails once (disk full, an I/O
error), the node keeps running (the driver survives any input's failure) and imports the
block again. `Chain._commit_block` has already taken the tree's dirty records
(`StateTree.take_records`) when `ChainDB.write_block` raises, and neither finishes nor
aborts the execution: the State keeps the block's writes pending and the tree keeps the
block applied. The retry is first refused (the txs run a second time on top of their own
pending writes: nonce_mismatch, blamed on the block), then accepted; but the tree no
longer sees the block's new keys as new, so their path records (`P`) are never written.
The long-lived node goes on agreeing with the network; once restarted it stops with
`store_mismatch: stored state tree is damaged`.

Expected: a failed write leaves the node as it was before the block (or stops it), and a
node that goes on from there can be restarted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.block import Block
from fluxchain.core.errors import Reason, StoreError
from fluxchain.core.statetree import StateTree
from tests.support.chain import Builder, fail_next_block_write, funded_key, open_chain


def test_failed_batch_write_then_retry_leaves_a_home_that_cannot_restart(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    builder = Builder(chain)
    for height in range(3):
        builder.commit([builder.transfer(funded_key(), bytes([height, 1]) * 10)])
    block, commit = builder.block(
        [builder.transfer(funded_key(), bytes([9, i]) * 10) for i in range(5)]
    )
    block = Block.decode(block.encode(), 1 << 30, 1 << 20)

    fail_next_block_write(chain)
    with pytest.raises(StoreError) as failed:  # the node's fault, not the block's
        chain.import_block(block, commit)
    assert failed.value.reason is Reason.STORE_WRITE_FAILED
    assert chain.height == 3

    # The node goes on (sync or consensus hands it the decided block again).
    for _ in range(2):
        try:
            chain.import_block(block, commit)
            break
        except Exception:
            continue
    assert chain.height == 4
    builder.last_commit = commit
    builder.commit([builder.transfer(funded_key(), bytes([9, 1]) * 10)])
    chain.close()

    reopened = open_chain(tmp_path / "home")
    try:
        again = Builder(reopened, time_ms=reopened.head_time_ms, last_commit=reopened.get_commit(5))
        again.commit([again.transfer(funded_key(), bytes([9, 0]) * 10)])
        assert StateTree.from_items(reopened.state.encoded_items()).root == reopened.tree.root
    finally:
        reopened.close()


def test_failed_batch_write_retry_is_refused_as_an_invalid_block(tmp_path: Path) -> None:
    """The same failure seen by the peer that served the block: the first retry refuses a
    valid, committed block (invalid_tx nonce_mismatch), which sync reports as the peer's
    fault."""
    chain = open_chain(tmp_path / "home")
    builder = Builder(chain)
    builder.commit([builder.transfer(funded_key(), b"\x01" * 20)])
    block, commit = builder.block([builder.transfer(funded_key(), b"\x02" * 20)])
    block = Block.decode(block.encode(), 1 << 30, 1 << 20)
    fail_next_block_write(chain)
    with pytest.raises(StoreError):
        chain.import_block(block, commit)
    try:
        # Nothing of the block is on disk: the node must be where it was before it.
        assert not chain.state.has_pending(), "the failed block's writes are still pending"
        chain.import_block(block, commit)  # a valid block, decided by the network
    finally:
        chain.close()
