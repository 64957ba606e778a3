"""A copy of a tx whose nonce its sender's committed account has passed costs no
signature check (issue 24, vstore22).

Past saturation a lagging node verified ~0.12 signatures a confirmed tx a second time
(docs/performance.md, thirteenth and fourteenth passes): copies of txs a block check had
verified, waiting in its inbox until both the block-checked record and the committed-ids
record (COMMITTED_TXS) had moved on. Admission now reads the sender's committed nonce
after the decode and before the signature: a tx below it can never commit, whoever signed
it, so it is refused unverified.
"""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.node.test_conc20_verified_once import count_signature_checks
from tests.support.chain import Builder, NoGossip, funded_key, node_hot_key, owner_key

TXS = 6
TO = address_of(owner_key(6).public_key)


def lagging_service(chain: Chain) -> NodeService:
    """A node whose records of block-checked and committed txs hold one tx each: the
    state of a lagging node whose records moved on before a tx's late copy came."""
    return NodeService(
        chain, admission=TxAdmission(chain, committed_capacity=1, verified_capacity=1)
    )


def committed_transfers(chain: Chain, service: NodeService) -> list[Tx]:
    """TXS transfers of one sender, verified by a block check and committed."""
    builder = Builder(chain)
    sender = funded_key()
    txs = [builder.tx(sender, Transfer(TO, 10**8 + i)) for i in range(TXS)]
    block = builder.commit(txs)
    assert len(block.txs) == TXS
    service.admission.note_verified(txs)  # what the block check hands over
    service.on_committed(block, ())
    return txs


def forged(tx: Tx, chain: Chain) -> Tx:
    """Another body of `tx`: its last signature byte flipped."""
    body = Tx.decode(tx.raw[:-1] + bytes([tx.raw[-1] ^ 1]), chain.params.max_tx_bytes)
    assert body.id != tx.id and (body.sender_address, body.nonce) == (tx.sender_address, tx.nonce)
    return body


def test_a_late_copy_of_a_committed_tx_past_both_records_is_not_verified_again(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = lagging_service(chain)
    txs = committed_transfers(chain, service)
    admission = service.admission
    assert not any(admission.committed_lately(tx.id) for tx in txs[:-1]), "the record moved on"
    checks = count_signature_checks(monkeypatch)
    for tx in txs:  # the copies waiting in a peer's frame
        with pytest.raises(TxError) as refused:
            service.submit(tx.raw, from_peer=True, peer="p")
        assert refused.value.reason is Reason.ALREADY_KNOWN
        assert admission.committed_lately(tx.id), "its next copy: refused after a hash"
    assert checks == [], f"{len(checks)} signatures of committed txs verified again"
    assert admission.signatures_verified == 0
    assert service.tx_status(txs[0].id).state == "confirmed"


def test_a_client_reposting_a_confirmed_tx_is_told_it_is_confirmed(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = lagging_service(chain)
    txs = committed_transfers(chain, service)
    checks = count_signature_checks(monkeypatch)
    with pytest.raises(TxError, match="already confirmed") as refused:
        service.submit(txs[0].raw)
    assert refused.value.reason is Reason.ALREADY_KNOWN
    assert checks == []


def test_a_forged_body_at_a_spent_nonce_is_refused_unverified_and_poisons_nothing(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any body at a spent (sender, nonce) is refused as spent without its signature
    checked: none can commit. It is answered by its own id only; the genuine tx stays
    confirmed, and a forged body at the sender's next nonce is still verified in full."""
    service = lagging_service(chain)
    txs = committed_transfers(chain, service)
    fake = forged(txs[0], chain)
    checks = count_signature_checks(monkeypatch)
    with pytest.raises(TxError) as refused:
        service.submit(fake.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.NONCE_MISMATCH
    assert checks == []
    admission = service.admission
    assert not admission.committed_lately(fake.id), "a forged body is not noted committed"
    assert service.tx_status(fake.id).state == "rejected"
    assert service.tx_status(txs[0].id).state == "confirmed"
    with pytest.raises(TxError) as refused:
        service.submit(txs[0].raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.ALREADY_KNOWN, "the genuine copy: as before"

    builder = Builder(chain)
    sender = funded_key()
    builder.nonces[sender.public_key] = builder.chain_nonce(sender)
    fake_next = forged(builder.tx(sender, Transfer(TO, 1)), chain)  # at the unspent nonce
    with pytest.raises(TxError) as refused:
        service.submit(fake_next.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.BAD_SIGNATURE
    assert checks == [fake_next.id], "an unspent nonce: its signature is checked"


def test_a_nonce_spent_only_by_a_pending_block_is_still_verified(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committed account is read, not a pending block's writes: that block may be
    aborted, and the tx may commit in another."""
    service = NodeService(chain)
    driver = Driver(
        chain, service, node_hot_key(0), None, NoGossip(), checked_txs=service.admission.verified
    )
    builder = Builder(chain)
    sender = funded_key()
    tx = builder.tx(sender, Transfer(TO, 1))
    rival = Tx.create(sender, chain.params.chain_id, tx.nonce, tx.fee, Transfer(TO, 2))
    block, _commit = builder.block([tx])
    assert driver._execute(block.encode(), block.hash()) is not None, "pending"
    checks = count_signature_checks(monkeypatch)
    with pytest.raises(TxError):  # the pool reads the pending writes: spent for now
        service.submit(rival.raw, from_peer=True, peer="p")
    assert checks == [rival.id]
    driver._abort_pending()
    assert service.submit(rival.raw, from_peer=True, peer="p").id == rival.id
