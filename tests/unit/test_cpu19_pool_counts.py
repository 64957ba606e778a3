"""cpu19: the pool's running counts (bytes, duties, stateful senders, runs, gapped txs,
costs) agree with a walk of the pool whatever mix of kinds comes and goes, so a block's
settle taking a sender's spent txs out in one pass, and an add leaving the gapped count
alone when a tx extends its sender's run, keep every quota the pool enforces."""

from __future__ import annotations

import contextlib
import random

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import TxError
from fluxchain.core.records import Account
from fluxchain.core.tx import FEE_FREE, AppExtend, Benchmark, NodeConfirm, Transfer, Tx, TxKind
from fluxchain.node.mempool import Mempool, MempoolLimits, cost

CHAIN = "flux-test"
TO = b"\x99" * 20
BENCH = Benchmark(1, 1, 1, 1, 1, 1, 1)


def key(i: int) -> SigningKey:
    return SigningKey(i.to_bytes(4, "big") + b"\x02" * 28)


class Accounts:
    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}
        self.balances: dict[bytes, int] = {}

    def __call__(self, address: bytes) -> Account:
        return Account(self.balances.get(address, 60_000), self.nonces.get(address, 0))


def random_tx(rng: random.Random, k: SigningKey, nonce: int) -> tuple[Tx, bytes | None]:
    """A transfer, a paid app extension, or a node's duty (with the node it is of)."""
    pick = rng.random()
    if pick < 0.6:
        payload = Transfer(TO, rng.randrange(1, 3_000))
        return Tx.create(k, CHAIN, nonce, rng.randrange(1_000, 5_000), payload), None
    if pick < 0.85:
        extend = AppExtend("app" + str(rng.randrange(3)), rng.randrange(1, 100))
        return Tx.create(k, CHAIN, nonce, rng.randrange(1_000, 5_000), extend), None
    node = bytes([rng.randrange(8)]) * 20
    return Tx.create(k, CHAIN, nonce, 0, NodeConfirm(node, BENCH, "v")), node


def check_counts(pool: Mempool, accounts: Accounts) -> None:
    """Every count the pool keeps as it goes, against a walk of it."""
    paid_bytes = duty_bytes = gapped_total = 0
    stateful: dict[bytes, int] = {}
    assert len(pool._by_id) == sum(len(q) for q in pool._by_sender.values())
    for sender, queue in pool._by_sender.items():
        assert queue, "an empty queue is forgotten"
        run = accounts(sender).nonce
        assert pool._floor[sender] == run
        while run in queue:
            run += 1
        assert pool._run[sender] == run
        gapped = sum(1 for n in queue if n > run)
        assert pool._gapped.get(sender, 0) == gapped
        gapped_total += gapped
        assert pool._cost[sender] == sum(cost(t) for t in queue.values())
        for tx in queue.values():
            assert pool._by_id[tx.id] is tx
            if tx.kind in FEE_FREE:
                duty_bytes += len(tx.raw)
            else:
                paid_bytes += len(tx.raw)
                if tx.kind is not TxKind.TRANSFER:
                    stateful[sender] = stateful.get(sender, 0) + 1
    assert pool.gapped_count == gapped_total
    assert set(pool._floor) == set(pool._run) == set(pool._cost) == set(pool._by_sender)
    assert pool.size_bytes == paid_bytes + duty_bytes
    assert pool._duty_bytes == duty_bytes
    assert pool._stateful == stateful
    assert sorted(pool._duty_of) == sorted(t.id for t in pool._duties.values())


def test_counts_agree_with_a_walk_over_random_kinds_adds_drops_and_blocks() -> None:
    seed = 19_19
    rng = random.Random(seed)
    limits = MempoolLimits(max_txs=50, max_gapped=12, max_gapped_per_sender=4, max_duties=6)
    pool, accounts = Mempool(limits), Accounts()
    keys = [key(300 + i) for i in range(6)]
    for step in range(1_500):
        k = rng.choice(keys)
        address = address_of(k.public_key)
        base = accounts.nonces.get(address, 0)
        op = rng.random()
        if op < 0.7:
            tx, node = random_tx(rng, k, base + rng.randrange(10))
            with contextlib.suppress(TxError):
                pool.add(tx, accounts, node)
            pool.take_evicted()
        elif op < 0.8 and len(pool):
            pool.remove(rng.choice(sorted(pool._by_id)))
        else:
            # A block: a few senders' nonces spent, sometimes past what the pool held, and
            # their balances changed.
            for k in rng.sample(keys, rng.randrange(1, 4)):
                address = address_of(k.public_key)
                accounts.nonces[address] = accounts.nonces.get(address, 0) + rng.randrange(6)
                accounts.balances[address] = rng.randrange(5_000, 60_000)
            pool.settle(accounts)
        try:
            check_counts(pool, accounts)
        except AssertionError:
            print(f"seed {seed}, step {step}")
            raise
