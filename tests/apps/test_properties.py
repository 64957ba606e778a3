"""Property tests: placement invariants and exact conservation of funds under random
sequences of app transactions, node failures and returns, and blocks passing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxchain.core import apps, placement
from fluxchain.core.accounts import get_account
from fluxchain.core.errors import TxError
from fluxchain.core.params import Tier
from fluxchain.core.records import NodeStatus, node_key
from fluxchain.core.tx import AppCancel, AppExtend, AppRegister, AppUpdate
from tests.support.state import (
    StateRunner,
    check_invariants,
    component,
    geo,
    key_of,
    node_id_of,
    spec,
)

NODES = 12
PLACES = [("DE", "EU"), ("FR", "EU"), ("US", "NA"), ("JP", "AS")]
KEYS = [key_of(i) for i in range(3)]
GEOS = [(), geo("EU"), geo("NA", allow=False), geo("AS_JP"), geo("EU") + geo("EU_DE", allow=False)]

op = st.one_of(
    st.tuples(
        st.just("register"),
        st.integers(0, 5),  # name
        st.integers(0, 2),  # key
        st.integers(3, 6),  # instances
        st.integers(0, len(GEOS) - 1),
        st.sampled_from([Tier.CUMULUS, Tier.NIMBUS]),
        st.integers(1, 25),  # cpu tenths
    ),
    st.tuples(
        st.just("update"),
        st.integers(0, 5),
        st.integers(0, 2),
        st.integers(3, 6),
        st.integers(1, 25),
    ),
    st.tuples(st.just("extend"), st.integers(0, 5), st.integers(0, 2), st.integers(1, 300)),
    st.tuples(st.just("cancel"), st.integers(0, 5), st.integers(0, 2)),
    st.tuples(st.just("down"), st.integers(0, NODES - 1)),
    st.tuples(st.just("up"), st.integers(0, NODES - 1)),
    st.tuples(st.just("blocks"), st.integers(1, 400)),
)


def build(seed_tiers: bool = True) -> StateRunner:
    chain = StateRunner()
    for i in range(NODES):
        country, continent = PLACES[i % 4]
        tier = Tier.NIMBUS if seed_tiers and i % 3 == 0 else Tier.CUMULUS
        chain.add_node(i, country=country, continent=continent, tier=tier)
    for key in KEYS:
        chain.fund(key)
    return chain


def run(chain: StateRunner, ops: list[Any]) -> None:
    for item in ops:
        kind = item[0]
        try:
            if kind == "register":
                _, name, k, instances, g, tier, cpu = item
                owner = chain.fund(KEYS[k], 0)
                s = spec(
                    owner,
                    name=f"app{name}",
                    instances=instances,
                    geolocation=GEOS[g],
                    min_tier=tier,
                    expire=200,
                    components=(component(cpu=cpu, ports=(31000 + name,)),),
                )
                chain.apply(apps.process_app_register, chain.tx(KEYS[k], AppRegister(s)))
            elif kind == "update":
                _, name, k, instances, cpu = item
                owner = chain.fund(KEYS[k], 0)
                s = spec(
                    owner,
                    name=f"app{name}",
                    instances=instances,
                    expire=150,
                    components=(component(cpu=cpu, ports=(31000 + name,)),),
                )
                chain.apply(apps.process_app_update, chain.tx(KEYS[k], AppUpdate(s)))
            elif kind == "extend":
                _, name, k, blocks = item
                chain.apply(
                    apps.process_app_extend, chain.tx(KEYS[k], AppExtend(f"app{name}", blocks))
                )
            elif kind == "cancel":
                _, name, k = item
                chain.apply(apps.process_app_cancel, chain.tx(KEYS[k], AppCancel(f"app{name}")))
            elif kind == "down":
                node = chain.state.get(node_key(node_id_of(item[1])))
                if node.status is NodeStatus.CONFIRMED:
                    chain.set_status(node.node_id, NodeStatus.DOWN)
            elif kind == "up":
                node = chain.state.get(node_key(node_id_of(item[1])))
                if node.status is not NodeStatus.CONFIRMED:
                    chain.set_status(node.node_id, NodeStatus.CONFIRMED)
                    chain.refill()  # the end of this block offers it to under-placed apps
            else:
                for _ in range(min(item[1], 5)):
                    chain.end_block()
                chain.advance_to(chain.height + item[1] - min(item[1], 5))
        except TxError:
            pass
        check_invariants(chain.state)


def total_funds(chain: StateRunner) -> int:
    """Every balance, plus every escrow and refundable share still held by apps, plus
    what was burnt (app charges): the supply the apps started with."""
    total: int = sum(a.balance for _, a in chain.state.items(b"a"))
    total += chain.burned + chain.ctx.burned
    for _, app in chain.state.items(apps.APP):
        total += app.escrow + app.refundable
    return total


def eligible_count(chain: StateRunner, p: placement.Placement) -> int:
    """Active nodes that pass tier, location and pins (capacity aside)."""
    count = 0
    for _, load in chain.state.items(placement.NODE_LOAD):
        d = p.demand
        if load.tier >= d.min_tier and d.location_allowed(load.continent, load.country):
            count += 1
    return count


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(op, max_size=25))
def test_invariants_and_conservation(ops: list[Any]) -> None:
    chain = build()
    start = total_funds(chain)
    run(chain, ops)
    check_invariants(chain.state)
    assert total_funds(chain) == start, "escrow + payouts + refunds must conserve funds"
    last = max((a.expire_height for _, a in chain.state.items(apps.APP)), default=chain.height)
    chain.advance_to(last + 1)  # every app expires; all escrow is paid out or refunded
    assert not list(chain.state.items(apps.APP))
    assert total_funds(chain) == start


@SETTINGS
@given(st.lists(op, max_size=25))
def test_every_app_has_min_of_instances_and_eligible(ops: list[Any]) -> None:
    # huge nodes and apps without port clashes: only tier and location limit placement
    chain = build()
    for _, load in list(chain.state.items(placement.NODE_LOAD)):
        chain.state.put(
            placement.load_key(load.node_id),
            load.__class__(
                *[
                    getattr(load, f)
                    for f in (
                        "node_id",
                        "owner",
                        "tier",
                        "country",
                        "continent",
                        "cores",
                        "ram_mb",
                        "disk_gb",
                    )
                ],
                10**6,
                10**9,
                10**9,
                load.used_cpu,
                load.used_ram_mb,
                load.used_disk_gb,
                load.hosted,
                load.ports,
                load.rank_key,
            ),
        )
    run(chain, ops)
    for _, p in chain.state.items(placement.PLACEMENT):
        assert len(p.instances) == min(p.wanted, eligible_count(chain, p)), p.name


@SETTINGS
@given(st.lists(op, max_size=20), st.integers(0, NODES - 1))
def test_an_unrelated_failure_changes_no_healthy_assignment(
    ops: list[Any], victim_index: int
) -> None:
    chain = build()
    run(chain, ops)
    victim = node_id_of(victim_index)
    node = chain.state.get(node_key(victim))
    if node.status is not NodeStatus.CONFIRMED:
        return
    before = {
        (p.name, i.index, i.node_id)
        for _, p in chain.state.items(placement.PLACEMENT)
        for i in p.instances
    }
    chain.set_status(victim, NodeStatus.DOWN)
    after = {
        (p.name, i.index, i.node_id)
        for _, p in chain.state.items(placement.PLACEMENT)
        for i in p.instances
    }
    assert {a for a in before if a[2] != victim} <= after
    check_invariants(chain.state)


@SETTINGS
@given(st.lists(op, max_size=25))
def test_two_independent_states_agree(ops: list[Any]) -> None:
    one, two = build(), build()
    # interleave: the in-memory node index is rebuilt each time the state changes hands
    for item in ops:
        run(one, [item])
        run(two, [item])
    assert one.state.pending_changes() == two.state.pending_changes()
    assert sorted(one.state.encoded_items()) == sorted(two.state.encoded_items())
    assert [e.to_fields() for e in one.history + one.ctx.events] == [
        e.to_fields() for e in two.history + two.ctx.events
    ]
    assert get_account(one.state, b"\x00" * 20) == get_account(two.state, b"\x00" * 20)
