"""Tx admission lives in the node layer (fluxchain/node/admission.py): the node's service
decodes and checks every incoming tx once, and the record of what it checked follows the
tx to its block and is dropped when the block commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.errors import Reason, TxError
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
