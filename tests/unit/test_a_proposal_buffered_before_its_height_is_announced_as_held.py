"""A proposal that came before its height started is announced as held (issue 22, wan23v).

A node waits out the block interval after a commit (Tendermint's timeout_commit); the
next height's proposer, whose wait ended first, proposes meanwhile. The engine buffers
that proposal and stores it when the height starts, inside `NewHeight`, not from a fed
ProposalReceived, so the driver never put it in `proposals_held`: the node's ROUND_STATE
said it lacked the proposal for the whole height, and every peer holding it sent the full
block, up to three times each (the full PROPOSAL frames of the idle WAN testnet).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.events import ProposalReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from tests.support.chain import (
    VALIDATORS,
    NoGossip,
    devnet_genesis,
    first_block,
    node_hot_key,
    open_chain,
)
from tests.support.wait import wait_until_async


def test_a_proposal_buffered_before_its_height_is_announced_as_held(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "node")
    block = first_block(tmp_path / "builder", devnet_genesis())
    chosen = proposer(chain.validators(), 1, 0)
    key = next(node_hot_key(i) for i in range(VALIDATORS) if node_hot_key(i).public_key == chosen)
    proposal = Proposal.create(key, chain.params.chain_id, 1, 0, -1, block.hash())

    async def scenario() -> None:
        driver = Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip())
        # What a commit wait does: the engine, not yet at the proposal's height, buffers it.
        driver.engine.step(ProposalReceived(proposal, block.encode()))
        assert driver.proposals_held == {}
        driver.start()
        try:
            await wait_until_async(lambda: driver.engine.height == 1, 10, "the height started")
            assert driver.engine.proposal(0, block.hash()) is not None  # the engine took it
            assert proposal.signature in driver.proposals_held, (
                "the engine holds the proposal, but the node's ROUND_STATE will not show it"
            )
        finally:
            await driver.stop()

    try:
        asyncio.run(scenario())
    finally:
        chain.close()
