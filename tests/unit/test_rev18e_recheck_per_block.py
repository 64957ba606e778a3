"""rev18e: the work `Mempool.recheck_paid` does after each committed block."""

from __future__ import annotations

import random

from fluxchain.core.crypto import SigningKey
from fluxchain.core.params import COIN
from fluxchain.core.records import Account
from fluxchain.core.tx import AppExtend, Tx
from fluxchain.node.mempool import DEFAULT_RECHECK_PAID_PER_BLOCK, Mempool

CHAIN = "flux-test"
SEED = 18_005


def test_rev18e_recheck_paid_dry_runs_every_stateful_sender_every_block() -> None:
    """Attack: 3,000 funded accounts each pool one low-fee stateful tx at their next nonce
    (APP_EXTEND here; APP_REGISTER costs a node-index build each, see
    test_rev18e_dryrun_cost) that passes the dry-run and waits while blocks fill with
    higher fees. After every committed block, on every node, `recheck_paid` sorts
    `_stateful` and dry-runs each sender's head, whether or not the block touched
    anything they read: work per block = the pool's stateful senders (up to max_txs,
    50,000) x a handler run, with no budget. The docstring's "never a walk of the pool"
    does not hold for it. What an operator sees: commit-to-next-round latency growing
    with the pool's stateful txs (50,000 x 25 us = 1.25 s a block for APP_EXTEND; with
    register heads at 10,000 nodes, minutes). Fix: a per-block budget, round-robin like
    PARKED_OFFERS (1,000), or recheck only the senders whose txs read what the block
    wrote (their accounts, the apps/nodes their txs name)."""
    rng = random.Random(SEED)
    pool = Mempool()
    for _ in range(3_000):
        key = SigningKey(rng.randbytes(32))
        pool.add(
            Tx.create(key, CHAIN, 0, 1_000, AppExtend("myapp", 10)), lambda a: Account(COIN, 0)
        )
    runs: list[Tx] = []
    # A block that spent no nonce of theirs and changed none of their accounts.
    evicted = pool.recheck_paid(lambda a: Account(COIN, 0), runs.append)
    assert evicted == []
    n = len(runs)
    # pool18c: the bound is the mempool's own budget (256, below PARKED_OFFERS: a
    # register dry-run costs ~200 us, see DEFAULT_RECHECK_PAID_PER_BLOCK)
    assert n <= DEFAULT_RECHECK_PAID_PER_BLOCK, (
        f"one block's recheck dry-ran {n} pooled txs (seed {SEED}); the node's "
        f"per-block budget is {DEFAULT_RECHECK_PAID_PER_BLOCK}"
    )
    # Round-robin: every sender's head is rechecked within ceil(3000 / budget) blocks.
    blocks = -(-3_000 // DEFAULT_RECHECK_PAID_PER_BLOCK)
    for _ in range(blocks - 1):
        pool.recheck_paid(lambda a: Account(COIN, 0), runs.append)
    assert len({t.id for t in runs}) == 3_000, f"seed {SEED}"
