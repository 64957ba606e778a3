"""Tx admission lives in the node layer (fluxchain/node/admission.py): the node's service
decodes and checks every incoming tx once, and the record of what it checked follows the
tx to its block and is dropped when the block commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, open_chain


def test_a_submitted_tx_is_checked_once_and_forgotten_when_its_block_commits(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        tx = b.transfer(funded_key(), b"\x01" * 20)
        service.submit(tx.raw)
        assert tx.id in service.admission.checked
        assert service.candidates() == [tx]
        block = b.commit([tx])
        service.on_committed(block, ())
        assert tx.id not in service.admission.checked
        assert service.tx_status(tx.id).state == "confirmed"
    finally:
        chain.close()


def test_the_record_of_checked_txs_is_bounded(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        admission = TxAdmission(chain, capacity=2)
        b = Builder(chain)
        txs = [b.transfer(funded_key(), bytes([i]) * 20) for i in range(1, 4)]
        for tx in txs:
            admission.admit(tx.raw)
        assert list(admission.checked) == [txs[1].id, txs[2].id]  # the oldest left first
    finally:
        chain.close()


def test_a_malformed_tx_is_refused_at_admission_and_not_remembered(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        admission = TxAdmission(chain)
        with pytest.raises(TxError) as refused:
            admission.admit(b"\x93\x01\x02")
        assert refused.value.reason in (Reason.MALFORMED, Reason.BAD_FIELD)
        assert not admission.checked
    finally:
        chain.close()


def test_a_confirmed_tx_submitted_again_is_refused_as_already_known(tmp_path: Path) -> None:
    """The tx index is read only when the pool refuses a tx (issue 24): a committed tx
    sent again (by a wallet that retries, or a peer's late gossip) is still named
    `already_known`, whether or not its block's mempool update has run yet."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        tx = b.transfer(funded_key(), b"\x01" * 20)
        service.submit(tx.raw)
        block = b.commit([tx])
        with pytest.raises(TxError) as before_update:  # still pooled: the pool refuses it
            service.submit(tx.raw)
        assert before_update.value.reason is Reason.ALREADY_KNOWN
        assert before_update.value.message == "this tx is already confirmed"
        service.on_committed(block, ())
        with pytest.raises(TxError) as after_update:  # its nonce is spent now
            service.submit(tx.raw)
        assert after_update.value.reason is Reason.ALREADY_KNOWN
        assert after_update.value.message == "this tx is already confirmed"
    finally:
        chain.close()


def test_an_admitted_tx_costs_no_tx_index_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24's devnet profile: the confirmed-tx lookup was a LevelDB read for every tx
    every node admitted (3-4 % of a node's CPU under load); a tx the pool takes is not
    committed (its nonce is not spent), so the read is skipped for it."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        lookups: list[bytes] = []
        lookup = chain.tx_location

        def counted(tx_id: bytes) -> tuple[int, int] | None:
            lookups.append(tx_id)
            return lookup(tx_id)

        monkeypatch.setattr(chain, "tx_location", counted)
        key = funded_key()
        txs = [b.transfer(key, bytes([i]) * 20) for i in range(1, 4)]
        for tx in txs:
            service.submit(tx.raw)
        assert lookups == []
        assert service.candidates() == txs
        with pytest.raises(TxError) as spent:  # a nonce the pool has: it asks the index
            service.submit(txs[0].raw)
        assert spent.value.reason is Reason.ALREADY_KNOWN
        assert spent.value.message == "this tx is already in the mempool"
        assert lookups == [txs[0].id]
    finally:
        chain.close()


def test_a_forgotten_or_evicted_tx_is_checked_again_when_it_comes_back(tmp_path: Path) -> None:
    """Admission finds a tx met again by its bytes (no hashing before the lookup); what it
    forgets (committed) or evicts (the oldest past its capacity) leaves both of its
    indexes, so the next copy is never trusted: an evicted one is decoded and checked
    again, a committed one refused (wan17)."""
    chain = open_chain(tmp_path / "home")
    try:
        admission = TxAdmission(chain, capacity=2)
        b = Builder(chain)
        txs = [b.transfer(funded_key(), bytes([i]) * 20) for i in range(1, 4)]
        for tx in txs:
            assert admission.admit(tx.raw) == tx
        assert admission.admit(bytes(txs[2].raw)) is admission.checked[txs[2].id]  # a copy
        assert txs[0].id not in admission.checked  # evicted
        assert admission.admit(txs[0].raw) == txs[0]  # decoded again, remembered again
        assert list(admission.checked) == [txs[2].id, txs[0].id]
        admission.note_committed([txs[2].id])
        assert list(admission.checked) == [txs[0].id]
        with pytest.raises(TxError) as committed:
            admission.admit(txs[2].raw)
        assert committed.value.reason is Reason.ALREADY_KNOWN
        assert list(admission.checked) == [txs[0].id]
    finally:
        chain.close()


def test_a_late_copy_of_a_committed_tx_costs_no_decode_or_signature_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22 (wan17): at load a block often carries txs a node gets by gossip or fetch
    only after it committed them (a compact proposal's fill); each such copy was decoded
    and its signature checked before the pool refused it. Now the ids of the txs committed
    lately refuse it first, with the same answer, and a tx never committed is admitted as
    before."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        key = funded_key()
        tx, later = b.transfer(key, b"\x01" * 20), b.transfer(key, b"\x02" * 20)
        block = b.commit([tx])  # the block came complete: this node never admitted `tx`
        service.on_committed(block, ())
        checks: list[bytes] = []
        signature_valid = Tx.signature_valid

        def counted(self: Tx) -> bool:
            checks.append(self.id)
            return signature_valid(self)

        monkeypatch.setattr(Tx, "signature_valid", counted)
        with pytest.raises(TxError) as late:
            service.submit(tx.raw, from_peer=True)
        assert late.value.reason is Reason.ALREADY_KNOWN
        assert late.value.message == "this tx is already confirmed"
        assert checks == []
        assert service.submit(later.raw, from_peer=True) == later
        assert checks == [later.id]
    finally:
        chain.close()


def test_the_record_of_committed_txs_is_bounded(tmp_path: Path) -> None:
    """The oldest committed ids leave first: a copy of one is checked as any tx (and the
    pool or the tx index refuses it), and the record never grows past its bound."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, admission=TxAdmission(chain, committed_capacity=1))
        b = Builder(chain)
        key = funded_key()
        first, second = b.transfer(key, b"\x01" * 20), b.transfer(key, b"\x02" * 20)
        service.on_committed(b.commit([first]), ())
        service.on_committed(b.commit([second]), ())
        for tx in (first, second):
            with pytest.raises(TxError) as refused:
                service.submit(tx.raw, from_peer=True)
            assert refused.value.message == "this tx is already confirmed"
        # the oldest was checked as any tx, but not kept as checked (a late copy must not
        # push pooled txs out: held18 2); noted committed again, its next copy is one hash
        assert first.id not in service.admission.checked
        assert second.id not in service.admission.checked
        assert service.admission.committed_lately(second.id)
    finally:
        chain.close()
