"""Consensus gossip on a real node sends a peer that lacks a proposal its compact copy
first, and the full block only on a later send (issue 22, wan15; fix16b 2).

tests/p2p/test_consensus_gossip.py checks the planner alone; this holds the node's loop,
its payload encoding and its real link to the same order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.driver import encode_proposal
from fluxchain.node.node import RESEND_AFTER_MS
from p2p.messages import Gossip, Kind, RoundState
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _another_validators_proposal, _raw_peer
from tests.p2p.harness import RawPeer
from tests.support.wait import wait_until_async


async def _sends_of(
    peer: RawPeer, payloads: dict[bytes, str], count: int, timeout: float
) -> list[tuple[str, float]]:
    """The first `count` gossip frames `peer` receives carrying one of `payloads`, each
    named as in `payloads` with the seconds it came after the call."""
    start = time.monotonic()
    seen: list[tuple[str, float]] = []
    async with asyncio.timeout(timeout):
        while len(seen) < count:
            message = await peer.receive_kind(Gossip, timeout)
            name = payloads.get(message.payload)
            if name is not None:
                seen.append((name, time.monotonic() - start))
    return seen


def test_a_peer_lacking_a_proposal_gets_the_compact_copy_first_then_the_full_block(
    tmp_path: Path,
) -> None:
    # A validator that does not propose round 0: it holds another's proposal.
    node, proposal, block, txs = _another_validators_proposal(tmp_path, Devnet(tmp_path / "net"))
    compact = encode_compact_proposal(proposal, block)
    full = encode_proposal(proposal, block.encode())

    async def scenario() -> None:
        await node.start()
        try:
            for tx in txs:
                node.service.submit(tx.raw)
            async with _raw_peer(node) as proposer_link:
                await proposer_link.send(Gossip(Kind.PROPOSAL, full))
                await wait_until_async(
                    lambda: node.driver.holds(proposal), what="the proposal held by the node"
                )
            # A peer that connects later, at the proposal's round, and says it lacks it.
            async with _raw_peer(node) as lacking:
                await lacking.send(RoundState(1, 0, 1, b"", ()))
                sends = await _sends_of(
                    lacking,
                    {compact: "COMPACT_PROPOSAL", full: "PROPOSAL"},
                    2,
                    timeout=2 * RESEND_AFTER_MS / 1000 + 2.0,
                )
            names = [name for name, _ in sends]
            assert names == ["COMPACT_PROPOSAL", "PROPOSAL"], sends
            gap = sends[1][1] - sends[0][1]
            assert gap >= RESEND_AFTER_MS / 1000 - 0.2, f"the full block {gap:.2f} s later"
        finally:
            await node.stop()

    asyncio.run(scenario())
