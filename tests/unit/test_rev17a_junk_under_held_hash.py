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
bytes compare, no decode) and punish a mismatch as BAD_PROPOSAL. Beside it: the sender of
a true copy is noted as holding the proposal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from consensus.messages import Proposal
from fluxchain.core.block import Block
from fluxchain.node.driver import encode_proposal
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _another_validators_proposal, _raw_peer
from tests.p2p.harness import RawPeer
from tests.support.wait import wait_until_async


@contextlib.asynccontextmanager
async def _held(tmp_path: Path) -> AsyncIterator[tuple[Node, Proposal, Block, RawPeer]]:
    """A started validator node whose engine holds (and has checked) another validator's
    proposal, sent to it by an honest raw peer (still connected)."""
    node, proposal, block, txs = _another_validators_proposal(tmp_path, Devnet(tmp_path / "net"))
    await node.start()
    try:
        for tx in txs:
            node.service.submit(tx.raw)
        async with _raw_peer(node) as honest:
            await node.on_gossip(
                honest.id, Kind.PROPOSAL, encode_proposal(proposal, block.encode())
            )
            await wait_until_async(
                lambda: node.driver.engine.validity.get(block.hash()) is True,
                what="the proposal's block checked by the engine",
            )
            yield node, proposal, block, honest
    finally:
        await node.stop()


def test_rev17a_junk_block_bytes_under_a_held_proposal_are_punished(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _held(tmp_path) as (node, proposal, _, _), _raw_peer(node) as attacker:
            junk = encode_proposal(proposal, b"\x00" * 4096)
            assert await node.on_gossip(attacker.id, Kind.PROPOSAL, junk) is False
            await wait_until_async(
                lambda: attacker.id not in {p.peer_id for p in node.network.peers()},
                what="the peer that sent junk under a held proposal punished and dropped",
                timeout=3.0,
            )

    asyncio.run(scenario())


def test_the_sender_of_a_held_proposals_copy_is_known_to_hold_it(tmp_path: Path) -> None:
    """A peer that sends a byte-for-byte copy of the proposal the engine holds has it:
    the copy is not decoded (fix17), and consensus gossip notes its sender as holding the
    proposal, so that the node does not send the block back to it (before: the copy was
    dropped before the note)."""

    async def scenario() -> None:
        async with _held(tmp_path) as (node, proposal, block, _), _raw_peer(node) as peer:
            copy = encode_proposal(proposal, block.encode())
            assert await node.on_gossip(peer.id, Kind.PROPOSAL, copy) is False
            state = node.consensus_gossip._peers.get(peer.id)
            assert state is not None and proposal.signature in state.known, (
                "the sender of a held proposal's copy is not noted as holding it"
            )

    asyncio.run(scenario())
