"""The tx index a committed block writes: each tx's (height, index), found by its id,
whatever the length of the index's encoding (store/db.py shares the height's)."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.encoding import pack
from fluxchain.store.db import TX_INDEX
from tests.support.chain import Builder, funded_key, open_chain


def test_every_tx_is_found_at_its_height_and_index(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    builder = Builder(chain)
    key = funded_key()
    # 300 txs: indices 0-127 pack to one byte, 128-255 to two, 256 and on to three
    sizes = (300, 2, 129)
    for size in sizes:
        txs = [builder.transfer(key, (i % 250 + 1).to_bytes(20, "big")) for i in range(size)]
        block = builder.commit(txs)
        assert len(block.txs) == size
        for index, tx in enumerate(txs):
            assert chain.tx_location(tx.id) == (block.height, index), (block.height, index)
            stored = chain.db.get(TX_INDEX + tx.id)
            assert stored == pack([block.height, index]), (block.height, index, stored)
    chain.close()
