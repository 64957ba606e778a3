"""rev25p 1: in the extra-txs store a duty refused `duty_pending` (kept `pending`) wins its
(sender, nonce) from whatever is kept there: a settled report or a gapped copy the pool
let go would shadow it, and its sender's later signature is the one to take back. A copy
the pool let go never replaces it and is never taken back; the store stays one entry a
(sender, nonce)."""

from __future__ import annotations

from fluxchain.core.crypto import address_of
from fluxchain.core.params import COIN
from fluxchain.core.tx import Benchmark, NodeConfirm, Transfer, Tx, UptimeAttest, UptimeReport
from fluxchain.node.extra_txs import ExtraTxs
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CHAIN_ID = "flux-test"
KEY = derive_key(INSECURE_TEST_MNEMONIC, account_path(5))
SENDER = address_of(KEY.public_key)
BENCH = Benchmark(2, 4, 4_096, 50, 200, 1_000, 100)


def attest(nonce: int, epoch: int) -> Tx:
    payload = UptimeAttest(b"\x02" * 20, epoch, (UptimeReport(b"\x03" * 20, True, 10),))
    return Tx.create(KEY, CHAIN_ID, nonce, 0, payload)


def test_a_pending_duty_takes_its_slot_from_a_copy_let_go_and_keeps_it() -> None:
    stale = attest(1, 3)  # a gapped copy a recheck evicted
    store = ExtraTxs()
    store.add(stale)
    assert store.take(SENDER, 1) is None  # a copy let go is kept for rebuilds only
    resigned = attest(1, 4)
    store.add(resigned, "peer-a", pending=True)
    assert store.get(stale.id) is None and len(store) == 1
    store.add(attest(1, 5))  # a later copy let go does not shadow it
    assert store.get(resigned.id) == resigned.raw and len(store) == 1
    assert store.take(SENDER, 1) == (resigned.raw, "peer-a")
    assert len(store) == 0


def test_a_pending_duty_replaces_its_senders_paid_tx_at_that_nonce() -> None:
    paid = Tx.create(KEY, CHAIN_ID, 0, 5_000, Transfer(b"\x01" * 20, COIN, b""))
    confirm = Tx.create(KEY, CHAIN_ID, 0, 0, NodeConfirm(b"\x04" * 20, BENCH, "1.0.0"))
    store = ExtraTxs()
    store.add(paid, "peer-a")
    store.add(confirm, "peer-b", pending=True)
    assert store.get(paid.id) is None and len(store) == 1
    assert store.take(SENDER, 0) == (confirm.raw, "peer-b")
