"""A tx submitted to a node that is still pending a few blocks later is gossiped again
(it may have been sent while the node had no peers); one from a peer is not."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.tx import Tx
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
