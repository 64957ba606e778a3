"""Each tx's signature is verified once by a node, past saturation too (issue 24, sig21).

Past saturation (devnet at 10,000 tx/s) a node verified 1.1-1.3 signatures a confirmed
tx. Measured (docs/performance.md, thirteenth pass): most second checks were of txs
admission had verified and then let go: parked txs pushed out of the parked set
(`sender_limit`, `nonce_too_far`) and fetched again when announced, and txs refused
`mempool_full`; the copy's admission and the block that carried one verified them
again. Admission now keeps the txs it verified and does not hold (`_unheld`, bounded by
count and bytes); a copy is admitted for a look-up and the block check takes them as it
takes the admitted ones (`TxAdmission.verified`). A miss only costs a check.
"""

from __future__ import annotations

import contextlib

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import UNHELD_TXS_BYTES, TxAdmission
from fluxchain.node.driver import Driver
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.node.test_conc20_verified_once import count_signature_checks
from tests.node.test_conc20b_bounds import UNFUNDED, small_tx
from tests.node.test_rev20b_verified_bytes import large_tx
from tests.support.chain import Builder, NoGossip, funded_key, node_hot_key, owner_key

POOLED = 4  # the pool's room; the rest of the sender's txs are refused mempool_full
TXS = 10
TO = address_of(owner_key(6).public_key)


def full_pool_validator(chain: Chain) -> tuple[Driver, NodeService]:
    service = NodeService(chain, mempool=Mempool(MempoolLimits(max_txs=POOLED)))
    driver = Driver(
        chain, service, node_hot_key(0), None, NoGossip(), checked_txs=service.admission.verified
    )
    return driver, service


def transfers(builder: Builder) -> list[Tx]:
    sender = funded_key()
    return [builder.tx(sender, Transfer(TO, 10**8 + i)) for i in range(TXS)]


def test_a_tx_let_go_for_a_full_pool_is_not_verified_again_by_the_block_or_its_copy(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, service = full_pool_validator(chain)
    builder = Builder(chain)
    txs = transfers(builder)
    checks = count_signature_checks(monkeypatch)
    for tx in txs[:POOLED]:
        service.submit(tx.raw, from_peer=True, peer="p1")
    for tx in txs[POOLED:]:
        with pytest.raises(TxError) as refused:
            service.submit(tx.raw, from_peer=True, peer="p1")
        assert refused.value.reason is Reason.MEMPOOL_FULL
        assert tx.id not in service.admission.checked, "let go: not held, fetched again"
    assert len(checks) == TXS, "each verified once at admission"
    assert service.admission.signatures_verified == TXS
    checks.clear()

    block, _commit = builder.block(txs)  # a proposer whose pool took them all
    verified_before = chain.signatures_verified
    assert driver._execute(block.encode(), block.hash()) is not None, "the block is valid"
    assert checks == [], f"{len(checks)} signatures the block check verified a second time"
    assert chain.signatures_verified == verified_before
    driver._abort_pending()  # the round aborts: the let-go txs' copies come again

    for tx in txs[POOLED:]:  # the relay fetches them again: still judged by the pool
        with pytest.raises(TxError) as refused:
            service.submit(tx.raw, from_peer=True, peer="p2")
        assert refused.value.reason is Reason.MEMPOOL_FULL
    assert checks == [], "the relay's copies of let-go txs are admitted for a look-up"
    assert service.admission.signatures_verified == TXS
    assert service.admission.block_verified_taken == TXS - POOLED


def test_a_parked_tx_pushed_out_is_not_verified_again_when_fetched_again(chain: Chain) -> None:
    """The largest class measured: a parked tx pushed out of the parked set, whose copy
    the relay fetches when it is announced again."""
    admission = TxAdmission(chain, parked_capacity=2)
    txs = [small_tx(chain, i) for i in range(3)]
    out = []
    for tx in txs:
        admission.admit(tx.raw, keep=False)
        out += admission.park(tx, UNFUNDED, "peer")
    assert out == [txs[0].id], "the oldest pushed out: no longer held, fetched again"
    assert txs[0].id not in admission.checked and txs[0].id in admission.verified
    assert admission.admit(txs[0].raw, keep=False).id == txs[0].id
    assert admission.signatures_verified == 3, "its copy cost a look-up, not a check"
    assert admission.block_verified_taken == 1


def test_another_body_with_a_let_go_txs_sender_and_nonce_is_verified_in_full(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is by the hash of every byte, signature included: a forged tx at a
    let-go tx's nonce is a miss, checked, and its block refused."""
    driver, service = full_pool_validator(chain)
    builder = Builder(chain)
    txs = transfers(builder)
    for tx in txs:
        with contextlib.suppress(TxError):  # the last ones let go for a full pool
            service.submit(tx.raw, from_peer=True, peer="p1")
    let_go = txs[-1]
    forged = Tx.decode(let_go.raw[:-1] + bytes([let_go.raw[-1] ^ 1]), chain.params.max_tx_bytes)
    assert forged.id != let_go.id
    block, _commit = builder.block([*txs[:-1], forged])
    checks = count_signature_checks(monkeypatch)
    assert driver._execute(block.encode(), block.hash()) is None, "a bad signature"
    assert len(checks) == 1


def test_the_unheld_txs_are_bounded_by_count_and_bytes_oldest_out(chain: Chain) -> None:
    """A flood of valid txs the pool refuses (unfunded keys sign junk for free) pushes
    out the oldest, whose blocks then verify them as before: memory never grows."""
    admission = TxAdmission(chain, unheld_capacity=5)
    small = [
        Tx.create(funded_key(), chain.params.chain_id, n, 10**9, Transfer(TO, 1)) for n in range(8)
    ]
    for tx in small:
        admission.admit(tx.raw, keep=False)  # refused by the mempool: never kept
    assert [tx.id in admission.verified for tx in small] == [False] * 3 + [True] * 5
    assert not any(tx.id in admission.checked for tx in small), "not held: fetched again"

    admission = TxAdmission(chain)
    large = [large_tx(chain, nonce) for nonce in range(300)]  # ~62 KB each, ~18 MB in all
    for tx in large:
        admission.admit(tx.raw, keep=False)
    kept = sum(len(tx.raw) for tx in large if tx.id in admission.verified)
    assert UNHELD_TXS_BYTES - len(large[0].raw) < kept <= UNHELD_TXS_BYTES
    assert large[-1].id in admission.verified and large[0].id not in admission.verified


def test_a_committed_tx_leaves_the_unheld_record(chain: Chain) -> None:
    admission = TxAdmission(chain)
    tx = Tx.create(funded_key(), chain.params.chain_id, 0, 10**9, Transfer(TO, 1))
    admission.admit(tx.raw, keep=False)
    assert tx.id in admission.verified
    admission.note_committed([tx.id])
    assert tx.id not in admission.verified
    with pytest.raises(TxError, match="already confirmed"):
        admission.admit(tx.raw)
