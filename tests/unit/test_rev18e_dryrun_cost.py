"""rev18e: what one paid dry-run (`check_paid`) costs, and how often an attacker makes a
node pay it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.placement import NODE_LOAD
from fluxchain.core.state import State
from fluxchain.core.tx import AppExtend, Tx
from fluxchain.node.service import NodeService
from tests.support.chain import (
    Builder,
    app_register,
    app_spec,
    funded_key,
    open_chain,
)
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _counting(service: NodeService) -> list[Tx]:
    """Record every paid dry-run the service's admission runs (and still run it)."""
    calls: list[Tx] = []
    real: Callable[[Tx], None] = service.admission.check_paid

    def check(tx: Tx) -> None:
        calls.append(tx)
        real(tx)

    service.admission.check_paid = check  # type: ignore[method-assign]
    return calls


def _with_app(tmp_path: Path) -> tuple[NodeService, Builder]:
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain)
    b = Builder(chain)
    owner = funded_key()
    service.on_committed(
        b.commit([app_register(b, owner, app_spec(owner, "myapp", expire=1000))]), ()
    )
    assert not b.rejected
    return service, b


def test_rev18e_a_peers_copies_of_a_pooled_stateful_tx_each_cost_a_full_dry_run(
    tmp_path: Path,
) -> None:
    """Attack: any peer pushes (unsolicited TX/TXS frames go straight to `submit`) copies
    of a pooled APP_EXTEND/APP_REGISTER at its sender's next nonce. `admit` finds the raw
    bytes known (no decode, no signature), but `_pool` runs `check_paid` — the kind's
    whole handler on a fresh committed view — before `Mempool.add` says already_known,
    and already_known is not punished. So each copy, ~1 KB of the peer's bandwidth, costs
    the node a handler run (an APP_REGISTER's includes a placement search that rebuilds
    the node index from every load record: see the next test) instead of a dict look-up;
    honest gossip does the same with every peer's copy. What an operator sees: CPU per
    received frame tracks the pool's stateful txs, not the new txs. Fix: run the
    mempool's cheap refusals (already pooled, replacement underpriced, sender limits)
    before the dry-run, or skip the dry-run for a tx already pooled."""
    service, b = _with_app(tmp_path)
    try:
        owner = funded_key()
        extend = b.tx(owner, AppExtend("myapp", 10))
        service.submit(extend.raw)
        assert extend.id in service.mempool
        calls = _counting(service)
        for _ in range(100):
            with pytest.raises(TxError) as refused:
                service.submit(extend.raw, from_peer=True, peer="p1")
            assert refused.value.reason is Reason.ALREADY_KNOWN
        runs = len(calls)
        assert runs == 0, f"100 copies of a pooled tx cost {runs} handler dry-runs"
    finally:
        service.chain.close()


def test_rev18e_equal_fee_variants_at_the_next_nonce_each_cost_a_dry_run_before_refusal(
    tmp_path: Path,
) -> None:
    """Attack: one funded account pools a stateful tx at its next nonce, then sends
    variants of it (another `blocks`, another app name) at the same nonce and fee. Each
    is dry-run in full and only then refused replacement_underpriced by `Mempool.add`; the
    account never pays, and (parked up to 16, the rest forgotten) it can go on for ever.
    What an operator sees: a single account's stream of refused txs costs handler runs
    (O(active nodes) each for APP_REGISTER) on every node it reaches. Fix: the mempool's
    replace-by-fee and limit checks before `check_paid`."""
    service, b = _with_app(tmp_path)
    try:
        owner = funded_key()
        nonce = b.next_nonce(owner)
        first = Tx.create(owner, b.chain_id, nonce, 1_000, AppExtend("myapp", 10))
        service.submit(first.raw)
        calls = _counting(service)
        for blocks in range(11, 61):
            variant = Tx.create(owner, b.chain_id, nonce, 1_000, AppExtend("myapp", blocks))
            with contextlib.suppress(TxError):
                service.submit(variant.raw, from_peer=True, peer="p1")
            assert variant.id not in service.mempool
        runs = len(calls)
        assert runs == 0, f"50 underpriced replacements cost {runs} dry-runs"
    finally:
        service.chain.close()


def test_rev18e_an_app_register_dry_run_rebuilds_the_node_index_from_every_load_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cost: `check_paid` runs the handler on `State.committed_view()`, which has no
    watchers; APP_REGISTER's placement (`Search.best` -> `node_index`) finds none and
    attaches a fresh NodeIndex, built from `state.items(NODE_LOAD)`: a store range scan
    and a decode/index of every active node's load record, for every dry-run (admission,
    each copy or variant above, and each block's `recheck_paid` of a register head). The
    chain's own state keeps that index up to date and never rebuilds it. Measured here:
    a 4-node devnet register dry-run 200 us vs 40-66 us for decode+signature; NodeIndex
    build alone is ~10 ms at 10,000 nodes (the pool's DEFAULT_MAX_DUTIES sizing), ~200x a
    signature check. Fix: let the view read the committed index (a read-only overlay of
    the state's watcher), or dry-run only the kind's checks without the placement."""
    service, b = _with_app(tmp_path)  # the register above built the chain's own index
    try:
        owners = [derive_key(INSECURE_TEST_MNEMONIC, account_path(180 + i)) for i in range(5)]
        funding = [
            b.transfer(funded_key(), address_of(o.public_key), 10_000 * COIN) for o in owners
        ]
        service.on_committed(b.commit(funding), ())
        scans: list[bytes] = []
        real_items = State.items

        def items(self: State, prefix: bytes):  # type: ignore[no-untyped-def]
            if prefix[:1] == NODE_LOAD[:1]:
                scans.append(prefix)
            return real_items(self, prefix)

        monkeypatch.setattr(State, "items", items)
        for i, owner in enumerate(owners):
            register = app_register(b, owner, app_spec(owner, f"app{i}", expire=1000))
            service.submit(register.raw)
            assert register.id in service.mempool
        n = len(scans)
        assert n == 0, f"5 register admissions scanned the load table {n} times"
    finally:
        service.chain.close()
