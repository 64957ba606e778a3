"""Committing a block the way the driver does: import it, then tell the service which
accounts it changed (`changed_accounts` of its writes)."""

from __future__ import annotations

from fluxchain.core.accounts import changed_accounts
from fluxchain.core.block import Block
from fluxchain.core.tx import Tx
from fluxchain.node.service import NodeService
from tests.support.chain import Builder


def commit_to(service: NodeService, b: Builder, txs: list[Tx] | None = None) -> Block:
    """Build, import and announce a block of all `txs` to `service` (`Driver._after_commit`)."""
    block, commit = b.block(txs or [])
    assert not b.rejected, f"a test's block dropped txs: {b.rejected}"
    block = Block.decode(block.encode(), 1 << 30, 1 << 20)
    execution = b.chain.import_block(block, commit)
    b.last_commit = commit
    service.on_committed(
        block, execution.events, execution.tx_ids, changed_accounts(execution.changes)
    )
    return block
