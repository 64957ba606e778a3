"""rev18e: attacks on the paid dry-run, the paid recheck and affordability that held."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from fluxchain.core.accounts import get_account
from fluxchain.core.apps import get_app
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.placement.ranking import build_node_index, node_index
from fluxchain.core.records import Account
from fluxchain.core.tx import (
    FEE_FREE,
    AppCancel,
    AppExtend,
    Benchmark,
    NodeConfirm,
    Transfer,
    Tx,
    TxKind,
)
from fluxchain.core.votes import sign_commit
from fluxchain.node.mempool import Mempool, MempoolLimits, cost
from fluxchain.node.service import NodeService
from tests.support.chain import (
    Builder,
    app_register,
    app_spec,
    funded_key,
    open_chain,
    proposer_reveal,
)
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CHAIN = "flux-test"
SEED = 18_005


def test_dry_runs_leave_the_state_and_every_block_as_without_them(tmp_path: Path) -> None:
    """Dry-runs of writing kinds (register, extend, cancel), between blocks and while a
    proposal's writes are pending in the state and tree, change no record, no pending
    write, no derived index, and no block hash or state root: a twin chain that never
    dry-runs imports the same blocks to the same heads."""
    chain = open_chain(tmp_path / "a")
    twin = open_chain(tmp_path / "b")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        owner, other = funded_key(), funded_key(5)
        probes_of = {
            "register": lambda: app_register(b, other, app_spec(other, "probe", expire=1_000)),
        }

        def commit(txs: list[Tx], probe: list[Tx]) -> None:
            b.time_ms += 1_000
            block, execution, rejected = chain.build_block(
                now_ms=b.time_ms,
                round_=0,
                last_commit=b.last_commit,
                candidates=txs,
                reveal=proposer_reveal(chain, 0, b.node_keys.values()),
            )
            assert not rejected
            pending = chain.state.has_pending()
            for tx in probe:  # while the proposal's writes are pending
                with contextlib.suppress(TxError):
                    service.admission.check_paid(tx)
            assert chain.state.has_pending() == pending
            signed = sign_commit(b.signers, b.chain_id, block.height, 0, block.hash())
            chain.commit_block(block, signed, execution)
            b.last_commit = signed
            twin.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), signed)
            assert chain.head_hash == twin.head_hash
            assert chain.tree.root == twin.tree.root

        register = app_register(b, owner, app_spec(owner, "myapp", expire=1_000))
        commit([register], [])
        index = node_index(chain.state)
        before = index.contents()
        balance = get_account(chain.state, address_of(other.public_key))
        probes = [
            probes_of["register"](),
            Tx.create(owner, b.chain_id, b.next_nonce(owner), 1_000, AppExtend("myapp", 50)),
            Tx.create(owner, b.chain_id, b.next_nonce(owner), 1_000, AppCancel("myapp")),
        ]
        for tx in probes:  # between blocks
            service.admission.check_paid(tx)
        assert get_app(chain.state, "probe") is None
        assert get_account(chain.state, address_of(other.public_key)) == balance
        assert not chain.state.has_pending()
        assert node_index(chain.state) is index and index.contents() == before
        assert index.contents() == build_node_index(chain.state).contents()
        commit([b.transfer(funded_key(6), b"\x04" * 20, COIN)], probes)
        commit([probes[1]], probes)  # the extend dry-run as it really applies
        assert get_app(chain.state, "myapp") is not None
    finally:
        chain.close()
        twin.close()


def test_recheck_paid_evicts_a_head_the_block_made_invalid_and_gaps_the_rest(
    tmp_path: Path,
) -> None:
    """A pooled APP_EXTEND whose app a block cancels (the owner's own cancel, mined
    through another node) is evicted with the executor's reason on this non-proposer,
    and the txs behind it wait behind the gap instead of being proposed."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        owner = funded_key()
        register = app_register(b, owner, app_spec(owner, "myapp", expire=1_000))
        service.on_committed(b.commit([register]), ())
        nonce = b.next_nonce(owner)
        cancel = Tx.create(owner, b.chain_id, nonce, 5_000, AppCancel("myapp"))
        extend = Tx.create(owner, b.chain_id, nonce + 1, 1_000, AppExtend("myapp", 10))
        after = Tx.create(owner, b.chain_id, nonce + 2, 1_000, Transfer(b"\x03" * 20, 1))
        with contextlib.suppress(TxError):
            service.submit(extend.raw, from_peer=True, peer="p1")  # gapped: not dry-run
        service.submit(after.raw, from_peer=True, peer="p1")
        assert extend.id in service.mempool
        b.nonces[owner.public_key] = nonce + 1
        service.on_committed(b.commit([cancel]), ())
        assert extend.id not in service.mempool
        assert service.tx_status(extend.id).reason == str(Reason.UNKNOWN_APP)
        assert [t.id for t in service.candidates()] == []
    finally:
        chain.close()


def _consistent(pool: Mempool) -> None:
    """The pool's counters equal a recount from its queues (no ghost entry)."""
    queues = pool._by_sender
    assert set(pool._by_id) == {t.id for q in queues.values() for t in q.values()}
    assert set(pool._floor) == set(queues) == set(pool._run) == set(pool._cost)
    paid_gapped = 0
    for sender, queue in queues.items():
        assert queue
        assert pool._cost[sender] == sum(cost(t) for t in queue.values())
        end = pool._floor[sender]
        while end in queue:
            end += 1
        assert pool._run[sender] == end
        gapped = [n for n in queue if n > end]
        assert pool._gapped.get(sender, 0) == len(gapped)
        paid_gapped += sum(1 for n in gapped if queue[n].kind not in FEE_FREE)
        stateful = [t for t in queue.values() if t.kind is not TxKind.TRANSFER]
        assert pool._stateful.get(sender, 0) == sum(1 for t in stateful if t.kind not in FEE_FREE)
    assert pool.gapped_count == sum(pool._gapped.values())
    assert paid_gapped <= pool.limits.max_gapped
    assert all(pool._by_id[i].kind in FEE_FREE for i in pool._duty_of)
    assert len(pool._duties) == len(pool._duty_of)
    paid_bytes = sum(len(t.raw) for t in pool._by_id.values() if t.id not in pool._duty_of)
    assert pool.size_bytes - sum(len(pool._by_id[i].raw) for i in pool._duty_of) == paid_bytes


BENCH = Benchmark(1, 1, 1, 1, 1, 1, 1)


class _Fuzz:
    """One seeded run of random pool operations over four senders."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys = [SigningKey(self.rng.randbytes(32)) for _ in range(4)]
        self.accounts = {
            address_of(k.public_key): [self.rng.randrange(20_000), 0] for k in self.keys
        }
        self.pool = Mempool(
            MempoolLimits(
                max_txs=12, max_per_sender=8, max_duties=4, max_gapped_per_sender=3, max_gapped=5
            )
        )

    def look(self, address: bytes) -> Account:
        return Account(*self.accounts[address])

    def check(self, tx: Tx) -> None:
        if self.rng.random() < 0.3:
            raise TxError(Reason.UNKNOWN_APP, "gone")

    def block(self) -> None:
        """A committed block: nonces and balances move; the pool settles and rechecks."""
        for account in self.accounts.values():
            account[1] += self.rng.choice([0, 0, 1, 2])
            account[0] = max(0, account[0] + self.rng.randrange(-5_000, 5_000))
        self.pool.settle(self.look)
        self.pool.recheck_paid(self.look, self.check)
        self.pool.recheck(self.look, lambda tx: tx.payload.node_id)

    def step(self) -> None:
        rng, pool = self.rng, self.pool
        key = rng.choice(self.keys)
        address = address_of(key.public_key)
        nonce = self.accounts[address][1] + rng.randrange(6)
        op = rng.random()
        with contextlib.suppress(TxError):
            if op < 0.45:
                amount = rng.choice([0, 1_000, 5_000])
                fee = rng.choice([100, 200, 500, 1_000, 3_000])
                pool.add(
                    Tx.create(key, CHAIN, nonce, fee, Transfer(b"\x09" * 20, amount)), self.look
                )
            elif op < 0.6:
                cancel = AppCancel(f"a{rng.randrange(9)}")
                pool.add(
                    Tx.create(key, CHAIN, nonce, rng.choice([100, 500, 2_000]), cancel), self.look
                )
            elif op < 0.7:
                free = pool.next_nonce(address, self.accounts[address][1])
                node = bytes([rng.randrange(3)]) * 20
                confirm = NodeConfirm(node, BENCH, f"v{rng.randrange(99)}")
                pool.add(Tx.create(key, CHAIN, free, 0, confirm), self.look, duty_node=node)
            elif op < 0.8:
                self.block()
            elif op < 0.9 and len(pool):
                pool.remove(rng.choice(sorted(pool._by_id)))
        pool.take_evicted()


def test_counts_floors_and_runs_stay_true_through_replacements_evictions_and_blocks() -> None:
    """Seeded random adds (transfers, stateful kinds, duties, replace-by-fee including a
    duty's nonce), tail evictions for funds, blocks (nonces and balances move,
    `settle`, `recheck_paid`, `recheck`), proposer drops: after every step the pool's
    counters equal a recount, so no sequence leaves a ghost entry."""
    for seed in range(SEED, SEED + 30):
        fuzz = _Fuzz(seed)
        for step in range(250):
            fuzz.step()
            try:
                _consistent(fuzz.pool)
            except AssertionError:
                print(f"seed {seed} step {step}")
                raise


def test_a_burst_arriving_tail_first_with_a_stateful_head_is_all_pooled(tmp_path: Path) -> None:
    """A sender's burst (an APP_EXTEND at its next nonce, then transfers) arrives in
    reverse past the gapped quota: the parked ones are offered as the gap fills, in
    nonce order, with no recursion left half-done; nothing is lost or pooled twice."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool(MempoolLimits(max_gapped_per_sender=2)))
        b = Builder(chain)
        owner = derive_key(INSECURE_TEST_MNEMONIC, account_path(185))
        payer = funded_key()
        service.on_committed(
            b.commit([b.transfer(payer, address_of(owner.public_key), 10_000 * COIN)]), ()
        )
        service.on_committed(
            b.commit([app_register(b, owner, app_spec(owner, "myapp", expire=1_000))]), ()
        )
        burst = [b.tx(owner, AppExtend("myapp", 10))]
        burst += [b.transfer(owner, b"\x05" * 20, COIN) for _ in range(8)]
        for tx in reversed(burst):
            with contextlib.suppress(TxError):
                service.submit(tx.raw, from_peer=True, peer="p1")
        assert all(tx.id in service.mempool for tx in burst)
        assert [t.id for t in service.candidates()] == [t.id for t in burst]
        assert not any(service.admission.is_parked(t.id) for t in burst)
    finally:
        chain.close()
