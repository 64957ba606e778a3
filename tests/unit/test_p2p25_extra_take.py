"""p2p25 1: a pool's recheck takes back from the extra-txs store only a duty refused
`duty_pending` (kept `pending`, rev25p 1) at the sender's next free nonce (`ExtraTxs.take`),
and takes it out: no second offer of it, and the store's bounds hold it as any other
entry."""

from __future__ import annotations

from fluxchain.core.crypto import address_of
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx, UptimeAttest, UptimeReport
from fluxchain.node.extra_txs import ExtraTxs
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CHAIN_ID = "flux-test"
KEY = derive_key(INSECURE_TEST_MNEMONIC, account_path(4))
SENDER = address_of(KEY.public_key)


def test_only_a_kept_duty_at_that_nonce_is_taken_and_it_leaves_the_store() -> None:
    paid = Tx.create(KEY, CHAIN_ID, 0, 5_000, Transfer(b"\x01" * 20, COIN, b""))
    duty = Tx.create(
        KEY, CHAIN_ID, 1, 0, UptimeAttest(b"\x02" * 20, 3, (UptimeReport(b"\x03" * 20, True, 10),))
    )
    store = ExtraTxs()
    store.add(paid, "peer-a")
    store.add(duty, "peer-b", pending=True)
    assert store.take(SENDER, 0) is None  # a paid tx stays for rebuilds
    assert store.get(paid.id) == paid.raw
    assert store.take(SENDER, 2) is None  # nothing kept at that nonce
    assert store.take(SENDER, 1) == (duty.raw, "peer-b")
    assert store.get(duty.id) is None and len(store) == 1
    assert store.take(SENDER, 1) is None  # taken once
