"""A PROPOSAL whose block does not hash to its fields is punished even when the engine
holds a proposal of those fields (review rev17a 1, issue 22).

Attack (a byzantine peer): fix17 drops a full PROPOSAL as a copy of a held one by its
fields (`decode_proposal_head`, `Driver.holds`) before its block is checked. A peer that
copies a held proposal's fields (round, block hash, signature) and sends any bytes as
its block, up to 1 MiB a frame, each frame different (so each one passes the gossip
seen-cache), is no longer punished: before fix17 the block check failed and it lost 100
points (disconnected and banned). What an operator sees: a peer streaming megabytes of
junk proposals stays connected, unscored. Fix direction: when the fields name a held
proposal, compare the frame's block bytes with the held ones (`Engine.proposal`, a
bytes compare, no decode) and punish a mismatch as BAD_PROPOSAL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.node.driver import encode_proposal
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _another_validators_proposal, _raw_peer
from tests.support.wait import wait_until_async


def test_rev17a_junk_block_bytes_under_a_held_proposal_are_punished(tmp_path: Path) -> None:
    node, proposal, block, txs = _another_validators_proposal(tmp_path, Devnet(tmp_path / "net"))

    async def scenario() -> None:
        await node.start()
        try:
            for tx in txs:
                node.service.submit(tx.raw)
            async with _raw_peer(node) as honest, _raw_peer(node) as attacker:
                await node.on_gossip(
                    honest.id, Kind.PROPOSAL, encode_proposal(proposal, block.encode())
                )
                await wait_until_async(
                    lambda: node.driver.engine.validity.get(block.hash()) is True,
                    what="the proposal's block checked by the engine",
                )
                junk = encode_proposal(proposal, b"\x00" * 4096)
                assert await node.on_gossip(attacker.id, Kind.PROPOSAL, junk) is False
                await wait_until_async(
                    lambda: attacker.id not in {p.peer_id for p in node.network.peers()},
                    what="the peer that sent junk under a held proposal punished and dropped",
                    timeout=3.0,
                )
        finally:
            await node.stop()

    asyncio.run(scenario())
