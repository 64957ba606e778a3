"""Review red23b of the mempool's byte bound (`MempoolLimits.max_bytes`, 64 MiB by
default): what the pool holds once full, by count or by bytes.

`Mempool._add_paid` makes room by evicting one tx, whatever the sizes: a large tx that
outbids the cheapest small one takes its place and the pool's bytes grow by the
difference, past `max_bytes` and on. A replacement (`_replace`, same sender and nonce,
10 % more fee) checks no byte bound at all. The fee that outbids is absolute, not per
byte, and a paid kind other than a transfer pays `min_fee` whatever its size (an
APP_REGISTER or APP_UPDATE spec of ten components with 16 env entries of 400 bytes each
is a 64,089-byte tx, within the devnet's `max_tx_bytes` of 64 KiB; only a sender's next
nonce is dry-run). So a pool full by count of 50,000 ~150-byte transfers ends as 50,000
txs of ~64 KB, ~3 GB against its 64 MiB bound, each added for one fee more than the one it
pushed out and none of them paying before a block takes it.

Shown here with transfers carrying the largest memo (1 KiB), on a pool of small bounds.
"""

from __future__ import annotations

from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits
from tests.unit.test_mempool_pool18 import CHAIN, TO, Accounts, key, tx

MAX_BYTES = 20_000
MEMO = b"m" * 1024


def memo_tx(i: int, nonce: int = 0, fee: int = 5_000) -> Tx:
    return Tx.create(key(i), CHAIN, nonce, fee, Transfer(TO, 1, MEMO))


def offer(pool: Mempool, t: Tx, accounts: Accounts) -> None:
    """Add `t`; a refusal for room is an answer too (fix23b: the txs an eviction pushes
    out must pay less than `t` together, which one 1 KiB tx outbidding ~8 small ones by
    one fee each does not)."""
    try:
        pool.add(t, accounts)
    except TxError as refused:
        assert refused.reason is Reason.MEMPOOL_FULL, refused


def full_pool() -> tuple[Mempool, Accounts, list[Tx]]:
    """A pool of small transfers, full by bytes to within one small tx."""
    pool, accounts = Mempool(MempoolLimits(max_txs=1_000, max_bytes=MAX_BYTES)), Accounts()
    small: list[Tx] = []
    while pool.size_bytes + len(tx(key(len(small)), 0).raw) <= MAX_BYTES:
        small.append(tx(key(len(small)), 0, fee=1_000))
        pool.add(small[-1], accounts)
    return pool, accounts, small


def test_red23b_large_txs_outbidding_small_ones_keep_the_pool_within_its_bytes() -> None:
    pool, accounts, small = full_pool()
    for i in range(50):
        offer(pool, memo_tx(10_000 + i), accounts)  # each evicts the cheapest: one small tx
    assert pool.size_bytes <= MAX_BYTES, (
        f"the pool holds {pool.size_bytes} bytes of txs against max_bytes {MAX_BYTES}: "
        f"each 1 KiB tx evicted one {len(small[0].raw)}-byte tx and was pooled"
    )


def test_red23b_a_replacement_by_a_larger_tx_keeps_the_pool_within_its_bytes() -> None:
    pool, accounts, _ = full_pool()
    for i in range(50):
        # The sender of a pooled small tx replaces it (same nonce, 10 % more fee) with a
        # 1 KiB one: no byte bound is checked on a replacement.
        offer(pool, Tx.create(key(i), CHAIN, 0, 1_100, Transfer(TO, 1, MEMO)), accounts)
    assert pool.size_bytes <= MAX_BYTES, (
        f"the pool holds {pool.size_bytes} bytes of txs against max_bytes {MAX_BYTES} "
        "after senders replaced their small txs with large ones"
    )
