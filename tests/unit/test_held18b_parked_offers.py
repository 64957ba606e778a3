"""Parked txs are offered again from the commit (held18b, issue 22): for the accounts a
block changed, in nonce order, at most PARKED_OFFERS a block; a peer's copy of one, or
an announcement, costs no pool attempt and no tx index read; a tx dropped or refused
for good is forgotten."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.accounts import changed_accounts
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.records import ACCOUNT, NODE
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.calls import counting
from tests.support.chain import Builder, funded_key, open_chain
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _unfunded(index: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(index))


def test_held18b_changed_accounts_are_the_account_writes_of_a_block() -> None:
    a, b = b"\x01" * 20, b"\x02" * 20
    changes = ((ACCOUNT + a, b"x"), (ACCOUNT + b, None), (NODE + a, b"y"))
    assert changed_accounts(changes) == [a, b]
    assert changed_accounts(((NODE + a, b"y"),)) == []


def test_held18b_a_peers_copy_of_a_parked_tx_costs_no_pool_attempt_or_index_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        poor = _unfunded(95)
        pay = Tx.create(poor, chain.params.chain_id, 0, 10_000, Transfer(b"\x03" * 20, COIN, b""))
        with pytest.raises(TxError):
            service.submit(pay.raw, from_peer=True)
        assert service.admission.is_parked(pay.id)
        reads: list[bytes] = []
        adds: list[bytes] = []
        monkeypatch.setattr(chain, "tx_location", counting(reads, chain.tx_location))
        monkeypatch.setattr(service.mempool, "add", counting(adds, service.mempool.add))
        for _ in range(3):
            with pytest.raises(TxError) as copy:
                service.submit(pay.raw, from_peer=True)
            assert copy.value.reason is Reason.INSUFFICIENT_FUNDS
        # A block that did not change the sender offers nothing again.
        service.on_committed(Builder(chain).commit([]), (), touched=[b"\x0f" * 20])
        assert (adds, reads) == ([], [])
        assert service.admission.is_parked(pay.id)
    finally:
        chain.close()


def test_held18b_offers_follow_nonce_order_and_a_bound_per_block(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        relayed: list[bytes] = []
        admission = TxAdmission(chain, offers_per_block=2)
        service = NodeService(chain, admission=admission, relay=relayed.extend)
        b = Builder(chain)
        poor = _unfunded(96)
        txs = [
            Tx.create(poor, chain.params.chain_id, n, 10_000, Transfer(b"\x04" * 20, 1, b""))
            for n in (2, 0, 1)
        ]
        for tx in txs:
            with pytest.raises(TxError):
                service.submit(tx.raw, from_peer=True)
        poor_address = address_of(poor.public_key)
        fund = b.transfer(funded_key(), poor_address, 10 * COIN)
        service.on_committed(b.commit([fund]), (), touched=[poor_address])
        by_nonce = sorted(txs, key=lambda tx: tx.nonce)
        assert relayed == [tx.id for tx in by_nonce[:2]]  # nonce order, two this block
        assert admission.is_parked(by_nonce[2].id)
        service.on_committed(b.commit([]), (), touched=[])  # the rest waits for no change
        assert relayed == [tx.id for tx in by_nonce]
        assert all(tx.id in service.mempool and tx.id in admission.checked for tx in txs)
    finally:
        chain.close()


def test_held18b_dropped_and_spent_txs_are_parked_or_forgotten(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())
        admission = service.admission
        b = Builder(chain)
        chain_id = chain.params.chain_id
        key, key2 = funded_key(), funded_key(2)
        pooled = Tx.create(key, chain_id, 0, 10_000, Transfer(b"\x05" * 20, COIN, b""))
        gapped = Tx.create(key, chain_id, 1, 10_000, Transfer(b"\x05" * 20, COIN, b""))
        service.submit(pooled.raw)
        service.submit(gapped.raw)
        # A proposer drops `gapped` behind a gap: that can clear, so it is parked.
        service.note_dropped(gapped, TxError(Reason.NONCE_MISMATCH, "nonce 1, expected 0"))
        assert admission.is_parked(gapped.id) and gapped.id not in service.mempool
        # Another tx takes `pooled`'s nonce (the block is built before the pool's update):
        # dropped by the proposer for a spent nonce, it is forgotten, not parked.
        other = Tx.create(key, chain_id, 0, 9_000, Transfer(b"\x06" * 20, COIN, b""))
        block = b.commit([other])
        service.note_dropped(pooled, TxError(Reason.NONCE_MISMATCH, "nonce 0, expected 1"))
        assert pooled.id not in admission.checked and not admission.is_parked(pooled.id)
        service.on_committed(block, (), touched=[address_of(key.public_key)])
        # The mempool's update drops a tx whose nonce another tx spent: forgotten too.
        lost = Tx.create(key2, chain_id, 0, 10_000, Transfer(b"\x07" * 20, COIN, b""))
        service.submit(lost.raw)
        winner = Tx.create(key2, chain_id, 0, 9_000, Transfer(b"\x08" * 20, COIN, b""))
        service.on_committed(b.commit([winner]), (), touched=[address_of(key2.public_key)])
        assert lost.id not in service.mempool and lost.id not in admission.checked
    finally:
        chain.close()
