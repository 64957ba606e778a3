"""pool18c: the paid dry-run reads the chain's node index without changing it, and a
pool eviction never leaves a duty behind a gap."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fluxchain.core.admission import check_paid
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import Reason
from fluxchain.core.params import COIN
from fluxchain.core.placement import NODE_LOAD, build_node_index, node_index
from fluxchain.core.placement.ranking import IndexOverlay
from fluxchain.core.records import Account
from fluxchain.core.tx import Benchmark, NodeConfirm, Transfer, Tx
from fluxchain.node.mempool import Mempool
from tests.support.chain import Builder, app_register, app_spec, funded_key, open_chain

CHAIN = "flux-test"


def test_an_app_register_dry_run_leaves_the_chains_node_index_and_state_as_they_were(
    tmp_path: Path,
) -> None:
    """The dry-run places the app through an overlay of the chain's index: the chain's
    index still equals a fresh build, and no state record or root moved."""
    chain = open_chain(tmp_path / "home")
    try:
        b = Builder(chain)
        owner = funded_key()
        b.commit([app_register(b, owner, app_spec(owner, "first", expire=1000))])
        index = node_index(chain.state)
        assert index.rank_of, "the devnet has active nodes to place on"
        before = index.contents()
        loads = dict(chain.state.items(NODE_LOAD))
        root = chain.tree.root
        register = app_register(b, owner, app_spec(owner, "second", expire=1000))
        check_paid(chain.state, chain.params, chain.height + 1, register)
        assert node_index(chain.state) is index
        assert index.contents() == before == build_node_index(chain.state).contents()
        assert dict(chain.state.items(NODE_LOAD)) == loads
        assert not chain.state.has_pending()
        assert chain.tree.root == root
    finally:
        chain.close()


def test_an_index_overlay_that_moves_a_node_copies_and_leaves_its_base_alone(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        key, load = next(iter(chain.state.items(NODE_LOAD)))
        base = build_node_index(chain.state)
        before = base.contents()
        overlay = IndexOverlay(base)
        assert overlay.contents() == before  # shares the base's sets, nothing built
        moved = replace(load, continent="AS" if load.continent != "AS" else "EU")
        overlay.changed(key, load, moved)
        overlay.changed(key, moved, None)
        assert load.node_id not in overlay.rank_of
        assert base.contents() == before
    finally:
        chain.close()


def test_a_tail_evicted_for_want_of_balance_takes_the_duty_behind_it_out_too() -> None:
    """A replacement at nonce 0 that spends more leaves nonce 1 unpaid: evicting it
    would leave the duty at nonce 2 behind a gap, which no block could include."""
    key = SigningKey(b"\x18" * 32)
    balance = 10 * COIN
    pool = Mempool()

    def accounts(_: bytes) -> Account:
        return Account(balance, 0)

    to = b"\x05" * 20
    pool.add(Tx.create(key, CHAIN, 0, 1_000, Transfer(to, COIN)), accounts)
    second = Tx.create(key, CHAIN, 1, 1_000, Transfer(to, COIN))
    pool.add(second, accounts)
    node = b"\x01" * 20
    duty = Tx.create(
        key, CHAIN, 2, 0, NodeConfirm(node, Benchmark(4, 8, 8_192, 100, 100, 100, 100), "v")
    )
    pool.add(duty, accounts, duty_node=node)
    bigger = Tx.create(key, CHAIN, 0, 2_000, Transfer(to, 9 * COIN))
    pool.add(bigger, accounts)
    evicted = {t.id: e.reason for t, e in pool.take_evicted()}
    assert evicted == {second.id: Reason.INSUFFICIENT_FUNDS, duty.id: Reason.NONCE_MISMATCH}
    assert duty.id not in pool and pool.duty_count == 0
    assert [t.id for t in pool.candidates(accounts)] == [bigger.id]
