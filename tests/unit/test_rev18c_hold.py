"""rev18c: attacks on pool18's affordability and gapped-tx rules that the pool withstood."""

from __future__ import annotations

import contextlib
import random

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.records import Account
from fluxchain.core.tx import FEE_FREE, Benchmark, NodeConfirm, Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits, cost

CHAIN = "flux-test"
BENCH = Benchmark(1, 1, 1, 1, 1, 1, 1)


def key(i: int) -> SigningKey:
    return SigningKey(i.to_bytes(4, "big") + b"\x0c" * 28)


class Accounts:
    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}
        self.balances: dict[bytes, int] = {}

    def __call__(self, address: bytes) -> Account:
        return Account(self.balances.get(address, 30_000), self.nonces.get(address, 0))


def invariants(pool: Mempool, accounts: Accounts, limits: MempoolLimits) -> None:
    """Every count the pool keeps agrees with a walk of it, and every bound holds."""
    gapped = paid_bytes = duty_bytes = duties = 0
    for sender, queue in pool._by_sender.items():
        run = accounts(sender).nonce
        while run in queue:
            run += 1
        waiting = sum(1 for n in queue if n > run)
        gapped += waiting
        assert waiting <= limits.max_gapped_per_sender
        assert pool._run[sender] == run and pool._floor[sender] == accounts(sender).nonce
        assert pool._cost[sender] == sum(cost(t) for t in queue.values())
        assert pool._cost[sender] <= accounts(sender).balance
        for t in queue.values():
            if t.kind in FEE_FREE:
                duties, duty_bytes = duties + 1, duty_bytes + len(t.raw)
            else:
                paid_bytes += len(t.raw)
    assert pool.gapped_count == gapped <= limits.max_gapped
    assert pool.duty_count == duties and pool.size_bytes == paid_bytes + duty_bytes
    assert set(pool._by_sender) == set(pool._run) == set(pool._floor) == set(pool._cost)


def test_rev18c_hold_a_payment_to_a_sender_evicts_none_of_its_txs() -> None:
    """Attack: pay dust to an honest sender to make `settle` re-judge it: nothing leaves."""
    limits = MempoolLimits(max_gapped_per_sender=4)
    pool, accounts = Mempool(limits), Accounts()
    honest = key(1)
    address = address_of(honest.public_key)
    accounts.balances[address] = 6_000
    txs = [Tx.create(honest, CHAIN, n, 1_000, Transfer(b"\x99" * 20, 1)) for n in (0, 1, 2, 4, 5)]
    for t in txs:
        pool.add(t, accounts)
    accounts.balances[address] += 1  # the attacker's payment, in a block
    spent, unpaid = pool.settle(accounts)
    assert spent == [] and unpaid == [] and all(t.id in pool for t in txs)
    invariants(pool, accounts, limits)


def test_rev18c_hold_counts_stay_right_with_duties_replacements_and_rechecks() -> None:
    """Random adds (replacements included), duties, drops, blocks (settle then recheck, as
    `on_committed` runs them): counts and bounds agree with a walk after every step. A
    paid tx taking a pooled duty's nonce is left out: test_rev18c_pool covers it."""
    limits = MempoolLimits(max_txs=30, max_gapped=8, max_gapped_per_sender=3)
    keys = [key(10 + i) for i in range(6)]
    for seed in range(40):
        rng = random.Random(seed)
        pool, accounts = Mempool(limits), Accounts()
        for step in range(300):
            k = rng.choice(keys)
            address = address_of(k.public_key)
            base = accounts.nonces.get(address, 0)
            op = rng.random()
            if op < 0.55:
                nonce = base + rng.randrange(10)
                pending = pool._by_sender.get(address, {}).get(nonce)
                if pending is None or pending.kind not in FEE_FREE:
                    t = Tx.create(
                        k,
                        CHAIN,
                        nonce,
                        rng.randrange(1_000, 5_000),
                        Transfer(b"\x99" * 20, rng.randrange(1, 3_000)),
                    )
                    with contextlib.suppress(TxError):
                        pool.add(t, accounts)
            elif op < 0.65:
                node = bytes([rng.randrange(4)]) * 20
                duty = Tx.create(
                    k, CHAIN, pool.next_nonce(address, base), 0, NodeConfirm(node, BENCH, str(step))
                )
                with contextlib.suppress(TxError):
                    pool.add(duty, accounts, duty_node=node)
            elif op < 0.8 and len(pool):
                pool.remove(rng.choice(sorted(pool._by_id)))
            else:
                accounts.nonces[address] = base + rng.randrange(4)
                accounts.balances[address] = rng.randrange(3_000, 30_000)
                pool.settle(accounts)
                stale = {i for i in sorted(pool._duty_of) if rng.random() < 0.3}

                def check(t: Tx, stale: set[bytes] = stale, pool: Mempool = pool) -> bytes:
                    if t.id in stale:
                        raise TxError(Reason.NOT_OWNER, "stale")
                    return pool._duty_of[t.id][1]

                pool.recheck(accounts, check)
            try:
                invariants(pool, accounts, limits)
            except AssertionError:
                print(f"seed {seed}, step {step}")
                raise
