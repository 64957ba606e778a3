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
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.home import Home
from fluxchain.node.mempool import MempoolLimits
from fluxchain.node.node import PROPOSAL_TXS_TIMEOUT_S, Node
from p2p.messages import GetProposalTxs, Gossip, Kind, ProposalTxs
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import (
    SCAN_ROUND,
    SENT_BEFORE,
    _compact_of,
    _proposed_block,
    _raw_peer,
    _received,
)
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


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


def _other_tx(node: Node) -> Tx:
    """A transfer of another sender than the proposed block's."""
    key = derive_key(INSECURE_TEST_MNEMONIC, account_path(5))
    return Tx.create(key, node.chain.params.chain_id, 0, 5_000, Transfer(b"\x07" * 20, COIN, b""))


def test_diag19_a_compact_proposal_is_read_ahead_of_txs_and_rebuilt_from_them_unfetched(
    tmp_path: Path,
) -> None:
    """Under a flood the inboxes hold seconds of TXS frames, and a compact proposal that
    kept its place behind them was read past the propose timeout. Now it goes ahead, and
    the txs it lacks are read from the frames still waiting (here behind a TXS frame the
    busy host is still admitting), so neither waits nor needs a fetch."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet, SCAN_ROUND)
    busy = asyncio.Event()
    admitted_first = asyncio.Event()
    on_txs = node._on_txs

    async def slow_on_txs(
        peer_id: str, raws: list[bytes], admitted: list[bytes] | None = None
    ) -> bool:
        if not admitted_first.is_set():
            admitted_first.set()
            await busy.wait()  # the host admitting a long frame
        return await on_txs(peer_id, raws, admitted)

    async def scenario() -> None:
        await node.start()
        node._on_txs = slow_on_txs  # type: ignore[method-assign]
        try:
            async with _raw_peer(node) as pusher, _raw_peer(node) as sender:
                await pusher.send(Gossip(Kind.TXS, pack([_other_tx(node).raw])))
                await wait_until_async(admitted_first.is_set, what="the host busy with a frame")
                await pusher.send(Gossip(Kind.TXS, pack([tx.raw for tx in txs])))
                peer = next(p for p in node.network._peers.values() if p.peer_id == pusher.id)
                await wait_until_async(lambda: peer.inbox.qsize() == 1, what="the txs waiting")
                await sender.send(
                    Gossip(Kind.COMPACT_PROPOSAL, _compact_of(node, devnet, block, SCAN_ROUND))
                )
                await wait_until_async(
                    lambda: len(_received(node, block.hash())) == 1,
                    timeout=PROPOSAL_TXS_TIMEOUT_S / 2,
                    what="the block rebuilt from txs waiting in an inbox, with no fetch",
                )
                assert _received(node, block.hash()) == [block.encode()]
                busy.set()
                await wait_until_async(
                    lambda: all(tx.id in node.service.mempool for tx in txs),
                    what="the waiting txs admitted as ever",
                )
        finally:
            busy.set()
            await node.stop()

    asyncio.run(scenario())
