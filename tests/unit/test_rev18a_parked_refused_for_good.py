"""rev18a: a parked tx that a later block refuses for good stays parked (held18).

Attack / busy network: every replace-by-fee leaves its replaced tx parked; once the
replacement commits, the replaced tx's nonce is spent and the pool refuses it for good.
Offered again (any announcement of it after a block), it is refused NONCE_MISMATCH, but
`TxAdmission.park` is never undone: it keeps its PARKED_TXS slot and its place in
`checked`, and every later announcement at a new height buys one more pool attempt and a
tx-index (LevelDB) read. docs/p2p.md says a spent nonce "is not kept".
Fix direction: when an offer (or any submit) of a parked tx is refused for a reason that
cannot clear, `forget` it (and note a committed one); or drop parked txs of a sender whose
nonce passed theirs when a block commits.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, open_chain


def test_rev18a_a_replaced_tx_whose_nonce_commits_is_not_kept_parked(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        admission = service.admission
        b = Builder(chain)
        key = funded_key()
        chain_id = chain.params.chain_id
        cheap = Tx.create(key, chain_id, 0, 10_000, Transfer(b"\x0a" * 20, COIN, b""))
        dear = Tx.create(key, chain_id, 0, 20_000, Transfer(b"\x0a" * 20, COIN, b""))
        service.submit(cheap.raw)
        service.submit(dear.raw)  # replace-by-fee: `cheap` is not parked (api21 3)
        # Nonce 0 is spent for good; the block changed the sender, so `cheap` is offered
        # again and refused nonce_mismatch (held18b: offers follow commits, not announcements).
        service.on_committed(b.commit([dear]), (), touched=[address_of(key.public_key)])
        assert not admission.is_parked(cheap.id), "a spent nonce stays parked"
        assert cheap.id not in admission.checked, "a spent nonce stays kept as checked"
    finally:
        chain.close()
