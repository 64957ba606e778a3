"""Review of issue 21 (secrets, owner operations): attacks found from the code and docs,
each a test that fails against the code as built and passes once the hole is closed."""

from __future__ import annotations

import json

from fluxchain.core import apps, placement, secrets
from fluxchain.core.owner_request import (
    NonceBook,
    OwnerRequestError,
    Refusal,
    check_owner_request,
)
from fluxchain.core.sealing import new_key_salt
from fluxchain.core.tx import AppRegister, SecretKind
from fluxchain.node.app_reports import parse_report
from tests.apps.test_apps import OWNER_KEY, setup_chain
from tests.apps.test_owner_request import NOW_MS, placed_app, request
from tests.apps.test_owner_request import OWNER_KEY as OP_OWNER_KEY
from tests.apps.test_secrets import NODES
from tests.support.state import CHAIN, component, key_of, spec


def test_pending_secrets_skip_the_component_and_shadowing_checks() -> None:
    """An owner sends APP_SECRETS before APP_REGISTER (the pending path) naming a
    component the spec will not have and an environment variable the spec sets in clear.

    Sent after the register, the same set is refused (`unknown_component`, `bad_field`:
    "which would win is ambiguous"); sent before it, `_process_pending_secrets` checks
    neither and `_adopt_pending_set` adopts it as is, so the chain holds a set that
    breaks its own rules. Should: the adopted set obeys them (the register's block checks
    the pending set against the spec, and drops or refuses what does not fit)."""
    chain, owner = setup_chain(NODES)
    values = {
        ("db", SecretKind.ENV, "PASSWORD"): b"no-such-component",
        ("web", SecretKind.ENV, "MODE"): b"shadows-the-plain-MODE",
    }
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "myapp", values, {}, new_key_salt()
    )
    chain.apply(secrets.process_app_secrets, chain.tx(OWNER_KEY, payload, fee=chain.params.min_fee))
    web = component(environment=("MODE=prod",))
    register = chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(web,))))
    chain.apply(apps.process_app_register, register)
    secrets.process_block(chain.ctx)

    adopted = secrets.get_secret_set(chain.state, "myapp")
    app = apps.get_app(chain.state, "myapp")
    assert app is not None
    components = {c.name: c for c in app.spec.components}
    broken = []
    for s in () if adopted is None else adopted.secrets:
        if s.component not in components:
            broken.append(f"{s.component}/{s.name}: no such component")
        elif s.kind is SecretKind.ENV and s.name in {
            e.split("=", 1)[0] for e in components[s.component].environment
        }:
            broken.append(f"{s.component}/{s.name}: shadows a plain variable")
    assert broken == [], f"the chain adopted secrets its own rules refuse: {broken}"


def test_one_app_owner_fills_the_nonce_book_and_locks_out_every_other_owner() -> None:
    """docs/security.md says only the owner's signed requests enter the replay book, so
    nobody can exhaust it. But the book is one per node, shared by every owner: the owner
    of any app the node hosts (a cheap one-instance app is enough) signs requests with
    fresh nonces until the book is full, and every other owner's request on that node is
    refused 429 `busy` for the next five minutes, again and again.

    The book's capacity is scaled down here (8 instead of 100,000: the attack only needs
    as many signatures). Should: one owner's requests cannot take another owner's share
    (a per-signer quota), so the victim's fresh request is accepted."""
    chain, host, _ = placed_app()  # "myapp", owned by the victim
    attacker = key_of(7)
    attacker_address = chain.fund(attacker)
    # the attacker's app, on every node (so on the victim's host), on another port
    own = spec(
        attacker_address, name="squatter", instances=6, components=(component(ports=(31001,)),)
    )
    chain.apply(apps.process_app_register, chain.tx(attacker, AppRegister(own)))
    chain.end_block()
    where = placement.get_placement(chain.state, "squatter")
    assert where is not None and host in where.nodes

    book = NonceBook(capacity=8)
    for _ in range(book.capacity):
        flood = request(attacker, host, app="squatter", valid_ms=300_000)
        check_owner_request(flood, chain.state, CHAIN, host, NOW_MS, book)

    victim = request(OP_OWNER_KEY, host)
    try:
        check_owner_request(victim, chain.state, CHAIN, host, NOW_MS + 1_000, book)
    except OwnerRequestError as exc:
        assert exc.reason is not Refusal.BUSY, (
            "another owner's requests filled the node's replay book: the app owner's own"
            " request is refused 429 busy"
        )
        raise


def test_a_lying_hosts_huge_number_breaks_the_app_page() -> None:
    """A hosting node answers `GET /agent/apps/{name}` with a JSON integer too large for a
    float in `report_age_s` (or as a workload's `instance`). `parse_report` is meant to
    take a lying host's answer field by field and refuse anything malformed; instead
    `float()` raises OverflowError, which it does not catch: it escapes
    `ReportGatherer.add_reports` and every `/apps/{name}` (and dashboard) page of the app
    fails, with nothing cached, for as long as the host answers so. Should: the answer is
    refused as malformed (None, "malformed answer") and the page shows the host
    unreachable."""
    node_id = bytes(range(20))
    huge = "1" + "0" * 400
    for body in (
        f'{{"node_id": "{node_id.hex()}", "workloads": [], "report_age_s": {huge}}}',
        json.dumps({"node_id": node_id.hex(), "workloads": [{"instance": 1e308 * 10}]}),
        f'{{"node_id": "{node_id.hex()}", "workloads": [{{"instance": 0, "component": "w",'
        f' "state": "running", "restarts": {huge}.5}}]}}',
    ):
        answer, error = parse_report(body.encode(), node_id)
        assert answer is None and error == "malformed answer", body[:80]
