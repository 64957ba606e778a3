"""Mempool admission, replace-by-fee, limits, ordering and cleanup."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of, sha256
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.params import COIN
from fluxchain.core.records import Account, NodeStatus
from fluxchain.core.tx import Benchmark, Evidence, NodeConfirm, Transfer, Tx, UptimeAttest
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain, proposer_reveal

CHAIN = "flux-test"
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(5)]
TO = b"\x99" * 20


def tx(key: SigningKey, nonce: int, fee: int = 1_000) -> Tx:
    return Tx.create(key, CHAIN, nonce, fee, Transfer(TO, COIN))


class Accounts:
    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}
        self.balance = 10_000 * COIN

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
    assert len(pool.update(accounts)) == 2
    assert txs[0].id not in pool and txs[2].id in pool
    assert list(pool.candidates(accounts)) == txs[2:]


def test_update_drops_every_spent_nonce_across_gaps_and_jumps() -> None:
    pool, accounts = Mempool(), Accounts()
    sender = address_of(KEYS[0].public_key)
    held = {n: tx(KEYS[0], n) for n in (0, 1, 3, 5, 6, 9)}  # gaps at 2, 4, 7, 8
    for t in held.values():
        pool.add(t, accounts)
    accounts.nonces[sender] = 1
    assert len(pool.update(accounts)) == 1
    accounts.nonces[sender] = 6  # 2 and 4 were spent by txs this pool never held
    assert len(pool.update(accounts)) == 3
    assert [t.nonce for t in pool.candidates(accounts)] == [6]
    accounts.nonces[sender] = 1_000  # far past the queue: every pooled nonce is spent
    assert len(pool.update(accounts)) == 2 and len(pool) == 0
    again = tx(KEYS[0], 1_000)  # the sender comes back after its queue emptied
    pool.add(again, accounts)
    accounts.nonces[sender] = 1_001
    assert len(pool.update(accounts)) == 1 and len(pool) == 0


class _Queue(dict[int, Tx]):
    """A sender's queue that counts the walks over all of it."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        _Queue.walks += 1
        return super().__iter__()

    def items(self):  # type: ignore[no-untyped-def]
        _Queue.walks += 1
        return super().items()


def test_update_after_a_block_looks_at_the_spent_nonces_not_the_whole_queue() -> None:
    # Per block, the work is the block's nonces: a sender with a long queue is not walked
    # again at every block (issue 24, docs/performance.md "Devnet, sixth pass").
    pool, accounts = Mempool(), Accounts()
    sender = address_of(KEYS[0].public_key)
    for n in range(200):
        pool.add(tx(KEYS[0], n), accounts)
    accounts.nonces[sender] = 10
    assert len(pool.update(accounts)) == 10
    pool._by_sender[sender] = _Queue(pool._by_sender[sender])
    _Queue.walks = 0
    accounts.nonces[sender] = 25
    assert len(pool.update(accounts)) == 15
    assert _Queue.walks == 0
    assert [t.nonce for t in pool.candidates(accounts)] == list(range(25, 200))


# -- fee-free duties (issue 17 #3) ---------------------------------------------------------

BENCH = Benchmark(4, 8, 8_192, 100, 100, 100, 100)


def duty(key: SigningKey, nonce: int, node_id: bytes) -> Tx:
    return Tx.create(key, CHAIN, nonce, 0, NodeConfirm(node_id, BENCH, "v"))


def test_duties_and_paid_txs_have_separate_quotas() -> None:
    """A pool full of paid txs still takes a node's duty, and a full duty quota neither
    takes more duties nor makes room for them by evicting paid txs (nor the reverse)."""
    pool, accounts = Mempool(MempoolLimits(max_txs=3, max_duties=1)), Accounts()
    for i in range(3):
        pool.add(tx(KEYS[i], 0, fee=1_000), accounts)
    assert reason(pool, tx(KEYS[3], 0, fee=1_000), accounts) is Reason.MEMPOOL_FULL
    first = duty(KEYS[3], 0, b"\x01" * 20)
    pool.add(first, accounts, duty_node=b"\x01" * 20)
    with pytest.raises(TxError) as err:
        pool.add(duty(KEYS[4], 0, b"\x02" * 20), accounts, duty_node=b"\x02" * 20)
    assert err.value.reason is Reason.MEMPOOL_FULL
    evicted = pool.add(tx(KEYS[4], 0, fee=5_000), accounts)  # outbids a paid tx, not the duty
    assert evicted is not None and evicted.fee == 1_000 and first.id in pool
    assert len(pool) == 4 and pool.duty_count == 1


def test_second_duty_for_a_node_is_refused() -> None:
    """One pending duty per (kind, node); and a duty takes its sender's next nonce, so no
    gap can park it in the pool."""
    pool, accounts = Mempool(), Accounts()
    node = b"\x01" * 20
    pool.add(duty(KEYS[0], 0, node), accounts, duty_node=node)
    with pytest.raises(TxError) as err:
        pool.add(duty(KEYS[0], 1, node), accounts, duty_node=node)
    assert err.value.reason is Reason.DUTY_PENDING
    attest = Tx.create(KEYS[0], CHAIN, 1, 0, UptimeAttest(node, 0, ()))
    pool.add(attest, accounts, duty_node=node)  # another kind of duty of the same node
    with pytest.raises(TxError) as err:
        pool.add(duty(KEYS[1], 3, b"\x02" * 20), accounts, duty_node=b"\x02" * 20)
    assert err.value.reason is Reason.NONCE_MISMATCH
    with pytest.raises(ValueError):
        pool.add(duty(KEYS[2], 0, b"\x03" * 20), accounts)  # the caller must check it first


def _service(path: Path, limits: MempoolLimits | None = None) -> tuple[Chain, NodeService]:
    chain = open_chain(path)
    return chain, NodeService(chain, Mempool(limits))


def test_free_confirm_flood_does_not_starve_a_real_confirm(tmp_path: Path) -> None:
    """2,000 zero-fee confirms from throwaway keys, for a node that does not exist or for
    a real node they do not hold the key of, are refused at admission against committed
    state; the real node's confirm is admitted and lands in the next block."""
    chain, service = _service(tmp_path / "home", MempoolLimits(max_txs=2_000, max_duties=2_000))
    try:
        b = Builder(chain)
        owner, hot = funded_key(), SigningKey(b"\x51" * 32)
        b.commit([b.node_register(owner, hot)])
        node = get_node_by_key(chain.state, hot.public_key)
        assert node is not None and node.status is NodeStatus.REGISTERED
        refused: Counter[Reason] = Counter()
        for i in range(2_000):
            junk_key = SigningKey((i + 1).to_bytes(32, "big"))
            target = node.node_id if i % 2 else sha256(i.to_bytes(4, "big"))[:20]
            junk = Tx.create(junk_key, chain.params.chain_id, 0, 0, NodeConfirm(target, BENCH, "x"))
            with pytest.raises(TxError) as err:
                service.submit(junk.raw, from_peer=True)
            refused[err.value.reason] += 1
        assert refused == {Reason.UNKNOWN_NODE: 1_000, Reason.NOT_OWNER: 1_000}
        assert len(service.mempool) == 0
        real = b.tx(hot, NodeConfirm(node.node_id, BENCH, "0.1.0"), fee=0)
        service.submit(real.raw)
        block = b.commit(service.candidates())
        service.on_committed(block, ())
        assert block.txs == (real.raw,)
        assert service.tx_status(real.id).state == "confirmed"
        confirmed = get_node(chain.state, node.node_id)
        assert confirmed is not None and confirmed.status is NodeStatus.CONFIRMED
    finally:
        chain.close()


def test_proposer_and_non_proposers_evict_stale_duties(tmp_path: Path) -> None:
    """A confirm pending on two nodes goes stale when the owner rotates the node key in a
    block that does not include it: the proposer and the node that only imported the
    block both evict it, and say why."""
    chain_a, proposer = _service(tmp_path / "a")
    chain_b, follower = _service(tmp_path / "b")
    try:
        b = Builder(chain_a)
        owner, hot = funded_key(), SigningKey(b"\x52" * 32)

        def commit(txs: list[Tx]) -> None:
            block = b.commit(txs)
            assert b.last_commit is not None
            chain_b.import_block(block, b.last_commit)
            proposer.on_committed(block, ())
            follower.on_committed(block, ())

        commit([b.node_register(owner, hot)])
        node = get_node_by_key(chain_a.state, hot.public_key)
        assert node is not None
        pending = b.tx(hot, NodeConfirm(node.node_id, BENCH, "0.1.0"), fee=0)
        for service in (proposer, follower):
            service.submit(pending.raw, from_peer=service is follower)
            assert pending.id in service.mempool
        commit([b.node_update(owner, node.node_id, SigningKey(b"\x53" * 32))])
        for service in (proposer, follower):
            assert pending.id not in service.mempool and service.mempool.duty_count == 0
            status = service.tx_status(pending.id)
            # Every node drops it from the same committed state: `rejected`, not `evicted`
            # (which says a peer's pool may still commit it).
            assert (status.state, status.reason) == ("rejected", "not_owner")
    finally:
        chain_a.close()
        chain_b.close()


def test_junk_evidence_is_refused_at_admission(tmp_path: Path) -> None:
    """Evidence is pooled only if its signer was a validator at the votes' height and the
    offence is unpunished; one pending per offender (another offence of the same height
    waits); evidence of the height being decided is admitted (it can go in the next
    block)."""
    chain, service = _service(tmp_path / "home")
    try:
        b = Builder(chain)
        b.commit()
        b.commit()
        chain_id, reporter = chain.params.chain_id, funded_key()

        def evidence(key: SigningKey, height: int, round_: int = 0) -> Tx:
            a = Vote.create(key, chain_id, VoteType.PREVOTE, height, round_, b"\x01" * 32)
            c = Vote.create(key, chain_id, VoteType.PREVOTE, height, round_, b"\x02" * 32)
            return b.tx(reporter, Evidence(*evidence_pair(a, c)), fee=0)

        with pytest.raises(TxError) as err:
            service.submit(evidence(SigningKey(b"\x54" * 32), 2).raw)
        assert err.value.reason is Reason.UNKNOWN_VALIDATOR
        b.nonces.clear()
        live = evidence(node_hot_key(1), chain.height + 1)  # the height being decided
        service.submit(live.raw)
        with pytest.raises(TxError) as err:
            service.submit(evidence(node_hot_key(1), chain.height + 1, round_=1).raw)
        assert err.value.reason is Reason.DUTY_PENDING
        b.nonces.clear()
        # the block of the decided height cannot hold it; the proposer keeps it for the next
        block, execution, dropped = chain.build_block(
            now_ms=b.time_ms + 1,
            round_=0,
            last_commit=b.last_commit,
            candidates=service.candidates(),
            reveal=proposer_reveal(chain, 0),
        )
        chain.abort(execution)
        assert not block.txs and [tx for tx, _ in dropped] == [live]
        for tx, exc in dropped:
            assert isinstance(exc, TxError)
            service.note_dropped(tx, exc)
        assert live.id in service.mempool
        service.on_committed(b.commit(), ())
        assert live.id in service.mempool
        block = b.commit(service.candidates())
        service.on_committed(block, ())
        assert block.txs == (live.raw,)
        with pytest.raises(TxError) as err:
            service.submit(b.tx(reporter, live.payload, fee=0).raw)
        assert err.value.reason is Reason.DUPLICATE_EVIDENCE
    finally:
        chain.close()


def test_update_leaves_no_spent_nonce_in_the_pool_over_many_blocks() -> None:
    # Random blocks spending some of each sender's nonces, txs arriving in any order, queues
    # emptied and refilled: after each update no pooled nonce is spent, and none unspent
    # has gone.
    seed = 24_16
    rng = random.Random(seed)
    # Room for every gapped tx: this test is about spent nonces, not the gapped quota.
    pool, accounts = Mempool(MempoolLimits(max_gapped_per_sender=1_000)), Accounts()
    keys = KEYS[:3]
    signed = {(k, n): tx(KEYS[k], n) for k in range(3) for n in range(120)}
    for _ in range(40):
        for k in range(3):
            committed = accounts.nonces.get(address_of(keys[k].public_key), 0)
            for n in rng.sample(range(committed, min(committed + 30, 120)), 10):
                if signed[k, n].id not in pool:
                    pool.add(signed[k, n], accounts)
        pooled = {t.id: t for t in pool._by_id.values()}
        for k in range(3):
            address = address_of(keys[k].public_key)
            accounts.nonces[address] = min(accounts.nonces.get(address, 0) + rng.randrange(12), 110)
        pool.update(accounts)
        for t in pooled.values():
            spent = t.nonce < accounts.nonces.get(t.sender_address, 0)
            assert (t.id in pool) is not spent, f"seed {seed}: nonce {t.nonce}"
