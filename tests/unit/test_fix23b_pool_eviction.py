"""fix23b: a full pool makes room by count and by bytes, and an eviction never lowers the
fees it holds: the txs pushed out pay less than the newcomer together (red23b 3)."""

from __future__ import annotations

from fluxchain.core.errors import Reason
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.mempool import Mempool
from tests.unit.test_mempool_pool18 import CHAIN, TO, check_counts, key, refusal
from tests.unit.test_red23b_pool_byte_bound import MAX_BYTES, MEMO, full_pool, memo_tx


def needed(pool: Mempool, large: Tx, small: Tx) -> int:
    """How many txs of `small`'s size must leave for `large` to fit the pool's bytes."""
    return -(-(pool.size_bytes + len(large.raw) - MAX_BYTES) // len(small.raw))


def test_a_large_tx_paying_more_than_the_small_ones_together_takes_their_room() -> None:
    pool, accounts, small = full_pool()
    must_go = needed(pool, memo_tx(10_000), small[0])
    assert must_go > 1
    large = memo_tx(10_000, fee=1_000 * must_go + 1)
    first = pool.add(large, accounts)
    evicted = [first, *(t for t, _ in pool.take_evicted())]
    assert len(evicted) == must_go and set(evicted) <= set(small)
    assert pool.size_bytes <= MAX_BYTES and large.id in pool
    check_counts(pool, accounts)


def test_a_large_tx_paying_more_than_each_but_less_than_all_is_refused() -> None:
    pool, accounts, small = full_pool()
    must_go = needed(pool, memo_tx(10_000), small[0])
    before = pool.size_bytes
    large = memo_tx(10_000, fee=1_000 * must_go)  # more than each, not more than all
    assert refusal(pool, large, accounts) is Reason.MEMPOOL_FULL
    assert pool.size_bytes == before and not pool.take_evicted()
    check_counts(pool, accounts)


def test_a_larger_replacement_pays_for_the_room_it_takes() -> None:
    pool, accounts, small = full_pool()
    grown = Tx.create(key(0), CHAIN, 0, 1_100, Transfer(TO, 1, MEMO))
    size = len(small[0].raw)
    # its own place frees its small tx's bytes
    must_go = -(-(pool.size_bytes + len(grown.raw) - size - MAX_BYTES) // size)
    assert must_go > 1
    # The fee it adds to its place (its own 1,000 is there already) pays for the evicted.
    assert refusal(pool, grown, accounts) is Reason.MEMPOOL_FULL
    paying = Tx.create(key(0), CHAIN, 0, 1_000 + 1_000 * must_go + 1, Transfer(TO, 1, MEMO))
    assert pool.add(paying, accounts) == small[0]
    evicted = [t for t, _ in pool.take_evicted()]
    assert len(evicted) == must_go and small[0] not in evicted
    assert pool.size_bytes <= MAX_BYTES and paying.id in pool
    check_counts(pool, accounts)
