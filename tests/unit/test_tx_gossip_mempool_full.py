"""A tx a peer sent (or we fetched) that the mempool refused only for being full is not
remembered as received: an announcement once there is room fetches it again (rev13a,
fix13r)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from fluxchain.core.crypto import sha256
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain


def test_a_tx_refused_for_a_full_mempool_is_forgotten_by_the_tx_fetcher(tmp_path: Path) -> None:
    """The mempool holds one tx; a frame of two from a peer: the second is refused as
    `mempool_full`, which is no fault of the peer and no verdict on the tx. The node tells
    the p2p layer to forget it as received (`Network.forget_txs`), so that a later
    announcement of it is fetched; the admitted one is not forgotten."""
    chain = open_chain(tmp_path)
    try:
        builder = Builder(chain)
        keys = [funded_key(VALIDATORS + i) for i in range(min(2, DEV_ACCOUNTS))]
        raws = [builder.transfer(key, b"\x01" * 20).raw for key in keys]
        forgotten: list[bytes] = []
        # The node wires the service's `refetch` to `Network.forget_txs` (held18c).
        service = NodeService(chain, Mempool(MempoolLimits(max_txs=1)), refetch=forgotten.extend)
        punished: list[str] = []
        network = SimpleNamespace(punish=lambda peer_id, points, reason: punished.append(reason))
        host = SimpleNamespace(service=service, network=network)
        admitted: list[bytes] = []
        asyncio.run(Node._on_txs(host, "peer-a", raws, admitted))  # type: ignore[arg-type]
        assert admitted == [sha256(raws[0])]
        assert forgotten == [sha256(raws[1])]
        assert not punished
    finally:
        chain.close()
