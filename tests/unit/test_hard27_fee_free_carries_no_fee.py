"""hard27 1: a fee-free kind (NODE_CONFIRM, UPTIME_ATTEST, EVIDENCE, APP_SECRETS_SEAL,
APP_SECRETS_REJECT) carries no fee. One with a fee was accepted, while the active-set
cap (`nodes.attestation_bytes`) prices an attestation's fee as 0 (one byte): up to 8 bytes an
attestation beyond what the cap assumes. It is refused `fee_not_zero` on its bytes alone,
the same way by the mempool, by a proposer and by a block's check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import MAX_AMOUNT
from fluxchain.core.errors import BlockError, Reason, TxError
from fluxchain.core.execute import decode_block_txs
from fluxchain.core.nodes import attestation_tx_bytes
from fluxchain.core.params import Tier
from fluxchain.core.sealing import SEALED_KEY_SIZE
from fluxchain.core.tx import (
    FEE_FREE,
    MAX_REPORTS,
    AppSecretsReject,
    AppSecretsSeal,
    Evidence,
    NodeConfirm,
    Payload,
    Seal,
    Tx,
    TxKind,
    UptimeAttest,
    UptimeReport,
    check_stateless_rules,
    decode_tx,
)
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.service import NodeService
from tests.support.chain import BENCHMARKS, Builder, node_hot_key, open_chain

NODE_ID = b"\x11" * 20


def fee_free_payload(kind: TxKind, chain_id: str) -> Payload:
    """A payload of fee-free `kind` of a valid shape (its stateful rules aside)."""
    if kind is TxKind.NODE_CONFIRM:
        return NodeConfirm(NODE_ID, BENCHMARKS[Tier.CUMULUS], "0.1.0")
    if kind is TxKind.UPTIME_ATTEST:
        return UptimeAttest(NODE_ID, 3, (UptimeReport(b"\x22" * 20, True, 10),))
    if kind is TxKind.EVIDENCE:
        offender = node_hot_key(1)
        a = Vote.create(offender, chain_id, VoteType.PRECOMMIT, 2, 0, b"\x01" * 32)
        b = Vote.create(offender, chain_id, VoteType.PRECOMMIT, 2, 0, b"\x02" * 32)
        return Evidence(*evidence_pair(a, b))
    if kind is TxKind.APP_SECRETS_SEAL:
        seal = Seal(b"\x22" * 20, b"\x04" * SEALED_KEY_SIZE)
        return AppSecretsSeal("myapp", NODE_ID, b"\x05" * 32, (seal,))
    assert kind is TxKind.APP_SECRETS_REJECT
    return AppSecretsReject("myapp", NODE_ID, b"\x05" * 32)


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Builder]:
    chain = open_chain(tmp_path / "chain")
    yield Builder(chain)
    chain.close()


@pytest.mark.parametrize("kind", sorted(FEE_FREE), ids=lambda kind: kind.name)
def test_a_fee_free_kind_with_a_fee_is_refused_statelessly(b: Builder, kind: TxKind) -> None:
    params = b.chain.params
    key = node_hot_key(0)
    payload = fee_free_payload(kind, params.chain_id)
    check_stateless_rules(Tx.create(key, params.chain_id, 0, 0, payload), params)
    for fee in (1, params.min_fee, MAX_AMOUNT):
        with pytest.raises(TxError) as err:
            decode_tx(Tx.create(key, params.chain_id, 0, fee, payload).raw, params)
        assert err.value.reason is Reason.FEE_NOT_ZERO, err.value


def test_the_longest_attestation_accepted_is_the_one_the_active_cap_prices(b: Builder) -> None:
    """`attestation_tx_bytes` prices the fee field at 0 (one byte): a fee of up to 2**64-1
    would add 8 more bytes to each attestation."""
    params = b.chain.params
    reports = tuple(UptimeReport(bytes([i]) * 20, True, 2**32 - 1) for i in range(MAX_REPORTS))
    payload = UptimeAttest(NODE_ID, 2**64 - 1, reports)
    key = node_hot_key(0)
    free = Tx.create(key, params.chain_id, 2**64 - 1, 0, payload)
    assert len(free.raw) == attestation_tx_bytes(params.chain_id, MAX_REPORTS)
    paid = Tx.create(key, params.chain_id, 2**64 - 1, MAX_AMOUNT, payload)
    assert len(paid.raw) > len(free.raw)
    with pytest.raises(TxError) as err:
        check_stateless_rules(paid, params)
    assert err.value.reason is Reason.FEE_NOT_ZERO


def test_the_mempool_and_a_proposer_refuse_a_fee_free_kind_with_a_fee(b: Builder) -> None:
    service = NodeService(b.chain)
    params = b.chain.params
    hot = node_hot_key(0)
    for kind in sorted(FEE_FREE):
        tx = b.tx(hot, fee_free_payload(kind, params.chain_id), fee=params.min_fee)
        with pytest.raises(TxError) as err:
            service.submit(tx.raw)
        assert err.value.reason is Reason.FEE_NOT_ZERO, kind
        assert tx.id not in service.mempool
        b.block([tx])
        [(rejected, exc)] = b.rejected
        assert rejected.id == tx.id
        assert isinstance(exc, TxError) and exc.reason is Reason.FEE_NOT_ZERO, kind


def test_a_block_that_carries_a_fee_free_kind_with_a_fee_is_invalid(b: Builder) -> None:
    params = b.chain.params
    key = SigningKey.generate()
    tx = Tx.create(
        key, params.chain_id, 0, 1, fee_free_payload(TxKind.NODE_CONFIRM, params.chain_id)
    )
    block, _ = b.block([])
    carrying = Block(block.header, (tx.raw,), block.last_commit)
    with pytest.raises(BlockError) as err:
        decode_block_txs(carrying, params, {}, None)
    assert err.value.reason is Reason.INVALID_TX and "fee_not_zero" in err.value.message
