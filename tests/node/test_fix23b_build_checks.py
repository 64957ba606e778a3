"""fix23b: a proposer's build checks again neither the proofs its admission verified nor
the later txs of a sender whose tx the block rejected (red23b 5)."""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.node.test_red23b_build_reverifies_doomed_txs import count_vrf_proofs
from tests.support.chain import Builder, funded_key, node_hot_key, owner_key, proposer_reveal


def test_a_build_skips_the_proofs_of_the_txs_admission_verified(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Builder(chain)
    service = NodeService(chain)
    owner = funded_key()
    registration = b.node_register(owner, node_hot_key(300))
    service.submit(registration.raw)
    proofs = count_vrf_proofs(monkeypatch)
    block, execution, rejected = chain.build_block(
        now_ms=b.time_ms + 1_000,
        round_=0,
        last_commit=b.last_commit,
        candidates=service.candidates(),
        reveal=proposer_reveal(chain, 0, b.node_keys.values()),
        verified=service.admission.verified,
    )
    chain.abort(execution)
    assert registration.raw in block.txs and not rejected
    assert proofs == []
    # A candidate nobody verified has its proofs checked, as an importer's block check.
    b.block([registration])
    assert len(proofs) == 1


def test_a_senders_txs_after_one_the_build_rejects_are_skipped_not_rejected(
    chain: Chain,
) -> None:
    b = Builder(chain)
    poor = owner_key(61)  # 1 FLUX: fees, never a node's collateral
    b.commit([b.transfer(funded_key(), address_of(poor.public_key), COIN)])
    to = address_of(funded_key().public_key)
    head = b.node_register(poor, node_hot_key(301))
    behind = [b.tx(poor, Transfer(to, 1)) for _ in range(3)]
    b.block([head, *behind])
    refused = [(tx.id, exc.reason) for tx, exc in b.rejected if isinstance(exc, TxError)]
    assert refused == [(head.id, Reason.INSUFFICIENT_FUNDS)] and len(b.rejected) == 1


def test_a_rejected_tx_at_a_spent_nonce_holds_back_none_of_its_senders_txs(
    chain: Chain,
) -> None:
    b = Builder(chain)
    sender = funded_key()
    to = address_of(owner_key(62).public_key)
    b.commit([b.transfer(sender, to, COIN)])
    assert b.chain_nonce(sender) == 1
    spent = Tx.create(sender, chain.params.chain_id, 0, 1_000, Transfer(to, 2))  # nonce 0 again
    following = b.tx(sender, Transfer(to, 3))
    block, _ = b.block([spent, following])
    assert [tx.id for tx, _ in b.rejected] == [spent.id]
    assert following.raw in block.txs
