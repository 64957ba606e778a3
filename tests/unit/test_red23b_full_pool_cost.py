"""Review red23b of the mempool's eviction (node/mempool.py): what a tx offered to a full
pool costs before it is refused.

The module says every rule "costs a sender's txs at worst, or the recheck's budget, never
a walk of the pool". Yet when the pool is full and no gapped tx is there to evict, an
executable tx looks for the cheapest sender tail (`_cheapest_tail`): a walk of every
sender's queue, for each tx offered. A pool full of many senders' txs (the flood of issue
24: a pool fills, each sender holding a few) makes each offer cost milliseconds of the
event loop instead of microseconds, and the cheapest offers, refused `mempool_full`, pay
nothing: one account whose balance covers one fee signs distinct txs at its next nonce
(another amount each) as fast as it likes, and every node that receives them, from the
API or a peer's TXS frame, walks its pool for each.
"""

from __future__ import annotations

import time

from fluxchain.core.errors import Reason
from fluxchain.node.mempool import Mempool, MempoolLimits
from tests.unit.test_mempool_pool18 import Accounts, key, refusal, tx

SENDERS = 20_000  # a pool as full as its bound, each sender holding one tx
OFFERS = 200


def test_red23b_an_underpriced_tx_offered_to_a_full_pool_does_not_walk_every_sender() -> None:
    pool, accounts = Mempool(MempoolLimits(max_txs=SENDERS)), Accounts()
    for i in range(SENDERS):
        pool.add(tx(key(i), 0, fee=1_000), accounts)
    attacker = key(SENDERS + 1)
    # Distinct txs at the attacker's next nonce, none paying more than the cheapest pooled.
    offers = [tx(attacker, 0, fee=1_000, amount=1 + i) for i in range(OFFERS)]
    # CPU time, not wall time (tests/unit/test_by_origin.py): a niced run on a loaded box
    # waits for a core. Each refusal is a few dict look-ups and a comparison with the
    # cheapest tail; ~5 us here, not the 12 ms a walk of 20,000 senders costs.
    started = time.process_time()
    reasons = {refusal(pool, offer, accounts) for offer in offers}
    took = time.process_time() - started
    assert reasons == {Reason.MEMPOOL_FULL} and len(pool) == SENDERS
    assert took < 0.25, (
        f"{OFFERS} underpriced txs, refused mempool_full and paying nothing, took "
        f"{took:.2f} s of CPU ({took / OFFERS * 1e3:.1f} ms each): every offer to a full "
        f"pool walks all {SENDERS} senders' queues for the cheapest tail"
    )
