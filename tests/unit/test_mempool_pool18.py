"""pool18: unaffordable and gapped txs cannot hold mempool room for free."""

from __future__ import annotations

import contextlib
import random

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.records import Account
from fluxchain.core.tx import FEE_FREE, Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits, cost

CHAIN = "flux-test"
TO = b"\x99" * 20
F = 50_000  # the attacker's fee: above every honest one


def key(i: int) -> SigningKey:
    return SigningKey(i.to_bytes(4, "big") + b"\x01" * 28)


def tx(k: SigningKey, nonce: int, fee: int = 1_000, amount: int = 1) -> Tx:
    return Tx.create(k, CHAIN, nonce, fee, Transfer(TO, amount))


class Accounts:
    def __init__(self, balance: int = 1_000 * COIN) -> None:
        self.nonces: dict[bytes, int] = {}
        self.balances: dict[bytes, int] = {}
        self.balance = balance

    def __call__(self, address: bytes) -> Account:
        return Account(self.balances.get(address, self.balance), self.nonces.get(address, 0))


def refusal(pool: Mempool, t: Tx, accounts: Accounts) -> Reason:
    with pytest.raises(TxError) as err:
        pool.add(t, accounts)
    return err.value.reason


def check_counts(pool: Mempool, accounts: Accounts) -> None:
    """The pool's own counts agree with a walk of it."""
    gapped = 0
    for sender, queue in pool._by_sender.items():
        run = accounts(sender).nonce
        while run in queue:
            run += 1
        gapped += sum(1 for n in queue if n > run)
        assert pool._cost[sender] == sum(cost(t) for t in queue.values())
        assert pool._cost[sender] <= accounts(sender).balance
    assert pool.gapped_count == gapped
    check_tails(pool)


def check_tails(pool: Mempool) -> None:
    """The index of the senders' tails (fix23b) names each sender's highest nonce, and its
    cheapest live entry is the tail a walk of every sender finds cheapest, ties by id."""
    tails = [queue[max(queue)] for queue in pool._by_sender.values()]
    assert pool._tail == {t.sender_address: t.nonce for t in tails}
    live = {
        entry
        for entry in pool._tails
        if pool._tail.get(entry[2]) == entry[3]
        and pool._by_sender[entry[2]][entry[3]].id == entry[1]
    }
    paid = [t for t in tails if t.kind not in FEE_FREE]
    assert live == {(t.fee, t.id, t.sender_address, t.nonce) for t in paid}
    walked = min(paid, key=lambda t: (t.fee, t.id), default=None)
    assert (min(live)[1] if live else None) == (walked.id if walked else None)
    assert len(pool._tails) <= 2 * len(pool._tail) + 1_024


def test_one_fee_of_balance_pools_one_tx_not_a_thousand() -> None:
    pool, accounts = Mempool(), Accounts(balance=F + 1)
    attacker = key(1)
    pool.add(tx(attacker, 0, fee=F), accounts)
    for n in range(1, 50):
        assert refusal(pool, tx(attacker, n, fee=F), accounts) is Reason.INSUFFICIENT_FUNDS
    assert len(pool) == 1


def test_fees_and_transfer_amounts_count_together() -> None:
    pool, accounts = Mempool(), Accounts(balance=3_000 + 500)
    sender = key(2)
    pool.add(tx(sender, 0, fee=1_000, amount=200), accounts)
    pool.add(tx(sender, 1, fee=1_000, amount=200), accounts)
    assert refusal(pool, tx(sender, 2, fee=1_000, amount=200), accounts) is (
        Reason.INSUFFICIENT_FUNDS
    )
    pool.add(tx(sender, 2, fee=1_000, amount=100), accounts)  # exactly covered
    # A replacement counts in place of the tx it replaces, not on top of it.
    assert refusal(pool, tx(sender, 2, fee=1_100, amount=100), accounts) is (
        Reason.INSUFFICIENT_FUNDS
    )
    pool.add(tx(sender, 1, fee=1_100, amount=100), accounts)  # the same 1,200 as before
    check_counts(pool, accounts)


def test_attack_accounts_cannot_keep_honest_txs_out() -> None:
    # The reviewer's attack, at a tenth of the scale: accounts each funded for a few fees
    # F pool all they can (affordable and behind gaps, at fee F); then honest users paying
    # a tenth of F must still get in.
    limits = MempoolLimits(max_txs=1_000, max_gapped=100, max_gapped_per_sender=4)
    pool, accounts = Mempool(limits), Accounts()
    attackers = [key(100 + i) for i in range(50)]
    for a in attackers:
        accounts.balances[address_of(a.public_key)] = 10 * (F + 1)
        for n in range(1, 1_000):  # nonce 0 never sent: all behind a gap
            try:
                pool.add(tx(a, n, fee=F), accounts)
            except TxError as exc:
                assert exc.reason in (Reason.SENDER_LIMIT, Reason.MEMPOOL_FULL)
                if exc.reason is Reason.SENDER_LIMIT:
                    break
    assert pool.gapped_count == 100 and len(pool) == 100
    honest = [tx(key(1_000 + i), 0, fee=F // 10) for i in range(1_000)]
    for t in honest:
        pool.add(t, accounts)
    assert all(t.id in pool for t in honest) and pool.gapped_count == 0
    check_counts(pool, accounts)


def test_gapped_txs_are_evicted_first_and_never_evict_executable_ones() -> None:
    pool, accounts = Mempool(MempoolLimits(max_txs=4)), Accounts()
    cheap = [tx(key(10 + i), 0, fee=1_000) for i in range(2)]
    rich = key(20)
    gapped = [tx(rich, n, fee=F) for n in (5, 6)]
    for t in [*cheap, *gapped]:
        pool.add(t, accounts)
    assert pool.gapped_count == 2
    # A gapped tx of another sender does not evict an executable one, even paying far
    # more; a gapped one only if it pays more than that...
    assert refusal(pool, tx(key(30), 3, fee=F // 2), accounts) is Reason.MEMPOOL_FULL
    # ...while an executable tx paying the least evicts a gapped one, tail first.
    assert pool.add(tx(key(40), 0, fee=1_000), accounts) == gapped[1]
    assert pool.add(tx(key(41), 0, fee=1_000), accounts) == gapped[0]
    assert refusal(pool, tx(key(42), 0, fee=1_000), accounts) is Reason.MEMPOOL_FULL
    assert pool.gapped_count == 0 and all(t.id in pool for t in cheap)
    check_counts(pool, accounts)


def test_gap_filled_makes_the_waiting_txs_executable() -> None:
    pool, accounts = Mempool(MempoolLimits(max_gapped_per_sender=3)), Accounts()
    sender = key(3)
    for n in (1, 2, 3):
        pool.add(tx(sender, n), accounts)
    assert refusal(pool, tx(sender, 4), accounts) is Reason.SENDER_LIMIT
    pool.add(tx(sender, 0), accounts)
    assert pool.gapped_count == 0
    pool.add(tx(sender, 4), accounts)
    assert [t.nonce for t in pool.candidates(accounts)] == [0, 1, 2, 3, 4]


def test_a_drop_gaps_the_rest_and_only_the_quota_stays() -> None:
    pool, accounts = Mempool(MempoolLimits(max_gapped_per_sender=16)), Accounts()
    sender = key(4)
    txs = [tx(sender, n) for n in range(40)]
    for t in txs:
        pool.add(t, accounts)
    assert pool.gapped_count == 0
    evicted = pool.remove(txs[0].id)  # a proposer dropped it
    assert [t.nonce for t, _ in evicted] == list(range(39, 16, -1))
    assert all(exc.reason is Reason.SENDER_LIMIT for _, exc in evicted)
    assert pool.gapped_count == 16 and len(pool) == 16
    assert list(pool.candidates(accounts)) == []
    check_counts(pool, accounts)


def test_a_spent_balance_evicts_the_tail_it_no_longer_covers() -> None:
    pool, accounts = Mempool(), Accounts(balance=10_010)  # ten fees and amounts of 1
    sender = key(5)
    address = address_of(sender.public_key)
    txs = [tx(sender, n, fee=1_000) for n in range(10)]
    for t in txs:
        pool.add(t, accounts)
    # A block spends nonce 0 and, through a tx from elsewhere, most of the balance.
    accounts.nonces[address], accounts.balances[address] = 1, 4_505
    spent, unpaid = pool.settle(accounts)
    assert spent == [txs[0]]
    assert [t.nonce for t, _ in unpaid] == [9, 8, 7, 6, 5]
    assert all(exc.reason is Reason.INSUFFICIENT_FUNDS for _, exc in unpaid)
    assert [t.nonce for t in pool.candidates(accounts)] == [1, 2, 3, 4]
    check_counts(pool, accounts)


def test_counts_stay_right_over_random_adds_drops_and_blocks() -> None:
    seed = 18_18
    rng = random.Random(seed)
    limits = MempoolLimits(max_txs=60, max_gapped=15, max_gapped_per_sender=4)
    pool, accounts = Mempool(limits), Accounts(balance=40_000)
    keys = [key(200 + i) for i in range(6)]
    for step in range(300):
        k = rng.choice(keys)
        address = address_of(k.public_key)
        base = accounts.nonces.get(address, 0)
        op = rng.random()
        if op < 0.7:
            with contextlib.suppress(TxError):
                pool.add(tx(k, base + rng.randrange(12), fee=rng.randrange(1_000, 5_000)), accounts)
        elif op < 0.85 and len(pool):
            pool.remove(rng.choice(list(pool._by_id)))
        else:
            accounts.nonces[address] = base + rng.randrange(4)
            accounts.balances[address] = rng.randrange(5_000, 40_000)
            pool.settle(accounts)
        try:
            check_counts(pool, accounts)
            assert pool.gapped_count <= limits.max_gapped
        except AssertionError:
            print(f"seed {seed}, step {step}")
            raise
