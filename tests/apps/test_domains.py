"""Domains: one live app owns a domain, first come; cancel, expiry and an update that drops
it release it, held for its last owner's address `domain_hold_blocks` blocks, and then the
next app to name it owns it (docs/apps.md, "Domains")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fluxchain.core import apps
from fluxchain.core.appspec import AppSpec, Port
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import AppCancel, AppRegister, AppUpdate
from tests.support.state import StateRunner, component, key_of, make_params, spec

ALICE, BOB, CAROL = key_of(1), key_of(2), key_of(3)
BLOG = "blog.example.com"
HOLD = 10  # domain_hold_blocks of the tests that re-take a domain after its hold


def site(key: SigningKey, name: str, *domains: str, **changes: Any) -> AppSpec:
    """App `name` of `key`'s address serving `domains` on its one tcp port."""
    port = Port(31000, 80, domains=domains)
    return spec(address_of(key.public_key), name, components=(component(ports=(port,)),), **changes)


def setup_chain(**params: Any) -> StateRunner:
    chain = StateRunner(make_params(**params))
    for i in range(6):
        chain.add_node(i)
    for key in (ALICE, BOB, CAROL):
        chain.fund(key)
    return chain


def register(chain: StateRunner, key: SigningKey, app: AppSpec) -> None:
    chain.apply(apps.process_app_register, chain.tx(key, AppRegister(app)))


def update(chain: StateRunner, key: SigningKey, app: AppSpec) -> None:
    chain.apply(apps.process_app_update, chain.tx(key, AppUpdate(app)))


def cancel(chain: StateRunner, key: SigningKey, name: str) -> None:
    chain.apply(apps.process_app_cancel, chain.tx(key, AppCancel(name)))


def refused(chain: StateRunner, handler: Any, key: SigningKey, payload: Any) -> TxError:
    before = chain.state.pending_changes()
    with pytest.raises(TxError) as info:
        chain.apply(handler, chain.tx(key, payload))
    assert chain.state.pending_changes() == before, "a refused tx leaves no writes"
    return info.value


def owner_of(chain: StateRunner, domain: str) -> str | None:
    return apps.get_domain_owner(chain.state, domain)


def test_domain_taken_is_refused() -> None:
    chain = setup_chain()
    register(chain, ALICE, site(ALICE, "alice", BLOG))
    assert owner_of(chain, BLOG) == "alice"
    # another app naming it, at registration or in an update, is refused with the owner named
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN and "'alice'" in str(error)
    register(chain, BOB, site(BOB, "bob", "bob.example.com"))
    error = refused(
        chain, apps.process_app_update, BOB, AppUpdate(site(BOB, "bob", "bob.example.com", BLOG))
    )
    assert error.reason is Reason.DOMAIN_TAKEN
    assert apps.get_app(chain.state, "bob") is not None
    assert owner_of(chain, BLOG) == "alice" and owner_of(chain, "bob.example.com") == "bob"
    # the owner's own update keeps what it owns
    update(chain, ALICE, site(ALICE, "alice", BLOG, instances=4))
    assert owner_of(chain, BLOG) == "alice"
    status = apps.get_app_status(chain.state, "alice")
    assert status is not None and status["domains"] == [BLOG]


def test_domain_released_on_cancel_and_re_taken() -> None:
    chain = setup_chain(domain_hold_blocks=HOLD)
    register(chain, ALICE, site(ALICE, "alice", BLOG, "www.example.com"))
    chain.end_block()
    cancel(chain, ALICE, "alice")
    released = chain.height
    assert owner_of(chain, BLOG) is None and owner_of(chain, "www.example.com") is None
    # held for alice's address: bob only once the hold is over
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    chain.advance_to(released + HOLD - 1)
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    chain.advance_to(released + HOLD)
    register(chain, BOB, site(BOB, "bob", BLOG))
    assert owner_of(chain, BLOG) == "bob"


def test_domain_released_on_cancel_is_re_taken_by_its_owner_in_the_same_block() -> None:
    chain = setup_chain()
    register(chain, ALICE, site(ALICE, "alice", BLOG))
    chain.end_block()
    cancel(chain, ALICE, "alice")
    register(chain, ALICE, site(ALICE, "alice-v2", BLOG))  # a re-deploy, after the cancel
    assert owner_of(chain, BLOG) == "alice-v2"


def test_domain_released_on_expiry_and_re_taken() -> None:
    chain = setup_chain()
    register(chain, ALICE, site(ALICE, "alice", BLOG, expire=100))  # removed at end of 101
    chain.advance_to(101)
    # in the block of its expiry the app is no longer live: its owner may claim it there
    register(chain, ALICE, site(ALICE, "alice-v2", BLOG))
    assert owner_of(chain, BLOG) == "alice-v2"
    chain.end_block()  # alice is removed now, and must not take the domain with her
    assert apps.get_app(chain.state, "alice") is None
    assert owner_of(chain, BLOG) == "alice-v2"


def test_domain_released_on_expiry_when_nobody_re_takes_it() -> None:
    chain = setup_chain(domain_hold_blocks=HOLD)
    register(chain, ALICE, site(ALICE, "alice", BLOG, expire=100))  # expires at 101
    chain.advance_to(102)
    assert apps.get_app(chain.state, "alice") is None and owner_of(chain, BLOG) is None
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    chain.advance_to(101 + HOLD)  # the hold runs from the expiry
    register(chain, BOB, site(BOB, "bob", BLOG))
    assert owner_of(chain, BLOG) == "bob"


def test_domain_dropped_by_an_update_is_released_and_re_taken() -> None:
    chain = setup_chain(domain_hold_blocks=HOLD)
    register(chain, ALICE, site(ALICE, "alice", BLOG))
    chain.end_block()
    update(chain, ALICE, site(ALICE, "alice", "new.example.com"))
    released = chain.height
    assert owner_of(chain, BLOG) is None and owner_of(chain, "new.example.com") == "alice"
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    chain.advance_to(released + HOLD)
    register(chain, BOB, site(BOB, "bob", BLOG))
    assert owner_of(chain, BLOG) == "bob"


def test_domain_released_and_re_taken_in_one_block_follows_tx_order() -> None:
    chain = setup_chain()
    register(chain, ALICE, site(ALICE, "alice", BLOG))
    chain.end_block()
    # a register before alice's cancel in the block: refused, whatever comes after it
    error = refused(
        chain, apps.process_app_register, ALICE, AppRegister(site(ALICE, "alice-v2", BLOG))
    )
    assert error.reason is Reason.DOMAIN_TAKEN
    cancel(chain, ALICE, "alice")
    register(chain, ALICE, site(ALICE, "alice-v3", BLOG))  # the first after the release
    error = refused(
        chain, apps.process_app_register, ALICE, AppRegister(site(ALICE, "alice-v2", BLOG))
    )
    assert error.reason is Reason.DOMAIN_TAKEN and "'alice-v3'" in str(error)


def test_domain_of_an_app_kept_past_expiry_by_a_backlog_goes_to_the_next_claimant() -> None:
    # at most one expiry a block: the second app due at 101 stays one block past its expiry
    chain = setup_chain(app_expiries_per_block=1, domain_hold_blocks=1)
    register(chain, ALICE, site(ALICE, "first", "first.example.com", expire=100))
    register(chain, ALICE, site(ALICE, "second", BLOG, expire=100))
    chain.advance_to(102)
    assert apps.get_app(chain.state, "second") is not None  # not removed yet: not live either
    register(chain, BOB, site(BOB, "bob", BLOG))  # the hold ran from its expiry, 101
    assert owner_of(chain, BLOG) == "bob"
    status = apps.get_app_status(chain.state, "second")
    assert status is not None and status["domains"] == []  # the gateway no longer routes it
    chain.end_block()
    assert apps.get_app(chain.state, "second") is None and owner_of(chain, BLOG) == "bob"


def test_case_and_trailing_dot_variants_cannot_squat_a_domain() -> None:
    chain = setup_chain()
    register(chain, ALICE, site(ALICE, "alice", BLOG))
    for variant in ("Blog.Example.com", "blog.example.com.", "BLOG.EXAMPLE.COM"):
        app = site(BOB, "bob", variant)
        error = refused(chain, apps.process_app_register, BOB, AppRegister(app))
        assert error.reason is Reason.INVALID_SPEC, variant
    assert owner_of(chain, BLOG) == "alice"


def test_a_lapsed_apps_domain_cannot_be_taken_by_another_owner_while_its_dns_points_here() -> None:
    """The attack (a "dangling DNS" takeover): alice's shop owns blog.example.com and her
    DNS points it at the gateways. The moment her app lapses (she forgot to extend, or
    cancelled it to re-deploy), bob, who watches the chain, claims the name in that very
    block; every gateway now sends alice's visitors, their cookies and logins, to bob's
    container, and nothing on chain or at the gateways asked who controls the name. A
    released domain stays its last owner's (address) for a grace period; only she may claim
    it again in it."""
    chain = setup_chain()
    register(chain, ALICE, site(ALICE, "alice", BLOG, expire=100))
    chain.advance_to(101)
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    chain.end_block()
    assert apps.get_app(chain.state, "alice") is None
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    register(chain, ALICE, site(ALICE, "alice-again", BLOG))
    assert owner_of(chain, BLOG) == "alice-again"


def test_a_released_domain_leaves_no_record_once_its_hold_ends() -> None:
    """State growth: every app that names fresh domains and is cancelled left a held
    record behind for ever. Once the hold ends the record is deleted, and the domain is
    as free as one never named (a re-hold or a re-claim in between keeps its record)."""
    chain = setup_chain(domain_hold_blocks=HOLD)
    register(chain, ALICE, site(ALICE, "alice", BLOG, "www.example.com", "kept.example.com"))
    chain.end_block()
    update(chain, ALICE, site(ALICE, "alice", "kept.example.com"))  # drops two
    chain.end_block()
    register(chain, ALICE, site(ALICE, "alice-v2", "www.example.com"))  # re-claims one
    released = chain.height - 1
    chain.advance_to(released + HOLD - 1)
    assert chain.state.get(apps.domain_key(BLOG)) is not None  # still held for alice
    chain.advance_to(released + HOLD + 1)
    assert chain.state.get(apps.domain_key(BLOG)) is None
    assert owner_of(chain, "www.example.com") == "alice-v2"
    assert owner_of(chain, "kept.example.com") == "alice"
    register(chain, BOB, site(BOB, "bob", BLOG))
    assert owner_of(chain, BLOG) == "bob"


def test_a_released_app_name_is_held_for_its_owner_and_leaves_no_record_after() -> None:
    """An app's name is also its host name on every gateway (`<name>.<domain>`), so a name
    released by a cancel or an expiry is held like a domain: another owner is refused
    `app_name_held` while the hold lasts, its last owner may take it back, and once the
    hold ends its record is deleted and anyone may register the name."""
    chain = setup_chain(domain_hold_blocks=HOLD)
    register(chain, ALICE, site(ALICE, "shop"))
    chain.end_block()
    cancel(chain, ALICE, "shop")
    released = chain.height
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "shop")))
    assert error.reason is Reason.APP_NAME_HELD  # not even in the same block
    chain.advance_to(released + HOLD - 1)
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "shop")))
    assert error.reason is Reason.APP_NAME_HELD
    register(chain, ALICE, site(ALICE, "shop"))  # its owner takes it back
    chain.end_block()
    cancel(chain, ALICE, "shop")  # held again, from this release
    again = chain.height
    chain.advance_to(released + HOLD + 1)  # the first hold's end does not free it
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "shop")))
    assert error.reason is Reason.APP_NAME_HELD
    chain.advance_to(again + HOLD + 1)
    assert chain.state.get(apps.name_hold_key("shop")) is None
    register(chain, BOB, site(BOB, "shop"))
    assert apps.get_app(chain.state, "shop") is not None


def test_a_domain_an_update_drops_while_handing_the_app_away_is_held_for_the_signer() -> None:
    """Bob's app serves BLOG; his update hands the app to carol and drops BLOG. BLOG's DNS
    is bob's: it is held for bob (the signer), not for carol, whom the update names
    without her consent; and bob's own update may hand his app to alice while naming a
    domain held for him (the hold binds the signer, who chose the spec)."""
    chain = setup_chain()
    register(chain, BOB, site(BOB, "bob", BLOG))
    update(chain, BOB, replace(site(BOB, "bob"), owner=address_of(CAROL.public_key)))
    assert owner_of(chain, BLOG) is None  # released, held for bob
    register(chain, CAROL, site(CAROL, "carol"))
    error = refused(chain, apps.process_app_update, CAROL, AppUpdate(site(CAROL, "carol", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    register(chain, BOB, site(BOB, "bob2"))
    update(chain, BOB, replace(site(BOB, "bob2", BLOG), owner=address_of(ALICE.public_key)))
    assert owner_of(chain, BLOG) == "bob2"
