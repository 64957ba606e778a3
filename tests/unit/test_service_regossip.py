"""A tx submitted to a node that is still pending a few blocks later is gossiped again
(it may have been sent while the node had no peers); one from a peer is not."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.tx import Tx
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import REGOSSIP_BLOCKS, NodeService
from tests.support.chain import Builder, funded_key, open_chain


def test_pending_local_txs_are_gossiped_again_until_they_leave_the_pool(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        sent: list[bytes] = []
        service = NodeService(chain, gossip=lambda tx: sent.append(tx.id))
        b = Builder(chain)
        local = b.transfer(funded_key(), b"\x01" * 20)
        service.submit(local.raw)
        from_peer: Tx = b.tx(funded_key(1), local.payload)
        service.submit(from_peer.raw, from_peer=True)
        assert sent == [local.id]
        for _ in range(REGOSSIP_BLOCKS):  # empty blocks: both stay pending
            block = b.commit([])
            service.on_committed(block, ())
        assert sent == [local.id, local.id]
        block = b.commit([local])  # confirmed: watched no more
        service.on_committed(block, ())
        for _ in range(2 * REGOSSIP_BLOCKS):
            service.on_committed(b.commit([]), ())
        assert sent == [local.id, local.id]
    finally:
        chain.close()


class _CountingMempool(Mempool):
    """A mempool that counts the membership checks made of it."""

    asked = 0

    def __contains__(self, tx_id: bytes) -> bool:
        _CountingMempool.asked += 1
        return super().__contains__(tx_id)


def test_a_block_looks_only_at_the_local_txs_due_to_be_gossiped_again(tmp_path: Path) -> None:
    # Per block, the work is the block's txs and the local txs sent REGOSSIP_BLOCKS ago,
    # not every pending local tx (issue 24, docs/performance.md "Devnet, sixth pass").
    chain = open_chain(tmp_path / "home")
    try:
        sent: list[bytes] = []
        pool = _CountingMempool()
        service = NodeService(chain, pool, gossip=lambda tx: sent.append(tx.id))
        b = Builder(chain)
        local = [b.transfer(funded_key(i % 4), b"\x01" * 20) for i in range(40)]
        for tx in local:
            service.submit(tx.raw)
        committed, pending = local[:4], local[4:]
        _CountingMempool.asked = 0
        service.on_committed(b.commit(committed), ())
        assert _CountingMempool.asked == 0
        sent.clear()
        for _ in range(REGOSSIP_BLOCKS - 1):  # the pending ones fall due at the last block
            service.on_committed(b.commit([]), ())
        assert sent == [tx.id for tx in pending]
        assert _CountingMempool.asked == len(pending)
        for _ in range(REGOSSIP_BLOCKS):  # and again REGOSSIP_BLOCKS later, in the same order
            service.on_committed(b.commit([]), ())
        assert sent == [tx.id for tx in pending] * 2
    finally:
        chain.close()
