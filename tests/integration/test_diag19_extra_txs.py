"""A compact proposal naming txs this node checked and refused for a full pool is rebuilt
from their kept bytes, with no fetch (issue 24, diag19; BIP152's extra txns).

Under a flood every pool fills, each first with its own clients' txs, and refuses the
others' as `mempool_full`: before, those were forgotten, so every proposal needed a fetch
of hundreds to thousands of txs from a proposer busy with the same flood, and a failed
fetch cost a round (30 s without a block under concurrent clients). The kept bytes serve
rebuilds and proposal-tx requests only: the tx is still not held for the tx relay."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.core.encoding import pack
from fluxchain.node.home import Home
from fluxchain.node.mempool import MempoolLimits
from fluxchain.node.node import PROPOSAL_TXS_TIMEOUT_S, Node
from p2p.messages import GetProposalTxs, Gossip, Kind, ProposalTxs
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import (
    SENT_BEFORE,
    _compact_of,
    _proposed_block,
    _raw_peer,
    _received,
    watch_handed,
)
from tests.support.wait import wait_until_async


def test_diag19_txs_refused_for_a_full_pool_rebuild_a_compact_proposal_unfetched(
    tmp_path: Path,
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet)
    refused = txs[SENT_BEFORE:]

    async def scenario() -> None:
        await node.start()
        try:
            watch_handed(node)
            node.service.mempool.limits = MempoolLimits(max_txs=SENT_BEFORE)
            for tx in txs[:SENT_BEFORE]:
                node.service.submit(tx.raw)  # its own clients' txs fill the pool
            async with _raw_peer(node) as sender, _raw_peer(node) as asker:
                await sender.send(Gossip(Kind.TXS, pack([tx.raw for tx in refused])))
                await wait_until_async(
                    lambda: all(tx.id in node.network._tx_fetch._refused for tx in refused),
                    what="the peer's txs refused as mempool_full",
                )
                assert not any(node.has_tx(tx.id) for tx in refused)  # the relay refetches
                await sender.send(Gossip(Kind.COMPACT_PROPOSAL, _compact_of(node, devnet, block)))
                # `sender` never answers a request: only the kept bytes can rebuild it
                # before the fetch gives up.
                await wait_until_async(
                    lambda: bool(_received(node, block.hash())),
                    timeout=PROPOSAL_TXS_TIMEOUT_S / 2,
                    what="the block rebuilt from the refused txs' bytes, with no fetch",
                )
                assert _received(node, block.hash()) == [block.encode()]
                # A peer rebuilding the same block is served them too.
                await asker.send(GetProposalTxs(7, block.hash(), b"".join(t.id for t in refused)))
                answer = await asker.receive_kind(ProposalTxs)
                assert answer == ProposalTxs(7, tuple(tx.raw for tx in refused))
        finally:
            await node.stop()

    asyncio.run(scenario())
