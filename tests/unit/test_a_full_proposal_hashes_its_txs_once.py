"""A validator checks a full PROPOSAL's txs once (fix16b 4, after perf15d).

A full proposal (consensus gossip's fallback when a compact one cannot be rebuilt) had its
tx_root computed twice: once where the frame is decoded (its body must be the one its header
names) and again by the block check before execution. The ids computed at decoding are now
the block check's, as a rebuilt compact proposal's are."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from consensus.messages import Proposal
from fluxchain.core import block as block_module
from fluxchain.core import execute as execute_module
from fluxchain.core.merkle import merkle_root
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _proposed_block, _raw_peer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path


def test_a_full_proposal_is_checked_with_one_tx_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devnet = Devnet(tmp_path / "net")
    block, txs = _proposed_block(tmp_path, devnet, round_=0)
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    # A node that does not propose round 0, so that it checks another's block.
    index = next(i for i in range(4) if keys[i].public_key != block.header.proposer)
    node = Node(Home(devnet.homes[index]))
    signer = next(k for k in keys if k.public_key == block.header.proposer)
    proposal = Proposal.create(signer, devnet.genesis.chain_id, 1, 0, -1, block.hash())
    ids = [tx.id for tx in txs]
    roots: list[Sequence[bytes]] = []

    def counted_root(items: Sequence[bytes]) -> bytes:
        if list(items) == ids:
            roots.append(items)
        return merkle_root(items)

    async def scenario() -> None:
        await node.start()
        try:
            for tx in txs:  # admitted before the proposal, as on a live network
                node.service.submit(tx.raw)
            for module in (block_module, execute_module):
                monkeypatch.setattr(module, "merkle_root", counted_root)
            async with _raw_peer(node) as peer:
                full = encode_proposal(proposal, block.encode())
                await node.on_gossip(peer.id, Kind.PROPOSAL, full)
                await wait_until_async(
                    lambda: node.driver.engine.validity.get(block.hash()) is True,
                    what="the proposal's block checked by the engine",
                )
        finally:
            monkeypatch.undo()
            await node.stop()

    asyncio.run(scenario())
    assert len(roots) == 1, f"the tx_root was computed {len(roots)} times"
