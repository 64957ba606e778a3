"""Attack (review of issue 18): a stored tree branch is missing (or damaged) and a block
walks into it. `StateTree._resolve` raises store_mismatch from inside `tree.update`, which
`execute._seal` calls after the `try` that discards the State's writes on failure
(`execute.execute`, same in `execute.build_block`). So the refused block's writes stay
pending in the State, and the tree is left half-updated. Nothing stops the node: the
driver and the sync loop treat any BlockError as a bad block (the sync blames the peer)
and go on. The next execution then runs on top of the stale writes: the same, valid,
decided block is refused as invalid_tx (nonce_mismatch) instead of store_mismatch, and
the State serves uncommitted writes to every reader meanwhile.

Expected (docs/storage.md): a damaged record stops the node with store_mismatch and is
never used; a refused block leaves nothing behind.
"""

from __future__ import annotations

from hashlib import sha256
from pathlib import Path

import plyvel
import pytest

from fluxchain.core.block import Block
from fluxchain.core.errors import Reason, StoreError
from fluxchain.core.records import account_key
from fluxchain.store.db import TREE_BRANCH
from tests.support.chain import Builder, funded_key, open_chain


def test_a_missing_branch_met_while_sealing_leaves_the_block_pending(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chain = open_chain(home)
    builder = Builder(chain)
    for height in range(3):
        builder.commit([builder.transfer(funded_key(), bytes([height, i]) * 10) for i in range(10)])
    target = bytes([7, 7]) * 10
    block, commit = builder.block([builder.transfer(funded_key(), target)])
    block = Block.decode(block.encode(), 1 << 30, 1 << 20)
    chain.close()

    db = plyvel.DB(str(home))
    path = sha256(account_key(target)).hexdigest()
    on_path = [
        name
        for key in db.iterator(prefix=TREE_BRANCH, include_value=False)
        if (name := key[1:].decode()) and path.startswith(name)
    ]
    db.delete(TREE_BRANCH + on_path[-1].encode())
    db.close()

    chain = open_chain(home)
    try:
        with pytest.raises(StoreError) as refused:
            chain.import_block(block, commit)
        assert refused.value.reason is Reason.STORE_MISMATCH
        assert not chain.state.has_pending(), "the refused block's writes are still pending"
        with pytest.raises(StoreError) as again:
            chain.import_block(block, commit)
        assert again.value.reason is Reason.STORE_MISMATCH, again.value.message
    finally:
        chain.close()
