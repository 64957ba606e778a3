"""A tx kept for compact-proposal rebuilds (the extra-txs store, issue 24) goes once a
committed block spends its nonce: no block can take it then, and its room is for txs that
a coming proposal may still name (rev19d 2, through `NodeService.on_committed`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, open_chain


def test_a_kept_tx_goes_when_a_committed_block_spends_its_nonce(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool(MempoolLimits(max_txs=1)))
        b = Builder(chain)
        chain_id = chain.params.chain_id
        first, second = funded_key(), funded_key(2)
        service.submit(Tx.create(first, chain_id, 0, 10_000, Transfer(b"\x05" * 20, COIN, b"")).raw)
        refused = Tx.create(second, chain_id, 0, 10_000, Transfer(b"\x06" * 20, COIN, b""))
        with pytest.raises(TxError) as excinfo:
            service.submit(refused.raw, from_peer=True)
        assert excinfo.value.reason is Reason.MEMPOOL_FULL
        assert service.extra.get(refused.id) == refused.raw  # a proposal may name it
        # Another tx of the same sender takes nonce 0 in a committed block.
        winner = Tx.create(second, chain_id, 0, 9_000, Transfer(b"\x07" * 20, COIN, b""))
        service.on_committed(b.commit([winner]), (), touched=[address_of(second.public_key)])
        assert service.extra.get(refused.id) is None
        assert len(service.extra) == 0
    finally:
        chain.close()
