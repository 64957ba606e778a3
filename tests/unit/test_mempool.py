"""Mempool admission, replace-by-fee, limits, ordering and cleanup."""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.records import Account
from fluxchain.core.tx import Benchmark, NodeConfirm, Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits

CHAIN = "flux-test"
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(5)]
TO = b"\x99" * 20


def tx(key: SigningKey, nonce: int, fee: int = 1_000) -> Tx:
    return Tx.create(key, CHAIN, nonce, fee, Transfer(TO, COIN))


class Accounts:
    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}
        self.balance = 10 * COIN

    def __call__(self, address: bytes) -> Account:
        return Account(self.balance, self.nonces.get(address, 0))


def reason(pool: Mempool, t: Tx, accounts: Accounts) -> Reason:
    with pytest.raises(TxError) as err:
        pool.add(t, accounts)
    return err.value.reason


def test_admission_rules() -> None:
    pool, accounts = Mempool(MempoolLimits(max_per_sender=3)), Accounts()
    first = tx(KEYS[0], 0)
    pool.add(first, accounts)
    assert reason(pool, first, accounts) is Reason.ALREADY_KNOWN
    accounts.nonces[address_of(KEYS[1].public_key)] = 5
    assert reason(pool, tx(KEYS[1], 4), accounts) is Reason.NONCE_MISMATCH
    assert reason(pool, tx(KEYS[1], 8), accounts) is Reason.NONCE_TOO_FAR
    accounts.balance = 10
    assert reason(pool, tx(KEYS[2], 0), accounts) is Reason.INSUFFICIENT_FUNDS
    assert len(pool) == 1 and pool.size_bytes == len(first.raw)


def test_replace_by_fee() -> None:
    pool, accounts = Mempool(), Accounts()
    pool.add(tx(KEYS[0], 0, fee=1_000), accounts)
    assert reason(pool, tx(KEYS[0], 0, fee=1_050), accounts) is Reason.REPLACEMENT_UNDERPRICED
    better = tx(KEYS[0], 0, fee=1_100)
    replaced = pool.add(better, accounts)
    assert replaced is not None and replaced.fee == 1_000
    assert list(pool.candidates(accounts)) == [better]


def test_full_pool_evicts_only_for_a_better_fee() -> None:
    pool, accounts = Mempool(MempoolLimits(max_txs=2)), Accounts()
    pool.add(tx(KEYS[0], 0, fee=1_000), accounts)
    pool.add(tx(KEYS[1], 0, fee=2_000), accounts)
    assert reason(pool, tx(KEYS[2], 0, fee=1_000), accounts) is Reason.MEMPOOL_FULL
    evicted = pool.add(tx(KEYS[2], 0, fee=3_000), accounts)
    assert evicted is not None and evicted.fee == 1_000
    assert len(pool) == 2


def test_sender_limit() -> None:
    pool, accounts = Mempool(MempoolLimits(max_per_sender=2)), Accounts()
    pool.add(tx(KEYS[0], 0), accounts)
    pool.add(tx(KEYS[0], 1), accounts)
    assert reason(pool, tx(KEYS[0], 2), accounts) in (Reason.NONCE_TOO_FAR, Reason.SENDER_LIMIT)


def test_order_duties_first_then_fee_then_nonce_and_gaps_stop_a_sender() -> None:
    pool, accounts = Mempool(), Accounts()
    low = [tx(KEYS[0], n, fee=1_000) for n in range(3)]
    high = [tx(KEYS[1], n, fee=5_000) for n in range(2)]
    gap = tx(KEYS[2], 1, fee=9_000)  # nonce 0 missing: never a candidate
    duty = Tx.create(
        KEYS[3], CHAIN, 0, 0, NodeConfirm(b"\x01" * 20, Benchmark(1, 1, 1, 1, 1, 1, 1), "v")
    )
    for t in [*low, *high, gap]:
        pool.add(t, accounts)
    pool.add(duty, accounts, duty_node=b"\x01" * 20)
    order = list(pool.candidates(accounts))
    assert order == [duty, *high, *low]


def test_update_drops_spent_nonces() -> None:
    pool, accounts = Mempool(), Accounts()
    txs = [tx(KEYS[0], n) for n in range(4)]
    for t in txs:
        pool.add(t, accounts)
    accounts.nonces[address_of(KEYS[0].public_key)] = 2
    assert pool.update(accounts) == 2
    assert txs[0].id not in pool and txs[2].id in pool
    assert list(pool.candidates(accounts)) == txs[2:]
