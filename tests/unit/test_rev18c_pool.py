"""rev18c: attacks on pool18's affordability and gapped-tx rules that still work."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.records import Account
from fluxchain.core.tx import AppCancel, Benchmark, NodeConfirm, Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, open_chain
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CHAIN = "flux-test"
NODE = b"\x01" * 20
BENCH = Benchmark(1, 1, 1, 1, 1, 1, 1)


def test_rev18c_a_paid_tx_replacing_a_duty_leaves_no_ghost_duty() -> None:
    """Attack/accident: a node key's paid tx takes the nonce of its pooled duty (a wallet
    that read the next nonce before the agent's confirm came): `_replace` (pool18) swaps
    the txs but leaves the duty in `_duties`/`_duty_of` and its bytes in `_bytes`. The
    user sees every later duty of that node refused `duty_pending` on this node until a
    restart (no confirm, no attestation: the node loses its uptime), and the paid-bytes
    count goes negative. Fix: a replaced duty goes through `_remove` (or `_replace`
    refuses/handles a duty `previous`)."""
    key = derive_key(INSECURE_TEST_MNEMONIC, account_path(90))
    pool = Mempool()

    def at(nonce: int) -> Account:
        return Account(1_000 * COIN, nonce)

    confirm = Tx.create(key, CHAIN, 0, 0, NodeConfirm(NODE, BENCH, "v"))
    pool.add(confirm, lambda a: at(0), duty_node=NODE)
    paid = Tx.create(key, CHAIN, 0, 1_000, Transfer(b"\x99" * 20, 1))
    assert pool.add(paid, lambda a: at(0)) == confirm
    assert pool.duty_count == 0, "the replaced duty still counts"
    pool.settle(lambda a: at(1))  # a block commits the paid tx
    assert len(pool) == 0 and pool.size_bytes == 0
    later = Tx.create(key, CHAIN, 1, 0, NodeConfirm(NODE, BENCH, "v2"))
    pool.add(later, lambda a: at(1), duty_node=NODE)  # the node's next confirm
    assert later.id in pool


def test_rev18c_txs_that_fail_execution_hold_a_non_proposers_pool_for_free(
    tmp_path: Path,
) -> None:
    """Attack: an account funded for N fees pools N APP_CANCELs of an app that does not
    exist (any paid kind whose handler refuses on state: the pool checks nonce and
    balance only). All are executable in the pool; every proposer's build rejects the
    first and the sender pays nothing. Only a proposer drops it (`note_dropped`); every
    other node (the full nodes clients submit to) keeps all N forever, block after block.
    What a user sees: on those nodes honest txs paying less than the attacker's fee are
    refused `mempool_full` indefinitely, while the attacker spends nothing. Fix: run the
    paid kinds' stateful `check_*` at admission like duties, and after every committed
    block re-check each sender's first executable tx on every node (a failing head evicts
    it, gapping the rest to the quota), or count the kinds' spending in `cost`."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool(MempoolLimits(max_txs=50)))
        b = Builder(chain)
        attacker = derive_key(INSECURE_TEST_MNEMONIC, account_path(91))
        address = address_of(attacker.public_key)
        fee = 10_000
        service.on_committed(b.commit([b.transfer(funded_key(), address, 50 * fee)]), ())
        junk = [b.tx(attacker, AppCancel("no-such-app"), fee=fee) for _ in range(50)]
        for t in junk:  # pool18b: the first is refused unknown_app (admission dry-runs it)
            with contextlib.suppress(TxError):
                service.submit(t.raw)
        payer = funded_key()
        for _ in range(5):  # the proposers try the junk and reject it; this node is not one
            block = b.commit([*junk, b.transfer(payer, b"\x03" * 20, COIN)])
            assert all(t.id not in block.txs for t in junk)
            assert any(tx.id == junk[0].id for tx, _ in b.rejected)
            assert len(block.txs) == 1
            service.on_committed(block, ())
        assert b.chain_nonce(attacker) == 0  # never paid a fee
        honest = derive_key(INSECURE_TEST_MNEMONIC, account_path(92))
        service.on_committed(b.commit([b.transfer(payer, address_of(honest.public_key), COIN)]), ())
        pay = Tx.create(honest, chain.params.chain_id, 0, fee // 2, Transfer(b"\x03" * 20, 1))
        try:
            service.submit(pay.raw)
        except TxError as exc:
            pytest.fail(
                f"an honest tx is refused {exc.reason} by a pool held by {len(service.mempool)} "
                "txs that failed execution 6 blocks running and never paid"
            )
        assert pay.id in service.mempool
    finally:
        chain.close()


def test_rev18c_a_burst_relayed_out_of_order_is_all_pooled_once_it_has_all_come(
    tmp_path: Path,
) -> None:
    """Honest throughput: an exchange sends 100 txs; relay fetches them in two batches
    (GET_TXS takes up to 1,024) and the second batch's answer comes first. pool18 pools 16
    of it behind the gap, parks 16 (`sender_limit`) and forgets the other 18; when the first
    batch comes, the parked ones are not offered (only an account change offers them) and
    the forgotten ones wait for a new announcement. What the exchange sees: this node
    (a proposer, say) holds 66 of its 100 txs, and blocks carry its burst over several
    heights although every tx has arrived. Before pool18 all 100 were candidates. Fix:
    offer a sender's parked txs again when its run grows in the pool (its gap filled),
    not only when its account changes; a gapped quota at least a fetch batch's span."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        exchange = derive_key(INSECURE_TEST_MNEMONIC, account_path(93))
        address = address_of(exchange.public_key)
        service.on_committed(b.commit([b.transfer(funded_key(), address, 100 * COIN)]), ())
        burst = [b.transfer(exchange, b"\x05" * 20, COIN // 2) for _ in range(100)]
        for t in [*burst[50:], *burst[:50]]:  # the later batch's answer first
            with contextlib.suppress(TxError):  # refusals are the node's, not the peer's
                service.submit(t.raw, from_peer=True, peer="p1")
        pooled = [t for t in burst if t.id in service.mempool]
        assert len(pooled) == 100, f"{len(pooled)} of the burst pooled after all of it came"
        assert len(service.candidates()) == 100
    finally:
        chain.close()


def test_rev18c_gapped_txs_do_not_price_out_the_senders_next_nonce() -> None:
    """Attack (a relaying peer reorders, or relay batches come out of order): a sender's
    later txs reach a node first and are pooled behind the gap; with the balance counted
    over all pooled txs, not up to each nonce, they take the funds its lower nonces need.
    The gap filler is refused `insufficient_funds` and parked; after a block commits the
    txs before it, the balance still covers the gapped ones but not them and it: refused
    again, and nothing of the sender can execute, so its account never changes and the
    parked tx is never offered again. What the user sees: its next tx, which its balance
    covers, refused for funds; its later txs pending forever. Fix: a tx needs the balance
    to cover its sender's pooled txs up to its nonce; admitting it evicts the sender's
    tail (highest nonces, gapped first) that the balance then no longer covers."""
    pool = Mempool()
    sender = derive_key(INSECURE_TEST_MNEMONIC, account_path(94))
    state = {"balance": 10_000, "nonce": 0}

    def account(address: bytes) -> Account:
        return Account(state["balance"], state["nonce"])

    txs = [Tx.create(sender, CHAIN, n, 1_000, Transfer(b"\x99" * 20, 1_000)) for n in range(6)]
    for t in [txs[3], txs[4], txs[5], txs[0], txs[1]]:  # 3..5 relayed ahead of the rest
        pool.add(t, account)
    with contextlib.suppress(TxError):
        pool.add(txs[2], account)  # 0..2 cost 6,000 of the 10,000
    # A block commits nonces 0 and 1 (4,000): the balance, 6,000, covers nonce 2 and more.
    state["balance"], state["nonce"] = 6_000, 2
    pool.settle(account)
    if txs[2].id not in pool:
        try:
            pool.add(txs[2], account)
        except TxError as exc:
            pytest.fail(f"the sender's next nonce, which its balance covers, is refused: {exc}")
    assert [t.nonce for t in pool.candidates(account)][:1] == [2]
