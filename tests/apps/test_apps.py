"""App transactions: every rejection reason, and the escrow through an app's life."""

from __future__ import annotations

from typing import Any

import pytest

from fluxchain.core import apps, placement
from fluxchain.core.accounts import get_account
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import DecodeError, Reason, TxError
from fluxchain.core.events import EventKind, PayReason
from fluxchain.core.pricing import compute_price
from fluxchain.core.tx import AppCancel, AppExtend, AppRegister, AppUpdate, Tx
from tests.support.state import (
    StateRunner,
    check_invariants,
    component,
    geo,
    key_of,
    node_id_of,
    spec,
)

OWNER_KEY = key_of(1)
OTHER_KEY = key_of(2)


def setup_chain(nodes: int = 6) -> tuple[StateRunner, bytes]:
    chain = StateRunner()
    for i in range(nodes):
        chain.add_node(i)
    owner = chain.fund(OWNER_KEY)
    chain.fund(OTHER_KEY)
    return chain, owner


def register(chain: StateRunner, owner: bytes, **changes: Any) -> None:
    chain.apply(apps.process_app_register, chain.tx(OWNER_KEY, AppRegister(spec(owner, **changes))))


def rejected(chain: StateRunner, handler: Any, tx: Tx) -> TxError:
    before = chain.state.pending_changes()
    n_events = len(chain.ctx.events)
    with pytest.raises(TxError) as info:
        chain.apply(handler, tx)
    assert chain.state.pending_changes() == before, "a rejected tx leaves no writes"
    assert len(chain.ctx.events) == n_events
    return info.value


def balance(chain: StateRunner, address: bytes) -> int:
    return get_account(chain.state, address).balance


# -- APP_REGISTER ----------------------------------------------------------------------------


def test_register_pays_escrow_and_places() -> None:
    chain, owner = setup_chain()
    before = balance(chain, owner)
    register(chain, owner)
    price = compute_price(spec(owner), chain.params, 1_000)
    # the escrow, plus the app charge: burnt, never part of the escrow
    assert balance(chain, owner) == before - price - chain.params.app_charge
    app = apps.get_app(chain.state, "myapp")
    assert app is not None and app.escrow == price and app.expire_height == 1 + 1_000
    kinds = [e.kind for e in chain.events()]
    assert kinds == [EventKind.APP_REGISTERED] + [EventKind.ASSIGNED] * 3 + [EventKind.APP_PLACED]
    status = apps.get_app_status(chain.state, "myapp")
    assert status is not None and status["status"] == "placed" and status["placed"] == 3
    check_invariants(chain.state)


def test_register_rejects_an_invalid_spec_naming_field_and_character() -> None:
    chain, owner = setup_chain()
    bad = spec(owner, components=(component(environment=("MODE=\u201cprod\u201d",)),))
    error = rejected(chain, apps.process_app_register, chain.tx(OWNER_KEY, AppRegister(bad)))
    assert error.reason is Reason.INVALID_SPEC
    assert "components[0].environment[0]" in error.message
    assert "U+201C LEFT DOUBLE QUOTATION MARK at position 5" in error.message


def test_register_rejects_a_spec_owned_by_someone_else() -> None:
    chain, _ = setup_chain()
    other = address_of(OTHER_KEY.public_key)
    tx = chain.tx(OWNER_KEY, AppRegister(spec(other)))
    assert rejected(chain, apps.process_app_register, tx).reason is Reason.NOT_OWNER


def test_register_rejects_a_taken_name() -> None:
    chain, owner = setup_chain()
    register(chain, owner)
    tx = chain.tx(OWNER_KEY, AppRegister(spec(owner)))
    assert rejected(chain, apps.process_app_register, tx).reason is Reason.APP_EXISTS


def test_register_rejects_without_funds() -> None:
    chain, _ = setup_chain()
    poor = key_of(3)
    chain.fund(poor, 1_000)
    tx = chain.tx(poor, AppRegister(spec(address_of(poor.public_key))))
    assert rejected(chain, apps.process_app_register, tx).reason is Reason.INSUFFICIENT_FUNDS


# -- APP_UPDATE ------------------------------------------------------------------------------


def test_update_rejections() -> None:
    chain, owner = setup_chain()
    register(chain, owner)
    cases = [
        (OWNER_KEY, spec(owner, instances=1), Reason.INVALID_SPEC),
        (OWNER_KEY, spec(owner, name="nosuch"), Reason.UNKNOWN_APP),
        (OTHER_KEY, spec(owner), Reason.NOT_OWNER),
    ]
    for key, new_spec, reason in cases:
        tx = chain.tx(key, AppUpdate(new_spec))
        assert rejected(chain, apps.process_app_update, tx).reason is reason
    poor = key_of(3)
    chain.fund(poor, 100)
    # ownership moves to `poor`, who cannot pay for a bigger app
    chain.apply(
        apps.process_app_update, chain.tx(OWNER_KEY, AppUpdate(spec(address_of(poor.public_key))))
    )
    bigger = spec(address_of(poor.public_key), instances=6)
    tx = chain.tx(poor, AppUpdate(bigger))
    assert rejected(chain, apps.process_app_update, tx).reason is Reason.INSUFFICIENT_FUNDS


def test_update_in_the_expiry_block_is_wrong_state() -> None:
    chain, owner = setup_chain()
    register(chain, owner, expire=100)
    chain.advance_to(101)
    tx = chain.tx(OWNER_KEY, AppUpdate(spec(owner)))
    assert rejected(chain, apps.process_app_update, tx).reason is Reason.APP_WRONG_STATE


def test_update_pays_the_difference_and_refunds_on_shrink() -> None:
    chain, owner = setup_chain(nodes=8)
    register(chain, owner)
    chain.advance_to(11)
    start = balance(chain, owner)
    bigger = spec(owner, instances=6)
    chain.apply(apps.process_app_update, chain.tx(OWNER_KEY, AppUpdate(bigger)))
    app = apps.get_app(chain.state, "myapp")
    assert app is not None and app.escrow == compute_price(bigger, chain.params, 1_000)
    assert app.expire_height == 11 + 1_000
    assert len(placement.get_app_nodes(chain.state, "myapp")) == 6
    paid = start - balance(chain, owner)
    assert paid > 0
    check_invariants(chain.state)
    chain.end_block()
    before = balance(chain, owner)
    smaller = spec(owner, instances=3, expire=500)
    chain.apply(apps.process_app_update, chain.tx(OWNER_KEY, AppUpdate(smaller)))
    refunds = [e for e in chain.events(EventKind.PAID) if e.fields[2] == PayReason.REFUND]
    refunded = sum(e.fields[1] for e in refunds)
    assert refunds and balance(chain, owner) - before == refunded - chain.params.app_charge
    unassigned = chain.events(EventKind.UNASSIGNED)
    assert sorted(e.fields[2] for e in unassigned) == [3, 4, 5]
    assert {e.fields[3] for e in unassigned} == {"scaled_down"}
    check_invariants(chain.state)


def test_update_moves_instances_that_no_longer_fit() -> None:
    chain = StateRunner()
    for i in range(4):
        chain.add_node(i, country="DE")
    for i in range(4, 8):
        chain.add_node(i, country="FR")
    owner = chain.fund(OWNER_KEY)
    register(chain, owner)
    moved = spec(owner, geolocation=geo("EU_FR"))
    fee = chain.params.min_fee + 3 * chain.params.relocation_price  # the 3 instances move
    chain.apply(apps.process_app_update, chain.tx(OWNER_KEY, AppUpdate(moved), fee))
    where = placement.get_app_nodes(chain.state, "myapp")
    assert {n for _, n in where} <= {node_id_of(i) for i in range(4, 8)}
    assert len(where) == 3
    check_invariants(chain.state)


# -- APP_EXTEND ------------------------------------------------------------------------------


def test_extend_rejections() -> None:
    chain, owner = setup_chain()
    register(chain, owner, expire=100)
    cases = [
        (OWNER_KEY, AppExtend("nosuch", 10), Reason.UNKNOWN_APP),
        (OTHER_KEY, AppExtend("myapp", 10), Reason.NOT_OWNER),
        (OWNER_KEY, AppExtend("myapp", 264_000), Reason.EXPIRE_TOO_FAR),
    ]
    for key, payload, reason in cases:
        assert rejected(chain, apps.process_app_extend, chain.tx(key, payload)).reason is reason
    poor = key_of(3)
    chain.fund(poor, 100)
    chain.apply(
        apps.process_app_update,
        chain.tx(OWNER_KEY, AppUpdate(spec(address_of(poor.public_key), expire=100))),
    )
    tx = chain.tx(poor, AppExtend("myapp", 100_000))
    assert rejected(chain, apps.process_app_extend, tx).reason is Reason.INSUFFICIENT_FUNDS
    chain.advance_to(101)
    tx = chain.tx(poor, AppExtend("myapp", 10))
    assert rejected(chain, apps.process_app_extend, tx).reason is Reason.APP_WRONG_STATE


def test_extend_name_is_checked_when_decoding() -> None:
    with pytest.raises(DecodeError) as info:
        AppExtend.from_fields(["Not An App", 10])
    assert info.value.reason is Reason.INVALID_SPEC


def test_extend_pays_more_blocks_and_the_old_expiry_is_stale() -> None:
    chain, owner = setup_chain()
    register(chain, owner, expire=100)
    before = balance(chain, owner)
    chain.apply(apps.process_app_extend, chain.tx(OWNER_KEY, AppExtend("myapp", 50)))
    assert before - balance(chain, owner) == compute_price(spec(owner), chain.params, 50)
    app = apps.get_app(chain.state, "myapp")
    assert app is not None and app.expire_height == 151
    assert chain.events(EventKind.APP_EXTENDED)[0].fields == ("myapp", 151)
    chain.advance_to(102)  # the old expiry bucket (101) passed without effect
    assert apps.get_app(chain.state, "myapp") is not None
    chain.advance_to(152)
    assert apps.get_app(chain.state, "myapp") is None


# -- APP_CANCEL ------------------------------------------------------------------------------


def test_cancel_rejections() -> None:
    chain, owner = setup_chain()
    register(chain, owner, expire=100)
    assert (
        rejected(chain, apps.process_app_cancel, chain.tx(OWNER_KEY, AppCancel("nosuch"))).reason
        is Reason.UNKNOWN_APP
    )
    assert (
        rejected(chain, apps.process_app_cancel, chain.tx(OTHER_KEY, AppCancel("myapp"))).reason
        is Reason.NOT_OWNER
    )
    chain.advance_to(101)
    assert (
        rejected(chain, apps.process_app_cancel, chain.tx(OWNER_KEY, AppCancel("myapp"))).reason
        is Reason.APP_WRONG_STATE
    )


def test_cancel_pays_hosts_then_refunds_the_rest() -> None:
    chain, owner = setup_chain()
    register(chain, owner)
    price = compute_price(spec(owner), chain.params, 1_000)
    chain.advance_to(101)  # 100 of 1,000 blocks hosted by 3 instances
    before = balance(chain, owner)
    chain.apply(apps.process_app_cancel, chain.tx(OWNER_KEY, AppCancel("myapp")))
    paid = chain.all_events(EventKind.PAID)
    hosting = [e for e in paid if e.fields[2] == PayReason.HOSTING]
    refund = [e for e in paid if e.fields[2] == PayReason.REFUND]
    assert len(refund) == 1
    per_node: dict[bytes, int] = {}
    for e in hosting:
        per_node[e.fields[3]] = per_node.get(e.fields[3], 0) + e.fields[1]
    assert len(per_node) == 3
    # a tenth of the escrow goes to the three hosts, give or take rounding of two settlements
    assert all(abs(v - price * 100 // 3_000) <= 2 for v in per_node.values())
    assert balance(chain, owner) - before == refund[0].fields[1]
    assert sum(e.fields[1] for e in paid) == price
    assert chain.events(EventKind.APP_CANCELLED)[0].fields == ("myapp", refund[0].fields[1])
    assert {e.fields[3] for e in chain.events(EventKind.UNASSIGNED)} == {"app_cancelled"}
    assert apps.get_app(chain.state, "myapp") is None
    assert placement.get_app_nodes(chain.state, "myapp") == ()
    assert all(placement.get_apps_on_node(chain.state, node_id_of(i)) == () for i in range(6))
    check_invariants(chain.state)


# -- expiry and settlement -------------------------------------------------------------------


def test_expiry_removes_the_app_and_spends_the_escrow_exactly() -> None:
    chain, owner = setup_chain()
    register(chain, owner, expire=100)
    price = compute_price(spec(owner, expire=100), chain.params, 100)
    chain.advance_to(101)
    chain.end_block()  # block 101: the expiry
    assert apps.get_app(chain.state, "myapp") is None
    assert placement.get_placement(chain.state, "myapp") is None
    assert all(placement.get_apps_on_node(chain.state, node_id_of(i)) == () for i in range(6))
    assert len(chain.all_events(EventKind.APP_EXPIRED)) == 1
    unassigned = chain.all_events(EventKind.UNASSIGNED)
    assert len(unassigned) == 3 and {e.fields[3] for e in unassigned} == {"app_expired"}
    assert sum(e.fields[1] for e in chain.all_events(EventKind.PAID)) == price
    check_invariants(chain.state)


def test_periodic_settlement_pays_hosts_during_the_life_of_an_app() -> None:
    chain, owner = setup_chain()
    register(chain, owner, expire=5_000)
    app = apps.get_app(chain.state, "myapp")
    assert app is not None
    chain.advance_to(app.next_settle)
    assert chain.all_events(EventKind.PAID) == []
    chain.end_block()
    hosting = chain.all_events(EventKind.PAID)
    assert len(hosting) == 3 and {e.fields[2] for e in hosting} == {PayReason.HOSTING}
    app2 = apps.get_app(chain.state, "myapp")
    assert app2 is not None and app2.settled_height == app.next_settle
    assert app2.paid_total == sum(e.fields[1] for e in hosting) > 0
    assert app2.next_settle == app.next_settle + chain.params.app_settle_interval


def test_an_instance_that_ran_nowhere_is_refunded() -> None:
    chain = StateRunner()
    for i in range(2):
        chain.add_node(i)
    owner = chain.fund(OWNER_KEY)
    register(chain, owner, expire=100)  # 3 wanted, 2 nodes: one instance runs nowhere
    price = compute_price(spec(owner, expire=100), chain.params, 100)
    start = balance(chain, owner)
    chain.advance_to(102)
    refunded = balance(chain, owner) - start
    # a third of the escrow (rounded down, plus rounding leftovers) comes back
    assert price // 3 <= refunded <= price // 3 + 3
