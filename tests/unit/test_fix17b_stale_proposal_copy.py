"""A stale full PROPOSAL carrying the head block is dropped without decoding its block;
junk under a stale proposal is still punished (fix17b 3, after rev17a 1, issue 22).

Peers a height behind re-send the proposal of the block we just committed every
`consensus_redeliver_after`: each copy had its block decoded and every tx hashed before
the stale test dropped it. The head block's stored bytes are compared first now; other
bytes under the head block's hash are junk, so a peer sending them is still banned (and
since red23a 5 no stale proposal's block is decoded at all)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from consensus.messages import Proposal
from fluxchain.core import block as block_module
from fluxchain.core.merkle import merkle_root
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _raw_peer
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain
from tests.support.wait import wait_until_async

COPIES = 3


def test_fix17b_stale_copies_of_the_head_blocks_proposal_are_not_decoded_junk_is_punished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devnet = Devnet(tmp_path / "net")
    home = Home(devnet.homes[0])
    chain = open_chain(home.data, devnet.genesis)
    try:
        builder = Builder(chain, time_ms=devnet.genesis.genesis_time_ms)
        block = builder.commit([builder.transfer(funded_key(), bytes([9]) * 20)])
    finally:
        chain.close()
    signer = next(
        key
        for key in (node_hot_key(i) for i in range(4))
        if key.public_key == block.header.proposer
    )
    proposal = Proposal.create(signer, devnet.genesis.chain_id, 1, 0, -1, block.hash())
    node = Node(home)
    roots: list[Sequence[bytes]] = []

    def counted_root(items: Sequence[bytes]) -> bytes:
        roots.append(items)
        return merkle_root(items)

    async def scenario() -> None:
        await node.start()
        try:
            assert node.chain.height == 1
            monkeypatch.setattr(block_module, "merkle_root", counted_root)
            async with _raw_peer(node) as behind, _raw_peer(node) as attacker:
                copy = encode_proposal(proposal, block.encode())
                for _ in range(COPIES):
                    assert await node.on_gossip(behind.id, Kind.PROPOSAL, copy) is False
                assert roots == [], f"a stale copy's block was hashed {len(roots)} times"
                junk = encode_proposal(proposal, b"\x00" * 4096)
                assert await node.on_gossip(attacker.id, Kind.PROPOSAL, junk) is False
                await wait_until_async(
                    lambda: attacker.id not in {p.peer_id for p in node.network.peers()},
                    what="the peer that sent junk under a stale proposal punished and dropped",
                    timeout=3.0,
                )
                assert behind.id in {p.peer_id for p in node.network.peers()}
        finally:
            await node.stop()

    asyncio.run(scenario())
