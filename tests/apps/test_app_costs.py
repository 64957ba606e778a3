"""Issue 26 #3 and #8b: app economics, where an attack used to pay.

- an app that runs nowhere, or a squatted name, was free: pins need not exist and cancel
  refunded everything. Now every register and update burns `app_charge`, never refunded,
  and a pin must name an active node the spec lets host it;
- one `W` record listed every under-placed app: past 100,000 of them no node could load
  its state. Now each under-placed app has its own record, and refill work is bounded
  per block (round-robin), with no scan on a node join;
- a record the node could not decode on restart is refused when written;
- settlement phases and expiries ground onto one block made that block do all their work.
  Now each block does at most `app_settles_per_block` / `app_expiries_per_block`, the
  rest carries over, and the accounting stays exact.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core import apps, placement
from fluxchain.core.accounts import get_account
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import address_of
from fluxchain.core.encoding import MAX_ARRAY, pack, unpack
from fluxchain.core.errors import BlockError, DecodeError, Reason, TxError
from fluxchain.core.events import EventKind, PayReason
from fluxchain.core.params import Params, Tier
from fluxchain.core.pricing import compute_price
from fluxchain.core.records import RING, NodeStatus, Ring
from fluxchain.core.schema import new_state
from fluxchain.core.statetree import StateTree
from fluxchain.core.tx import AppCancel, AppRegister, AppUpdate, Tx
from fluxchain.store.db import ChainDB, StoredState
from tests.support.state import (
    StateRunner as Chain,
)
from tests.support.state import (
    check_invariants,
    component,
    geo,
    key_of,
    make_params,
    node_id_of,
    spec,
)
from wallet.builders import estimate_cost

OWNER_KEY = key_of(1)
BIG = (1_000, 10**7, 10**7)  # a node with room for every test app
NO_PORTS = component(ports=())
LIGHT = component(ports=(), cpu=1, ram_mb=100, disk_gb=1)


def _chain(nodes: int = 4, params: Params | None = None, **node_kwargs: Any) -> Chain:
    chain = Chain(params)
    for i in range(nodes):
        chain.add_node(i, **node_kwargs)
    chain.fund(OWNER_KEY)
    chain.end_block()
    return chain


def _owner() -> bytes:
    return address_of(OWNER_KEY.public_key)


def _balance(chain: Chain) -> int:
    return get_account(chain.state, _owner()).balance


def _register(chain: Chain, name: str = "myapp", **changes: Any) -> None:
    s = spec(_owner(), name=name, **changes)
    chain.apply(apps.process_app_register, chain.tx(OWNER_KEY, AppRegister(s)))


def _refused(chain: Chain, handler: Any, tx: Tx) -> TxError:
    with pytest.raises(TxError) as info:
        chain.apply(handler, tx)
    return info.value


# -- unplaceable apps and squatted names are not free -----------------------------------------


def test_an_app_that_runs_nowhere_costs_the_app_charge() -> None:
    """Before: an app that no node could host was refunded its whole escrow on cancel
    (0.0300 of 0.0300 FLUX), so it cost nothing. Now the register burns `app_charge`,
    which no cancel or expiry refunds: the refund is the escrow only."""
    chain = _chain()
    before = _balance(chain)
    _register(chain, geolocation=geo("OC"))  # no node in Oceania: it runs nowhere
    price = apps.get_app(chain.state, "myapp").escrow  # type: ignore[union-attr]
    assert placement.get_underplaced(chain.state) == ["myapp"]
    chain.end_block()
    chain.apply(apps.process_app_cancel, chain.tx(OWNER_KEY, AppCancel("myapp")))
    refunds = [e for e in chain.events(EventKind.PAID) if e.fields[2] == PayReason.REFUND]
    assert sum(e.fields[1] for e in refunds) == price  # the escrow, all of it
    assert before - _balance(chain) == chain.params.app_charge > 0
    assert chain.burned + chain.ctx.burned == chain.params.app_charge


def test_squatting_app_names_costs_the_app_charge_per_name() -> None:
    """Before: registering a name and cancelling it at once cost nothing. Now each name
    taken burns `app_charge` for good, and each update burns it again."""
    chain = _chain(nodes=6)
    before = _balance(chain)
    for i in range(5):
        _register(chain, name=f"squat{i}", components=(NO_PORTS,))
        chain.apply(apps.process_app_cancel, chain.tx(OWNER_KEY, AppCancel(f"squat{i}")))
    assert before - _balance(chain) == 5 * chain.params.app_charge
    _register(chain, name="kept")
    held = _balance(chain)
    update = spec(_owner(), name="kept", description="same size, new text")
    chain.apply(apps.process_app_update, chain.tx(OWNER_KEY, AppUpdate(update)))
    assert held - _balance(chain) == chain.params.app_charge  # same price: only the charge


def test_app_charge_is_needed_on_top_of_the_price() -> None:
    """A signer with the price but not the charge is refused before anything changes."""
    chain = _chain()
    poor = key_of(7)
    owner = chain.fund(poor, 0)
    s = spec(owner)
    chain.fund(poor, compute_price(s, chain.params, s.expire) + chain.params.app_charge - 1)
    error = _refused(chain, apps.process_app_register, chain.tx(poor, AppRegister(s)))
    assert error.reason is Reason.INSUFFICIENT_FUNDS


def test_the_wallet_estimate_counts_the_app_charge() -> None:
    """The wallet checks a register's or an update's cost against the balance before it
    signs: its estimate is what the chain then debits, the app charge included."""
    chain = _chain(nodes=6)
    s = spec(_owner())
    estimate = estimate_cost(AppRegister(s), chain.params)
    assert estimate == compute_price(s, chain.params, s.expire) + chain.params.app_charge
    before = _balance(chain)
    _register(chain)
    assert before - _balance(chain) == estimate
    bigger = spec(_owner(), instances=5)
    view = apps.get_app_status(chain.state, "myapp")
    estimate = estimate_cost(AppUpdate(bigger), chain.params, view)
    before = _balance(chain)  # same block: nothing settled since, the estimate is exact
    chain.apply(apps.process_app_update, chain.tx(OWNER_KEY, AppUpdate(bigger)))
    assert before - _balance(chain) == estimate


# -- pins only to active nodes ------------------------------------------------------------------


def test_pinning_a_node_that_does_not_exist_is_refused() -> None:
    """Before: any 20 bytes could be pinned, making an app that runs nowhere on purpose.
    Now a pin must name an active node that the spec's tier and geolocation admit
    (`pinned_node_not_eligible`), on register and on update."""
    chain = _chain(nodes=4)
    chain.add_node(10, tier=Tier.CUMULUS, country="US", continent="NA")
    chain.add_node(11, status=NodeStatus.DOWN)
    chain.end_block()
    nobody = hashlib.sha256(b"no such node").digest()[:20]
    cases: dict[str, dict[str, Any]] = {
        "a node id nobody registered": dict(pinned_nodes=(nobody, node_id_of(0), node_id_of(1))),
        "a node that is down": dict(pinned_nodes=(node_id_of(11), node_id_of(0), node_id_of(1))),
        "a node below the spec's min_tier": dict(
            pinned_nodes=(node_id_of(10), node_id_of(0), node_id_of(1)), min_tier=Tier.NIMBUS
        ),
        "a node the spec's geolocation denies": dict(
            pinned_nodes=(node_id_of(10), node_id_of(0), node_id_of(1)), geolocation=geo("EU")
        ),
    }
    for what, changes in cases.items():
        s = spec(_owner(), **changes)
        error = _refused(chain, apps.process_app_register, chain.tx(OWNER_KEY, AppRegister(s)))
        assert error.reason is Reason.PINNED_NODE_NOT_ELIGIBLE, what
    # active, admitted nodes may be pinned; an update to a bad pin is refused too
    good = tuple(node_id_of(i) for i in range(3))
    _register(chain, pinned_nodes=good)
    assert {i.node_id for i in placement.get_placement(chain.state, "myapp").instances} == set(  # type: ignore[union-attr]
        good
    )
    bad = spec(_owner(), pinned_nodes=(*good[:2], nobody))
    error = _refused(chain, apps.process_app_update, chain.tx(OWNER_KEY, AppUpdate(bad)))
    assert error.reason is Reason.PINNED_NODE_NOT_ELIGIBLE


def test_a_pinned_node_that_leaves_leaves_the_app_underplaced_until_it_returns() -> None:
    """A pinned node that goes down later: the app is under-placed (`pinned`), and is
    whole again in the block the node comes back (the end-of-block refill)."""
    chain = _chain(nodes=4)
    pins = tuple(node_id_of(i) for i in range(3))
    _register(chain, pinned_nodes=pins)
    chain.end_block()
    chain.set_status(pins[0], NodeStatus.DOWN)
    p = placement.get_placement(chain.state, "myapp")
    assert p is not None and len(p.instances) == 2 and p.reason == placement.REASON_PINNED
    chain.end_block()
    chain.set_status(pins[0], NodeStatus.CONFIRMED)
    chain.refill()
    p = placement.get_placement(chain.state, "myapp")
    assert p is not None and len(p.instances) == 3 and p.reason == ""
    check_invariants(chain.state)


# -- under-placement records and bounded refill -------------------------------------------------


def test_100001_underplaced_apps_still_load_after_a_restart(tmp_path: Path) -> None:
    """Before: one `W` record listed every under-placed app; with 100,001 of them the
    state no longer loaded ("100001 exceeds max_array_len(100000)"): no node could
    restart. Now each under-placed app has its own small record: the state is written to
    a node's store and read back the way a restarted node reads it (the tree reopened
    from the store, every record read through it and decoded)."""
    count = MAX_ARRAY + 1
    # the old record's shape, for the record: one array of every name does not decode
    with pytest.raises(DecodeError):
        unpack(pack([[f"app{i}" for i in range(count)]]))
    state = new_state()
    ctx = BlockContext(state, make_params(), 1, b"\x02" * 33, b"\x00" * 32)
    demand = spec(_owner(), components=(NO_PORTS,))
    for i in range(count):  # no node at all: every app is under-placed
        placement.place_new_app(ctx, f"app{i}", replace(demand, name=f"app{i}"), 1_000)
    assert placement.count_underplaced(state) == count
    changes = state.pending_changes()  # what the node writes (checked loadable)
    tree = StateTree(persisting=True)
    tree.update(changes)
    db = ChainDB(tmp_path / "db")
    db.write_genesis(b"\x00" * 32, changes, tree.records())
    db.close()

    db = ChainDB(tmp_path / "db")  # the restart
    try:
        stored = StoredState(db)
        reopened = StateTree.open(stored)
        assert reopened.root == tree.root
        stored.check_with(reopened)
        restarted = new_state(stored)
        assert placement.count_underplaced(restarted) == count
        last = f"app{count - 1}"
        assert restarted.get(placement.wanting_key(last)) is not None
        assert placement.get_placement(restarted, last).reason == placement.REASON_NONE  # type: ignore[union-attr]
        assert len(placement.get_underplaced(restarted)) == count
    finally:
        db.close()


def test_a_node_join_retries_a_bounded_number_of_underplaced_apps_per_block() -> None:
    """Before: a node that joined was offered to every under-placed app in name order, in
    that block: work grew with the number of under-placed apps. Now a join only marks
    capacity as new; each block retries at most `app_refills_per_block` apps, round-robin
    from the refill queue, and every app gets its turn."""
    chain = Chain(make_params(app_refills_per_block=7))
    chain.fund(OWNER_KEY)
    chain.end_block()
    names = [f"app{i:03}" for i in range(50)]
    for name in names:
        _register(chain, name=name, components=(LIGHT,))
    assert placement.count_underplaced(chain.state) == 50
    chain.end_block()
    for i in range(3):
        chain.add_node(i, bench=BIG)
    placed_order: list[str] = []
    blocks = 0
    while placement.count_underplaced(chain.state):
        chain.end_block()
        blocks += 1
        placed = [e.fields[0] for e in chain.history if e.kind is EventKind.APP_PLACED]
        this_block = placed[len(placed_order) :]
        assert len(this_block) <= 7, this_block
        placed_order.extend(this_block)
        assert blocks <= 50
    assert placed_order == names  # round-robin: in the order they became under-placed
    assert blocks == -(-50 // 7)
    check_invariants(chain.state)


def test_refill_does_nothing_while_no_capacity_appears() -> None:
    """Under-placed apps that were tried since capacity last appeared are not searched
    again: a block with no new capacity does no refill work at all."""
    chain = Chain(make_params(app_refills_per_block=3))
    chain.fund(OWNER_KEY)
    for i in range(10):
        _register(chain, name=f"app{i}")
    chain.end_block()
    writes_before = len(chain.state.pending_changes())
    placement.process_block(chain.ctx)
    assert len(chain.state.pending_changes()) == writes_before == 0


# -- record sizes are checked when written ------------------------------------------------------


def test_a_record_the_node_could_not_load_is_refused_when_written() -> None:
    """The last line of defence: a rule that would write a record the decoder refuses (an
    array beyond 100,000 items) fails the block at write time (`record_too_large`),
    never a restart later."""
    state = new_state()
    nodes = tuple(hashlib.sha256(i.to_bytes(4, "big")).digest()[:20] for i in range(MAX_ARRAY + 1))
    state.put(RING, Ring(1, nodes))
    with pytest.raises(BlockError) as info:
        state.pending_changes()
    assert info.value.reason is Reason.RECORD_TOO_LARGE
    state.discard()
    state.put(RING, Ring(1, nodes[:MAX_ARRAY]))  # at the bound: written, and loads again
    ((_, value),) = state.pending_changes()
    assert Ring.from_fields(unpack(value)).nodes == nodes[:MAX_ARRAY]  # type: ignore[arg-type]


def test_a_node_hosts_at_most_max_hosted_instances() -> None:
    """A node whose load record is full (MAX_HOSTED instances) is not eligible: the rule
    that grows the record keeps it loadable."""
    chain = _chain(nodes=0)
    chain.add_node(0, bench=BIG)
    load = placement.get_load(chain.state, placement_node := chain.state.keys(b"L")[0][1:])
    assert load is not None
    full = tuple((f"x{i}", 0) for i in range(placement.MAX_HOSTED))
    chain.state.put(placement.load_key(placement_node), replace(load, hosted=full))
    assert not placement.get_load(chain.state, placement_node).fits(  # type: ignore[union-attr]
        placement.Demand.of(spec(_owner(), components=(NO_PORTS,)))
    )


def test_accruals_merge_per_node() -> None:
    """An instance that moves back and forth between settlements owes each node one
    accrual, not one per move: the list is bounded by the nodes, and pays the same."""
    chain = _chain(nodes=4)
    _register(chain)
    p = placement.get_placement(chain.state, "myapp")
    assert p is not None
    for _ in range(5):
        chain.end_block()
        victim = p.instances[0].node_id
        chain.set_status(victim, NodeStatus.DOWN)
        chain.end_block()
        chain.set_status(victim, NodeStatus.CONFIRMED)
        p = placement.get_placement(chain.state, "myapp")
        assert p is not None
    nodes = [a.node_id for a in p.accruals]
    assert len(nodes) == len(set(nodes)) <= 4


# -- bounded settlement and expiry work ---------------------------------------------------------


def _ground_names(params: Params, height: int, count: int) -> list[str]:
    """Names whose first settlement lands on one block: what an attacker grinds."""
    ctx = BlockContext(new_state(), params, height, b"", b"")
    target = apps.compute_first_settle(ctx, "seed")
    out: list[str] = []
    i = 0
    while len(out) < count:
        name = f"g{i}"
        if apps.compute_first_settle(ctx, name) == target:
            out.append(name)
        i += 1
    return out


def _run(cap_settle: int, cap_expire: int, *, ground: str) -> tuple[Chain, dict[int, int], int]:
    """20 apps ground onto one settlement (or expiry) block; returns the chain, how many
    apps settled (or expired) per block, and the block they were ground onto."""
    params = make_params(
        app_settle_interval=50,
        app_settles_per_block=cap_settle,
        app_expiries_per_block=cap_expire,
    )
    chain = _chain(nodes=8, params=params, bench=BIG)
    names = _ground_names(params, chain.height, 20)
    light = (LIGHT,)
    for name in names:
        _register(chain, name=name, components=light, expire=100)
    target = (
        apps.get_app(chain.state, names[0]).next_settle  # type: ignore[union-attr]
        if ground == "settle"
        else chain.height + 100
    )
    per_block: Counter[int] = Counter()
    last = chain.height + 130
    while chain.height < last:
        height = chain.height
        settled_before = {
            name: app.settled_height for name in names if (app := apps.get_app(chain.state, name))
        }
        chain.end_block()
        for name, was in settled_before.items():
            app = apps.get_app(chain.state, name)
            if ground == "settle" and app is not None and app.settled_height != was:
                per_block[height] += 1
        if ground == "expire":
            per_block[height] = sum(
                1 for e in chain.history if e.kind is EventKind.APP_EXPIRED and e.fields[0] in names
            ) - sum(per_block.values())
    return chain, dict(per_block), target


def _paid(chain: Chain, reason: PayReason) -> Counter[bytes]:
    out: Counter[bytes] = Counter()
    for e in chain.history:
        if e.kind is EventKind.PAID and e.fields[2] == reason:
            out[e.fields[0]] += e.fields[1]
    return out


def test_apps_ground_onto_one_settlement_block_settle_at_most_the_cap_per_block() -> None:
    """Before: settlement phases derive from the name, so 5,000 names ground onto one
    phase all settled in one block, every interval. Now a block settles at most
    `app_settles_per_block`; the rest carry over and land apart the next time. Every
    unit stays accounted for: each app pays its nodes and its owner exactly its escrow."""
    capped, per_block, target = _run(4, 1_000, ground="settle")
    assert max(per_block.values()) <= 4
    assert per_block[target] == 4 and sum(1 for h in per_block if h >= target) >= 5
    free, free_per_block, _ = _run(1_000, 1_000, ground="settle")
    assert free_per_block[target] == 20  # the attack, without the cap
    for chain in (capped, free):
        assert not list(chain.state.items(apps.APP))  # all expired
        spent = chain.burned + sum(_paid(chain, PayReason.HOSTING).values())
        refunded = sum(_paid(chain, PayReason.REFUND).values())
        # what the owner paid (escrows + charges) went to hosts, refunds and the burn
        assert spent + refunded == 20 * chain.params.app_charge + sum(
            e.fields[2] for e in chain.history if e.kind is EventKind.APP_REGISTERED
        )
    # the same hosting is paid for, to within the rounding of the extra settlements
    capped_paid, free_paid = _paid(capped, PayReason.HOSTING), _paid(free, PayReason.HOSTING)
    assert capped_paid.keys() == free_paid.keys()
    for owner, amount in free_paid.items():
        assert abs(capped_paid[owner] - amount) <= 20 * 3, owner


def test_apps_ground_onto_one_expiry_block_close_at_most_the_cap_per_block() -> None:
    """Before: apps registered with durations that end on one block were all closed in
    that block. Now a block closes at most `app_expiries_per_block`; an app closed late
    is settled at its expire_height: it pays and is refunded exactly what it would have
    been on time, and is charged nothing for the blocks after."""
    capped, per_block, target = _run(1_000, 3, ground="expire")
    assert max(per_block.values()) <= 3
    assert per_block[target] == 3 and sum(per_block.values()) == 20
    free, free_per_block, _ = _run(1_000, 1_000, ground="expire")
    assert free_per_block[target] == 20
    assert _paid(capped, PayReason.HOSTING) == _paid(free, PayReason.HOSTING)
    assert _paid(capped, PayReason.REFUND) == _paid(free, PayReason.REFUND)
    assert not list(capped.state.items(apps.APP))
    assert not list(capped.state.items(apps.CURSOR))  # caught up: no cursor left behind
