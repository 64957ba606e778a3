"""rev18a: held18's parked-tx defences that held under review."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.service import NodeService
from tests.support.calls import counting
from tests.support.chain import Builder, funded_key, open_chain


def test_rev18a_a_replaced_tx_offered_again_does_not_evict_its_replacement(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        key, chain_id = funded_key(), chain.params.chain_id
        cheap = Tx.create(key, chain_id, 0, 10_000, Transfer(b"\x0c" * 20, COIN, b""))
        dear = Tx.create(key, chain_id, 0, 20_000, Transfer(b"\x0c" * 20, COIN, b""))
        service.submit(cheap.raw)
        service.submit(dear.raw)
        # A block that changed the sender's account: nothing of it is offered again, since
        # a replaced tx, a rival of the pooled one, is not parked (api21 3).
        service.on_committed(b.commit([]), (), touched=[address_of(key.public_key)])
        assert not service.admission.is_parked(cheap.id)
        assert dear.id in service.mempool and cheap.id not in service.mempool
        assert dear.id in service.admission.checked  # the import skips its checks
    finally:
        chain.close()


def test_rev18a_pooled_copies_skip_the_index_and_a_client_hears_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        pooled = b.transfer(funded_key(), b"\x0d" * 20)
        service.submit(pooled.raw)
        reads: list[bytes] = []
        tx_location = chain.tx_location
        monkeypatch.setattr(chain, "tx_location", counting(reads, tx_location))
        with pytest.raises(TxError) as copy:
            service.submit(pooled.raw, from_peer=True)
        assert copy.value.reason is Reason.ALREADY_KNOWN and reads == []
        service.on_committed(b.commit([pooled]), ())
        with pytest.raises(TxError) as again:
            service.submit(pooled.raw)  # the client resubmits its own tx
        assert again.value.message == "this tx is already confirmed"
    finally:
        chain.close()
