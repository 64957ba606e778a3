"""The extra-txs store keeps one tx a (sender, nonce), as a block takes (rev19d 2): a
variant replaces the kept one only if it outbids it, a sender holds at most
`max_per_sender` nonces, and the nonces a block spent go."""

from __future__ import annotations

from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.extra_txs import ExtraTxs
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CHAIN_ID = "flux-test"
KEY = derive_key(INSECURE_TEST_MNEMONIC, account_path(4))


def _tx(nonce: int, fee: int = 5_000, amount: int = COIN) -> Tx:
    return Tx.create(KEY, CHAIN_ID, nonce, fee, Transfer(b"\x01" * 20, amount, b""))


def test_a_variant_of_a_kept_nonce_replaces_it_only_if_it_outbids_it() -> None:
    store = ExtraTxs()
    first, same_fee, bumped = _tx(0), _tx(0, amount=COIN + 1), _tx(0, fee=6_000)
    for tx in (first, same_fee):
        store.add(tx)
    assert (len(store), store.get(first.id), store.get(same_fee.id)) == (1, first.raw, None)
    store.add(bumped)  # 20 % more than the kept one's fee: the pool's replace-by-fee
    assert (len(store), store.get(first.id), store.get(bumped.id)) == (1, None, bumped.raw)


def test_a_sender_holds_at_most_max_per_sender_nonces() -> None:
    store = ExtraTxs(max_per_sender=3)
    txs = [_tx(n) for n in range(5)]
    for tx in txs:
        store.add(tx)
    assert [store.get(tx.id) is not None for tx in txs] == [True, True, True, False, False]


def test_the_nonces_a_block_spent_go_and_only_its_senders_are_read() -> None:
    store = ExtraTxs()
    txs = [_tx(n) for n in range(4)]
    for tx in txs:
        store.add(tx)
    read: list[bytes] = []

    def nonce_of(sender: bytes) -> int:
        read.append(sender)
        return 2  # the block spent nonces 0 and 1

    sender = txs[0].sender_address
    store.drop_spent([b"\x09" * 20], nonce_of)  # another sender's account changed
    assert (len(store), read) == (4, [])
    store.drop_spent([sender], nonce_of)
    assert [store.get(tx.id) is not None for tx in txs] == [False, False, True, True]
    store.add(txs[0])  # spent nonces stay out only by the caller's window check
    store.drop_spent(None, nonce_of)  # any account may have changed
    assert len(store) == 2


def test_a_marked_duty_is_displaced_only_by_a_marked_one_arriving_after_it() -> None:
    """hard26 2: an entry kept `pending` (a duty refused `duty_pending`, fee-free) holds its
    (sender, nonce) against any unmarked tx there, however much it pays: the unmarked one
    is a copy some pool let go, relayed by anyone (tests/node/test_hard26_*)."""
    store = ExtraTxs()
    duty, again = _tx(0, fee=0), _tx(0, fee=0, amount=COIN + 1)
    paid = _tx(0, fee=1_000_000)
    store.add(duty, pending=True)
    store.add(paid, "a peer")
    assert (len(store), store.get(duty.id), store.get(paid.id)) == (1, duty.raw, None)
    store.add(again, pending=True)  # a marked duty arriving later at that nonce
    assert (len(store), store.get(duty.id)) == (1, None)
    assert store.take(again.sender_address, 0) == (again.raw, None)
