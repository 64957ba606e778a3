"""Review rev23b of the full pool's eviction (fix23b, red23b 1 and 3): well-paying honest
txs that a full pool refuses although cheaper txs of other senders could make room.

1. `Mempool._tail_victims` gives up (None: mempool_full) as soon as the cheapest tail in
   the heap is the newcomer's own sender's, instead of passing over it as it passes over
   a sender already chosen. So a sender whose pooled tail is the pool's cheapest (the
   common case of a user who paid the minimum and now sends more) cannot add its next
   nonce at ANY fee, nor bump a tx to a larger one, while every other sender's tail is
   cheaper than the newcomer. An attacker holding the pool at one fee unit above an
   honest tail's fee shuts that sender out.
2. (below) A gapped newcomer gives up at the first gapped sender's tx, not the cheapest.
"""

from __future__ import annotations

from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits
from tests.unit.test_mempool_pool18 import CHAIN, TO, Accounts, check_counts, key, tx
from tests.unit.test_red23b_pool_byte_bound import MAX_BYTES, MEMO


def verdict(pool: Mempool, t: Tx, accounts: Accounts) -> Reason | None:
    """The pool's refusal of `t`, or None if it pooled it."""
    try:
        pool.add(t, accounts)
    except TxError as refused:
        return refused.reason
    return None


def test_rev23b_a_sender_with_the_cheapest_tail_can_add_its_next_nonce_for_a_high_fee() -> None:
    pool, accounts = Mempool(MempoolLimits(max_txs=10)), Accounts()
    honest = key(0)
    pool.add(tx(honest, 0, fee=1_000), accounts)  # paid the minimum
    for i in range(1, 10):
        pool.add(tx(key(i), 0, fee=1_001), accounts)  # others: one unit more
    # The pool is full by count; the honest sender's next tx outbids every other tail
    # a thousandfold, and one of them leaving makes room.
    assert verdict(pool, tx(honest, 1, fee=1_000_000), accounts) is None, (
        "refused mempool_full: the heap's cheapest tail was the newcomer's own sender's, "
        "and _tail_victims returns None on it instead of passing over it"
    )
    check_counts(pool, accounts)


def test_rev23b_a_fee_bump_to_a_larger_tx_is_not_refused_for_its_own_cheap_tail() -> None:
    pool, accounts = Mempool(MempoolLimits(max_txs=1_000, max_bytes=MAX_BYTES)), Accounts()
    honest = key(0)
    pool.add(tx(honest, 0, fee=1_000), accounts)
    i = 1
    while pool.size_bytes + len(tx(key(i), 0).raw) <= MAX_BYTES:
        pool.add(tx(key(i), 0, fee=1_001), accounts)
        i += 1
    # The stuck tx bumped with a memo (its own place frees its bytes; a few others'
    # tails, paying 1,001 each, cover the rest many times over).
    bumped = Tx.create(honest, CHAIN, 0, 1_000_000, Transfer(TO, 1, MEMO))
    assert verdict(pool, bumped, accounts) is None, (
        "the replacement was refused mempool_full: its sender's own tail (the tx it "
        "replaces) was the cheapest in the heap, and _tail_victims gave up on it"
    )
    assert pool.size_bytes <= MAX_BYTES
    check_counts(pool, accounts)


def test_rev23b_one_well_funded_gapped_tx_does_not_shut_gapped_newcomers_out() -> None:
    """3. A gapped newcomer meets the gapped senders in the order they first gapped
    (`_gapped_victims`) and is refused at the first whose tx pays as much as it, though a
    later one pays less: one gapped tx of a high fee (it never pays: its gap is never
    filled; the balance only has to cover it) placed first keeps every gapped newcomer
    out of a full gapped share, whatever the cheap ones behind it pay."""
    limits = MempoolLimits(max_txs=1_000, max_gapped=3)
    pool, accounts = Mempool(limits), Accounts()
    pool.add(tx(key(1), 1, fee=1_000_000), accounts)  # nonce 0 never comes
    pool.add(tx(key(2), 1, fee=1_000), accounts)
    pool.add(tx(key(3), 1, fee=1_000), accounts)
    assert pool.gapped_count == 3
    assert verdict(pool, tx(key(4), 1, fee=5_000), accounts) is None, (
        "refused mempool_full: the first gapped sender's tx pays more than the newcomer, "
        "and _room_for gives up there instead of evicting a cheaper gapped tx"
    )
    check_counts(pool, accounts)
