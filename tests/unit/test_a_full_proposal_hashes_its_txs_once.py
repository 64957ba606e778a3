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

from fluxchain.core import block as block_module
from fluxchain.core import execute as execute_module
from fluxchain.core.merkle import merkle_root
from fluxchain.node.driver import encode_proposal
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _another_validators_proposal, _raw_peer
from tests.support.wait import wait_until_async


def test_a_full_proposal_is_checked_with_one_tx_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots, _ = full_proposal_roots(tmp_path, monkeypatch, copies=0)
    assert roots == 1, f"the tx_root was computed {roots} times"


def full_proposal_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies: int
) -> tuple[int, list[bool]]:
    """A validator is sent another's full proposal, then, once its block is checked,
    `copies` copies of it: how many times the block's tx_root was computed, and whether
    each copy was to be relayed."""
    # A validator that does not propose round 0: it checks another's block.
    node, proposal, block, txs = _another_validators_proposal(tmp_path, Devnet(tmp_path / "net"))
    ids = [tx.id for tx in txs]
    roots: list[Sequence[bytes]] = []
    relayed: list[bool] = []

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
                relayed.extend(
                    [await node.on_gossip(peer.id, Kind.PROPOSAL, full) for _ in range(copies)]
                )
        finally:
            monkeypatch.undo()
            await node.stop()

    asyncio.run(scenario())
    return len(roots), relayed
