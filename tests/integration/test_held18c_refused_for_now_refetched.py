"""Txs refused for now and not parked are fetched again by a real node's tx relay after
their cool-down (held18c, rev18b 1 and 4): a fee-free tx refused for a height not yet
come, and a tx the pool evicted for room. Neither waits for its sender's account to
change, which may never happen."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.accounts import get_account
from fluxchain.core.crypto import address_of
from fluxchain.core.encoding import pack
from fluxchain.core.params import COIN
from fluxchain.core.tx import Evidence, Transfer, Tx
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.home import Home
from fluxchain.node.mempool import MempoolLimits
from fluxchain.node.node import Node
from p2p.messages import GetTxs, Gossip, Kind, TxBodies, TxIds
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _raw_peer
from tests.p2p.harness import RawPeer
from tests.support.chain import funded_key, node_hot_key
from tests.support.clock import clock_loop, run_on_clock_loop
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _evidence_ahead(node: Node) -> Tx:
    """A report of an equivocation at a height two past the node's next: `bad_evidence`
    (beyond the height being decided) now, valid once that height comes."""
    chain = node.chain
    chain_id, height = chain.params.chain_id, chain.height + 2
    offender, reporter = node_hot_key(1), funded_key()
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    b = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    nonce = get_account(chain.state, address_of(reporter.public_key)).nonce
    return Tx.create(reporter, chain_id, nonce, 0, Evidence(*evidence_pair(a, b)))


async def _fetched_after_cool_down(node: Node, peer: RawPeer, tx: Tx) -> GetTxs:
    """On a ClockLoop: end `tx`'s refusal cool-down by skipping the clock past it (it
    has no announcer: no refetch is timed), announce it, and return the node's request.
    The skip is shorter than a heartbeat: the link stays up."""
    until = node.network._tx_fetch._refused[tx.id].until
    clock_loop().skip_to(until + 0.2)
    await peer.send(TxIds(tx.id))
    request: GetTxs = await peer.receive_kind(GetTxs, timeout=5.0)
    return request


def test_held18c_evidence_refused_for_its_height_is_not_held_and_fetched_again(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        node = Node(Home(Devnet(tmp_path / "net").homes[0]))
        await node.start()
        try:
            report = _evidence_ahead(node)
            async with _raw_peer(node) as peer:
                await peer.send(Gossip(Kind.TXS, pack([report.raw])))
                await wait_until_async(
                    lambda: report.id in node.network._tx_fetch._refused,
                    what="the evidence refused for now",
                )
                assert not node.has_tx(report.id)  # not parked for a commit of its sender
                request = await _fetched_after_cool_down(node, peer, report)
                assert report.id in request.ids()
        finally:
            await node.stop()

    run_on_clock_loop(scenario)


def test_held18c_a_tx_evicted_for_room_is_fetched_again_once_room_frees(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = Node(Home(Devnet(tmp_path / "net").homes[0]))
        await node.start()
        try:
            chain_id = node.chain.params.chain_id
            cheap, dear = (
                Tx.create(
                    derive_key(INSECURE_TEST_MNEMONIC, account_path(i)),
                    chain_id,
                    0,
                    fee,
                    Transfer(b"\x01" * 20, COIN, b""),
                )
                for i, fee in ((4, 5_000), (5, 50_000))
            )
            node.service.mempool.limits = MempoolLimits(max_txs=1)
            async with _raw_peer(node) as peer:
                await peer.send(Gossip(Kind.TXS, pack([cheap.raw])))
                await wait_until_async(
                    lambda: cheap.id in node.service.mempool, what="the peer's tx pooled"
                )
                node.service.submit(dear.raw)  # a client's higher fee evicts it
                assert cheap.id not in node.service.mempool and not node.has_tx(cheap.id)
                node.service.mempool.limits = MempoolLimits(max_txs=2)  # room frees
                request = await _fetched_after_cool_down(node, peer, cheap)
                assert cheap.id in request.ids()
                await peer.send(TxBodies(request.request_id, (cheap.raw,)))
                await wait_until_async(
                    lambda: cheap.id in node.service.mempool, what="the evicted tx pooled again"
                )
        finally:
            await node.stop()

    run_on_clock_loop(scenario)
