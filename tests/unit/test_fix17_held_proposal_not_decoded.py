"""A full PROPOSAL the engine already holds is dropped before its block is decoded
(fix17 1, issue 22).

The duplicate test (`Driver.holds`, by round and block hash) ran only after the whole
frame was decoded: the block parsed, every tx hashed, the tx root computed. A peer
re-sending the same 1 MiB proposal (consensus gossip delivers a copy again after
`consensus_redeliver_after`) cost the node that work each time. The proposal's fields
name its block hash: the test now runs on them first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from fluxchain.core import block as block_module
from fluxchain.core import execute as execute_module
from fluxchain.core.merkle import merkle_root
from fluxchain.node.driver import encode_proposal
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _another_validators_proposal, _raw_peer
from tests.support.wait import wait_until_async

COPIES = 3


def test_fix17_copies_of_a_held_full_proposal_are_not_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, proposal, block, txs = _another_validators_proposal(tmp_path, Devnet(tmp_path / "net"))
    ids = [tx.id for tx in txs]
    roots: list[Sequence[bytes]] = []

    def counted_root(items: Sequence[bytes]) -> bytes:
        if list(items) == ids:
            roots.append(items)
        return merkle_root(items)

    relayed: list[bool] = []

    async def scenario() -> None:
        await node.start()
        try:
            for tx in txs:
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
                assert node.driver.holds(proposal)
                relayed.extend(
                    [await node.on_gossip(peer.id, Kind.PROPOSAL, full) for _ in range(COPIES)]
                )
        finally:
            monkeypatch.undo()
            await node.stop()

    asyncio.run(scenario())
    assert relayed == [False] * COPIES, "a copy of a held proposal was relayed"
    assert len(roots) == 1, (
        f"the block's tx root was computed {len(roots)} times for one proposal and "
        f"{COPIES} copies of it"
    )
