"""red23d: a held domain taken by handing an app to its holder (fresh-eyes review).

A released domain is held `domain_hold_blocks` for its last owner's address: "only an app
of that address may claim it" (docs/apps.md, Domains), so that nobody watching the chain
receives its visitors while its DNS still points at the gateways. `_check_domains` tests
the *new spec's* owner against the holder, and APP_UPDATE may hand an app to any address
without that address's consent. So bob updates his own app to name alice's held domain
and, in the same tx, names alice as its owner: the check passes, and every gateway routes
alice's domain to bob's image (he chose the spec) until alice notices an app she never
made. The hold must bind the signer (the one who chose the spec), not an owner it names.
"""

from __future__ import annotations

from dataclasses import replace

from fluxchain.core import apps
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import AppRegister, AppUpdate
from tests.apps.test_domains import ALICE, BLOG, BOB, refused, register, setup_chain, site


def test_red23d_a_held_domain_cannot_be_taken_by_handing_an_app_to_its_holder() -> None:
    chain = setup_chain()
    register(chain, ALICE, site(ALICE, "alice", BLOG, expire=100))
    chain.advance_to(101)
    chain.end_block()
    assert apps.get_app(chain.state, "alice") is None  # lapsed: BLOG held for alice
    # bob may not claim it under his own address (the existing defence) ...
    error = refused(chain, apps.process_app_register, BOB, AppRegister(site(BOB, "bob", BLOG)))
    assert error.reason is Reason.DOMAIN_TAKEN
    # ... so he registers an app without it, then hands it to alice naming BLOG
    register(chain, BOB, site(BOB, "bob"))
    chain.end_block()
    handed = replace(site(BOB, "bob", BLOG), owner=address_of(ALICE.public_key))
    try:
        chain.apply(apps.process_app_update, chain.tx(BOB, AppUpdate(handed)))
    except TxError as error:
        assert error.reason is Reason.DOMAIN_TAKEN
    assert apps.get_domain_owner(chain.state, BLOG) != "bob", (
        f"bob's app (his image, his spec) now serves alice's held domain {BLOG}"
    )
