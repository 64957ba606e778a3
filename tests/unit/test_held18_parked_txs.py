"""A tx the mempool refused for a reason that can clear is parked (held18, issue 22):
its bytes kept, not held for the tx relay, offered again at most once per committed
height; a tx refused for good is not kept at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _refused(service: NodeService, tx: Tx, reason: Reason) -> None:
    with pytest.raises(TxError) as refusal:
        service.submit(tx.raw, from_peer=True)
    assert refusal.value.reason is reason


def _unfunded() -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(77))


def test_held18_a_tx_refused_for_funds_is_parked_and_pooled_once_they_come(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        relayed: list[bytes] = []
        service = NodeService(chain, relay=relayed.extend)
        b = Builder(chain)
        poor = _unfunded()
        # Half the funding to come: the pool counts what a transfer moves, not just its fee.
        pay = Tx.create(
            poor, chain.params.chain_id, 0, 10_000, Transfer(b"\x03" * 20, COIN // 2, b"")
        )
        _refused(service, pay, Reason.INSUFFICIENT_FUNDS)
        admission = service.admission
        assert admission.is_parked(pay.id) and pay.id in admission.checked
        poor_address = address_of(poor.public_key)
        fund = b.transfer(funded_key(), poor_address)
        # The block that funds it changed its sender's account: offered again, pooled,
        # announced (held18b: on the commit, not on a later announcement).
        service.on_committed(b.commit([fund]), (), touched=[poor_address])
        assert pay.id in service.mempool and not admission.is_parked(pay.id)
        assert relayed == [pay.id]
    finally:
        chain.close()


@pytest.mark.parametrize("reason", [Reason.NONCE_TOO_FAR, Reason.SENDER_LIMIT])
def test_held18_nonce_and_sender_refusals_are_parked(tmp_path: Path, reason: Reason) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool(MempoolLimits(max_per_sender=2)))
        b = Builder(chain)
        key = funded_key()
        first, second, third = (b.transfer(key, b"\x04" * 20) for _ in range(3))
        if reason is Reason.SENDER_LIMIT:
            service.submit(first.raw)
            service.submit(second.raw)
            _refused(service, third, Reason.NONCE_TOO_FAR)  # nonce 2 of 2: too far, too
            assert service.admission.is_parked(third.id)
        else:
            _refused(service, third, reason)
            assert service.admission.is_parked(third.id)
    finally:
        chain.close()


def test_held18_an_evicted_tx_is_not_held_and_fetched_again(tmp_path: Path) -> None:
    """held18c (rev18b 4): a tx evicted for room is not parked (its sender's account may
    never change): forgotten, and handed to the tx relay to fetch again when announced."""
    chain = open_chain(tmp_path / "home")
    try:
        refetched: list[bytes] = []
        service = NodeService(chain, Mempool(MempoolLimits(max_txs=1)), refetch=refetched.extend)
        b = Builder(chain)
        cheap = b.tx(funded_key(), Transfer(b"\x05" * 20, COIN, b""), fee=10_000)
        dear = b.tx(funded_key(VALIDATORS + 1), Transfer(b"\x05" * 20, COIN, b""), 90_000)
        service.submit(cheap.raw)
        service.submit(dear.raw)
        assert cheap.id not in service.mempool and not service.admission.is_parked(cheap.id)
        assert cheap.id not in service.admission.checked
        assert refetched == [cheap.id]
    finally:
        chain.close()


def test_held18_a_spent_nonce_is_not_kept(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        key = funded_key()
        service.on_committed(b.commit([b.transfer(key, b"\x06" * 20)]), ())
        stale = Tx.create(key, chain.params.chain_id, 0, 20_000, Transfer(b"\x07" * 20, COIN, b""))
        _refused(service, stale, Reason.NONCE_MISMATCH)
        assert stale.id not in service.admission.checked
        assert not service.admission.is_parked(stale.id)
    finally:
        chain.close()


def test_held18_parked_txs_are_bounded_apart_from_the_pooled(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, admission=TxAdmission(chain, capacity=4, parked_capacity=2))
        b = Builder(chain)
        pooled = b.transfer(funded_key(), b"\x08" * 20)
        service.submit(pooled.raw)
        poor = _unfunded()
        for nonce in range(5):
            tx = Tx.create(
                poor,
                chain.params.chain_id,
                nonce,
                10_000 + nonce,
                Transfer(b"\x09" * 20, COIN, b""),
            )
            _refused(service, tx, Reason.INSUFFICIENT_FUNDS)
        assert pooled.id in service.admission.checked  # not pushed out by the parked flood
        assert len(service.admission.checked) == 3
    finally:
        chain.close()
