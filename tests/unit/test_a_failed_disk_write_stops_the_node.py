"""Attack (review of issue 18): the node's disk refuses a block's write (full, I/O error)
while it syncs. Before, the driver's loop survived the error as one more failed input and
the node ran on with the block half-applied in memory; the next try refused the valid
block and the sync blamed the peer that served it.

Now a storage failure is a StoreError, never a BlockError: no peer is blamed, the driver
stops deciding anything, tells the node (which stops and exits non-zero), and the chain
is left as it was before the block. A home whose stored data is damaged makes `fluxchain
run` exit non-zero with store_mismatch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import plyvel
import pytest
from click.testing import CliRunner

from fluxchain.cli import main
from fluxchain.core.errors import Reason, StoreError
from fluxchain.node.driver import Driver, SyncedBlocks
from fluxchain.node.home import Home, NodeConfig, init_home
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.node.sync import ImportOutcome, SyncedBlock, import_in_order
from fluxchain.store.chain import Chain
from fluxchain.store.db import TREE_BRANCH
from tests.support.chain import (
    Builder,
    NoGossip,
    devnet_genesis,
    fail_next_block_write,
    funded_key,
    node_hot_key,
    open_chain,
)
from tests.support.wait import wait_until_async


def test_a_failed_block_write_in_sync_blames_no_peer(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    builder = Builder(chain)
    block, commit = builder.block([builder.transfer(funded_key(), b"\x02" * 20)])
    fail_next_block_write(chain)
    root = chain.tree.root
    try:
        with pytest.raises(StoreError) as failed:  # not a Refusal naming the peer
            import_in_order(chain, (SyncedBlock("peer-a", block, commit),))
        assert failed.value.reason is Reason.STORE_WRITE_FAILED
        assert (chain.height, chain.tree.root, chain.state.has_pending()) == (0, root, False)
        outcome = import_in_order(chain, (SyncedBlock("peer-a", block, commit),))
        assert outcome == ImportOutcome(1)  # the same block, once the disk takes it
    finally:
        chain.close()


def test_a_failed_block_write_stops_the_driver_and_tells_the_node(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    builder = Builder(chain)
    block, commit = builder.block([builder.transfer(funded_key(), b"\x02" * 20)])
    fail_next_block_write(chain)
    told: list[StoreError] = []

    async def scenario() -> None:
        driver = Driver(
            chain,
            NodeService(chain),
            node_hot_key(0),
            None,
            NoGossip(),
            on_storage_failure=told.append,
        )
        driver.start()
        done: asyncio.Future[ImportOutcome] = asyncio.get_running_loop().create_future()
        driver.submit(SyncedBlocks((SyncedBlock("peer-a", block, commit),), done))
        try:
            with pytest.raises(StoreError):
                await asyncio.wait_for(done, 10)
            assert driver._task is not None
            await asyncio.wait_for(driver._task, 10)  # its loop ended: nothing more decided
        finally:
            await driver.stop()

    try:
        asyncio.run(scenario())
        assert [error.reason for error in told] == [Reason.STORE_WRITE_FAILED]
        assert chain.height == 0 and not chain.state.has_pending()
    finally:
        chain.close()


def test_a_node_with_a_damaged_store_exits_non_zero(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, devnet_genesis(), NodeConfig(moniker="damaged", api_port=0, p2p_port=0))
    chain = Chain.open(Home(home).data, devnet_genesis())
    builder = Builder(chain)
    builder.commit([builder.transfer(funded_key(), b"\x01" * 20)])
    chain.close()
    db = plyvel.DB(str(Home(home).data))
    root_record = db.get(TREE_BRANCH)  # the state tree's root record
    db.put(TREE_BRANCH, root_record[:-1] + bytes([root_record[-1] ^ 1]))  # one flipped bit
    db.close()

    result = CliRunner().invoke(main, ["run", "--home", str(home)])
    assert result.exit_code == 1, result.output
    assert "store_mismatch" in result.output


def test_a_running_node_whose_block_write_fails_stops_with_the_error(tmp_path: Path) -> None:
    """The whole path in one process: a running node's disk refuses a synced block's write;
    the node stops in order and `Node.run` raises the StoreError (`fluxchain run` prints
    it and exits 1)."""
    source = open_chain(tmp_path / "source")
    builder = Builder(source)
    block, commit = builder.block([builder.transfer(funded_key(), b"\x02" * 20)])
    source.close()
    home = init_home(
        tmp_path / "home",
        devnet_genesis(),
        NodeConfig(moniker="full", api_port=0, p2p_port=0, duties=False),
    )
    node = Node(home)

    def fail(**fields: Any) -> None:
        raise OSError("IO error: No space left on device")

    async def scenario() -> None:
        running = asyncio.create_task(node.run())
        await wait_until_async(lambda: hasattr(node, "sync"), 20, "the node to start")
        node.chain.db.write_block = fail  # type: ignore[method-assign]
        node.driver.submit(SyncedBlocks((SyncedBlock("peer-a", block, commit),)))
        with pytest.raises(StoreError) as stopped:
            await asyncio.wait_for(running, 20)
        assert stopped.value.reason is Reason.STORE_WRITE_FAILED

    asyncio.run(scenario())
    reopened = Chain.open(home.data, devnet_genesis())  # closed in order, nothing written
    try:
        assert reopened.height == 0
    finally:
        reopened.close()
