"""Sealed app secrets: the cryptography, the owner's APP_SECRETS, a host's
APP_SECRETS_SEAL on failover, and every way a node could abuse the fee-free seal."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fluxchain.agent.agent import open_app_secrets
from fluxchain.core import admission, apps, secrets
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.records import KeyRecord, NodeStatus, node_by_key_key, node_key
from fluxchain.core.sealing import (
    SEALED_KEY_SIZE,
    SealingError,
    derive_data_key,
    key_check,
    new_key_salt,
    open_sealed_key,
    seal_key,
)
from fluxchain.core.tx import (
    AppCancel,
    AppRegister,
    AppSecrets,
    AppSecretsReject,
    AppSecretsSeal,
    AppUpdate,
    Seal,
    SecretKind,
    Tx,
    check_stateless,
    memo_fee,
)
from fluxchain.node.duties import reseal_due
from tests.apps.test_apps import OTHER_KEY, OWNER_KEY, rejected, setup_chain
from tests.support.state import StateRunner, component, spec

PASSWORD = b"hunter2-correct-horse"
VALUES = {
    ("web", SecretKind.ENV, "DB_PASSWORD"): PASSWORD,
    ("web", SecretKind.REGISTRY_AUTH, "registry.example.com"): b"deploy:s3cret-token",
}
NODES = 6


def node_signing_key(i: int) -> SigningKey:
    return SigningKey(bytes([i + 1]) * 32)


def chain_with_app() -> tuple[StateRunner, bytes]:
    """Six nodes with real node keys; app "myapp" (3 instances) placed on three."""
    chain, owner = setup_chain(NODES)
    for node_id, node in list(chain.state.items(b"n")):
        index = [nid for nid, _ in chain.state.items(b"n")].index(node_id)
        real = replace(node, node_key=node_signing_key(index).public_key)
        chain.state.put(node_key(node.node_id), real)
        chain.state.put(node_by_key_key(real.node_key), KeyRecord(node.node_id, 0, 0, 0))
    web = component(environment=("MODE=prod",))
    register = chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(web,))))
    chain.apply(apps.process_app_register, register)
    return chain, owner


def keys_by_node(chain: StateRunner) -> dict[bytes, SigningKey]:
    out = {}
    for index, (_key, node) in enumerate(chain.state.items(b"n")):
        out[node.node_id] = node_signing_key(index)
    return out


def owner_sets_secrets(chain: StateRunner, hosts: tuple[bytes, ...], salt: bytes) -> Tx:
    keys = keys_by_node(chain)
    payload = secrets.seal_secrets(
        OWNER_KEY,
        chain.params.chain_id,
        "myapp",
        VALUES,
        {h: keys[h].public_key for h in hosts},
        salt,
    )
    tx = chain.secrets_tx(OWNER_KEY, payload)
    chain.apply(secrets.process_app_secrets, tx)
    return tx


def unseal_as(chain: StateRunner, node_id: bytes) -> dict[tuple[str, SecretKind, str], bytes]:
    """What the agent of `node_id` does: open its sealed key, then every value."""
    secret_set = secrets.get_secret_set(chain.state, "myapp")
    sealed = secrets.get_sealed_key(chain.state, "myapp", node_id)
    assert secret_set is not None and sealed is not None
    key = open_sealed_key(keys_by_node(chain)[node_id].secret, sealed.sealed, sealed.key_check)
    return secrets.open_secrets(secret_set, key, chain.params.chain_id, "myapp")


def seal_tx(
    chain: StateRunner, sealer: bytes, targets: tuple[bytes, ...], signer: SigningKey | None = None
) -> Tx:
    """The APP_SECRETS_SEAL a host's node sends: it unseals its key and seals it on."""
    keys = keys_by_node(chain)
    sealed = secrets.get_sealed_key(chain.state, "myapp", sealer)
    assert sealed is not None
    data_key = open_sealed_key(keys[sealer].secret, sealed.sealed, sealed.key_check)
    seals = tuple(Seal(t, seal_key(keys[t].public_key, data_key)) for t in targets)
    payload = AppSecretsSeal("myapp", sealer, sealed.key_check, seals)
    return chain.tx(signer or keys[sealer], payload)


def hosts_of(chain: StateRunner) -> tuple[bytes, ...]:
    return secrets.get_hosts(chain.state, "myapp")


def fail_over(chain: StateRunner, victim: bytes) -> bytes:
    """Take `victim` down; return the node that took its instance."""
    before = set(hosts_of(chain))
    chain.set_status(victim, NodeStatus.DOWN)
    secrets.process_block(chain.ctx)
    (new_host,) = set(hosts_of(chain)) - before
    return new_host


# -- the cryptography -------------------------------------------------------------------------


def test_a_sealed_key_opens_only_with_its_node_key() -> None:
    node, other = node_signing_key(1), node_signing_key(2)
    data_key = derive_data_key(OWNER_KEY.secret, "c", "myapp", new_key_salt())
    sealed = seal_key(node.public_key, data_key)
    assert len(sealed) == SEALED_KEY_SIZE
    check = key_check(data_key)
    assert open_sealed_key(node.secret, sealed, check) == data_key
    with pytest.raises(SealingError):
        open_sealed_key(other.secret, sealed, check)


def test_garbage_sealed_to_a_node_is_detected_by_the_key_check() -> None:
    """A lying host seals a key that opens but is not the app's: the new host can tell."""
    node = node_signing_key(1)
    right = derive_data_key(OWNER_KEY.secret, "c", "myapp", new_key_salt())
    garbage = seal_key(node.public_key, b"\x00" * 32)
    with pytest.raises(SealingError, match="not the app's data key"):
        open_sealed_key(node.secret, garbage, key_check(right))


def test_a_ciphertext_moved_to_another_secret_does_not_open() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    secret_set = secrets.get_secret_set(chain.state, "myapp")
    assert secret_set is not None
    first, second = secret_set.secrets
    swapped = replace(
        secret_set,
        secrets=(replace(first, ciphertext=second.ciphertext), second),
    )
    key = derive_data_key(OWNER_KEY.secret, chain.params.chain_id, "myapp", secret_set.key_salt)
    with pytest.raises(SealingError):
        secrets.open_secrets(swapped, key, chain.params.chain_id, "myapp")


# -- APP_SECRETS (the owner) ------------------------------------------------------------------


def test_owner_sets_secrets_and_each_host_opens_them() -> None:
    chain, _ = chain_with_app()
    tx = owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    assert PASSWORD not in tx.raw, "the tx carries ciphertext only"
    for host in hosts_of(chain):
        assert unseal_as(chain, host) == VALUES
    (event,) = chain.events(EventKind.APP_SECRETS_SET)
    assert event.fields == ("myapp", 2, 3)


def test_plaintext_is_in_no_state_record() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    chain.end_block()
    for _key, encoded in chain.state.encoded_items():
        assert PASSWORD not in encoded and b"s3cret-token" not in encoded


def test_only_the_owner_sets_secrets() -> None:
    chain, _ = chain_with_app()
    chain.fund(OTHER_KEY)
    payload = secrets.seal_secrets(
        OTHER_KEY, chain.params.chain_id, "myapp", VALUES, {}, new_key_salt()
    )
    tx = chain.secrets_tx(OTHER_KEY, payload)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.NOT_OWNER


def test_a_secret_for_a_missing_component_is_refused() -> None:
    chain, _ = chain_with_app()
    values = {("db", SecretKind.ENV, "PASSWORD"): b"x"}
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "myapp", values, {}, new_key_salt()
    )
    tx = chain.secrets_tx(OWNER_KEY, payload)
    error = rejected(chain, secrets.process_app_secrets, tx)
    assert error.reason is Reason.UNKNOWN_COMPONENT


def test_a_secret_shadowing_a_plain_variable_is_refused() -> None:
    chain, _ = chain_with_app()
    values = {("web", SecretKind.ENV, "MODE"): b"x"}
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "myapp", values, {}, new_key_salt()
    )
    tx = chain.secrets_tx(OWNER_KEY, payload)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.BAD_FIELD


def test_owner_cannot_seal_to_a_node_that_does_not_host_the_app() -> None:
    chain, _ = chain_with_app()
    stranger = next(n for n in keys_by_node(chain) if n not in hosts_of(chain))
    keys = keys_by_node(chain)
    payload = secrets.seal_secrets(
        OWNER_KEY,
        chain.params.chain_id,
        "myapp",
        VALUES,
        {stranger: keys[stranger].public_key},
        new_key_salt(),
    )
    tx = chain.secrets_tx(OWNER_KEY, payload)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.NOT_PLACED


def test_rotating_the_key_drops_every_old_sealed_key() -> None:
    chain, _ = chain_with_app()
    hosts = hosts_of(chain)
    owner_sets_secrets(chain, hosts, new_key_salt())
    owner_sets_secrets(chain, hosts[:1], new_key_salt())
    assert secrets.get_sealed_key(chain.state, "myapp", hosts[0]) is not None
    for host in hosts[1:]:
        assert secrets.get_sealed_key(chain.state, "myapp", host) is None
        assert chain.state.get(secrets.sealed_key_key("myapp", host)) is None


# -- failover: APP_SECRETS_SEAL (a surviving host) -------------------------------------------


def test_a_surviving_host_reseals_to_the_new_host_with_no_owner_action() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    chain.end_block()
    victim, survivor = hosts_of(chain)[0], hosts_of(chain)[1]
    new_host = fail_over(chain, victim)
    assert chain.state.get(secrets.sealed_key_key("myapp", victim)) is None, "victim forgotten"
    assert secrets.compute_unsealed_hosts(chain.state, "myapp") == [new_host]
    chain.apply(secrets.process_app_secrets_seal, seal_tx(chain, survivor, (new_host,)))
    assert unseal_as(chain, new_host) == VALUES
    assert secrets.compute_unsealed_hosts(chain.state, "myapp") == []


def test_seal_replay_to_an_already_sealed_host_is_refused() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    victim, survivor, other = hosts_of(chain)
    new_host = fail_over(chain, victim)
    chain.apply(secrets.process_app_secrets_seal, seal_tx(chain, survivor, (new_host,)))
    # the other survivor (or a replay) may not overwrite the good key with garbage
    error = rejected(chain, secrets.process_app_secrets_seal, seal_tx(chain, other, (new_host,)))
    assert error.reason is Reason.ALREADY_SEALED


def test_seal_from_a_node_that_does_not_host_the_app_is_refused() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    victim = hosts_of(chain)[0]
    new_host = fail_over(chain, victim)
    # the old host still has its key, but it is no host any more: it may not seal
    keys = keys_by_node(chain)
    data_key = derive_data_key(
        OWNER_KEY.secret,
        chain.params.chain_id,
        "myapp",
        secrets.get_secret_set(chain.state, "myapp").key_salt,  # type: ignore[union-attr]
    )
    payload = AppSecretsSeal(
        "myapp",
        victim,
        key_check(data_key),
        (Seal(new_host, seal_key(keys[new_host].public_key, data_key)),),
    )
    tx = chain.tx(keys[victim], payload)
    assert rejected(chain, secrets.process_app_secrets_seal, tx).reason is Reason.NOT_HOSTING


def test_seal_to_a_node_the_chain_did_not_place_is_refused() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    survivor = hosts_of(chain)[0]
    stranger = next(n for n in keys_by_node(chain) if n not in hosts_of(chain))
    error = rejected(chain, secrets.process_app_secrets_seal, seal_tx(chain, survivor, (stranger,)))
    assert error.reason is Reason.NOT_PLACED


def test_seal_signed_by_another_key_than_the_sealers_is_refused() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    victim, survivor, _ = hosts_of(chain)
    new_host = fail_over(chain, victim)
    tx = seal_tx(chain, survivor, (new_host,), signer=node_signing_key(40))
    assert rejected(chain, secrets.process_app_secrets_seal, tx).reason is Reason.NOT_OWNER


def test_seal_from_a_host_without_a_key_is_refused() -> None:
    chain, _ = chain_with_app()
    hosts = hosts_of(chain)
    owner_sets_secrets(chain, hosts[:1], new_key_salt())  # only the first host got the key
    keys = keys_by_node(chain)
    set_ = secrets.get_secret_set(chain.state, "myapp")
    assert set_ is not None
    payload = AppSecretsSeal(
        "myapp", hosts[1], set_.key_check, (Seal(hosts[2], b"\x04" * SEALED_KEY_SIZE),)
    )
    tx = chain.tx(keys[hosts[1]], payload)
    assert rejected(chain, secrets.process_app_secrets_seal, tx).reason is Reason.NO_SEALED_KEY


def test_seal_of_a_rotated_key_is_refused() -> None:
    chain, _ = chain_with_app()
    victim, survivor, _ = hosts_of(chain)
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    new_host = fail_over(chain, victim)
    stale = seal_tx(chain, survivor, (new_host,))
    owner_sets_secrets(chain, (survivor,), new_key_salt())
    error = rejected(chain, secrets.process_app_secrets_seal, stale)
    assert error.reason is Reason.KEY_CHANGED


def test_seal_spam_is_refused_at_admission_on_committed_state() -> None:
    """Fee-free: the same checks run before the mempool takes one (core/admission.py)."""
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    survivor, other = hosts_of(chain)[1], hosts_of(chain)[2]
    chain.end_block()
    tx = seal_tx(chain, survivor, (other,))
    with pytest.raises(Exception) as info:
        admission.check_fee_free(chain.state, chain.params, chain.height, tx)
    assert getattr(info.value, "reason", None) is Reason.ALREADY_SEALED


def test_secrets_of_an_ended_app_do_not_pass_to_the_next_app_of_that_name() -> None:
    chain, owner = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    chain.end_block()
    chain.apply(apps.process_app_cancel, chain.tx(OWNER_KEY, AppCancel("myapp")))
    # another owner cannot even take the name yet (it is held for its last owner: the
    # gateways serve it), and the owner's own new app of that name starts without secrets
    other = chain.fund(OTHER_KEY)
    taken = AppRegister(spec(other, name="myapp"))
    error = rejected(chain, apps.process_app_register, chain.tx(OTHER_KEY, taken))
    assert error.reason is Reason.APP_NAME_HELD
    chain.apply(
        apps.process_app_register, chain.tx(OWNER_KEY, AppRegister(spec(owner, name="myapp")))
    )
    secrets.process_block(chain.ctx)
    assert secrets.get_secret_set(chain.state, "myapp") is None
    for host in hosts_of(chain):
        assert secrets.get_sealed_key(chain.state, "myapp", host) is None


# -- the hosting agent: what it opens, and what it reports when it cannot --------------------


def agent_view(chain: StateRunner) -> dict[str, Any]:
    """The `GET /apps/myapp/secrets` answer an agent reads (api/queries.py)."""
    view = secrets.get_secrets_view(chain.state, "myapp")
    assert view is not None
    return {"chain_id": chain.params.chain_id, **view}


def test_the_agent_opens_the_values_sealed_to_its_node() -> None:
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    host = hosts_of(chain)[0]
    opened = open_app_secrets(keys_by_node(chain)[host].secret, host, agent_view(chain), "myapp")
    assert opened == {where: value.decode() for where, value in VALUES.items()}


def test_garbage_sealed_by_a_lying_host_is_reported_secret_unsealable() -> None:
    """A host seals a key that is not the app's to a new host: the new host's agent opens
    nothing, holds the component and reports why; the owner re-seals."""
    chain, _ = chain_with_app()
    victim, liar, _ = hosts_of(chain)
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    new_host = fail_over(chain, victim)
    keys = keys_by_node(chain)
    check = secrets.get_secret_set(chain.state, "myapp").key_check  # type: ignore[union-attr]
    garbage = (Seal(new_host, seal_key(keys[new_host].public_key, b"\x01" * 32)),)
    lie = chain.tx(keys[liar], AppSecretsSeal("myapp", liar, check, garbage))
    chain.apply(secrets.process_app_secrets_seal, lie)  # the chain cannot tell
    with pytest.raises(SealingError, match="not the app's data key"):
        open_app_secrets(keys[new_host].secret, new_host, agent_view(chain), "myapp")
    # the owner's re-seal (same secrets and key, seals to every host) repairs it
    secret_set = secrets.get_secret_set(chain.state, "myapp")
    assert secret_set is not None
    data_key = derive_data_key(
        OWNER_KEY.secret, chain.params.chain_id, "myapp", secret_set.key_salt
    )
    reseal = AppSecrets(
        "myapp",
        secret_set.key_salt,
        secret_set.key_check,
        secret_set.secrets,
        tuple(Seal(h, seal_key(keys[h].public_key, data_key)) for h in hosts_of(chain)),
    )
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OWNER_KEY, reseal))
    opened = open_app_secrets(keys[new_host].secret, new_host, agent_view(chain), "myapp")
    assert opened[("web", SecretKind.ENV, "DB_PASSWORD")] == PASSWORD.decode()


def test_an_agent_without_a_sealed_key_says_so() -> None:
    chain, _ = chain_with_app()
    hosts = hosts_of(chain)
    owner_sets_secrets(chain, hosts[:1], new_key_salt())
    with pytest.raises(SealingError, match="no key is sealed to this node yet"):
        open_app_secrets(keys_by_node(chain)[hosts[1]].secret, hosts[1], agent_view(chain), "myapp")


# -- APP_SECRETS_REJECT: a host refuses the garbage a lying host sealed to it --------------


def lying_seal(chain: StateRunner) -> tuple[bytes, bytes, bytes]:
    """A host seals garbage to the host that replaced a dead one; (liar, honest, new)."""
    chain_hosts = hosts_of(chain)
    victim, liar, honest = chain_hosts
    owner_sets_secrets(chain, chain_hosts, new_key_salt())
    new_host = fail_over(chain, victim)
    keys = keys_by_node(chain)
    check = secrets.get_secret_set(chain.state, "myapp").key_check  # type: ignore[union-attr]
    garbage = (Seal(new_host, seal_key(keys[new_host].public_key, b"\x01" * 32)),)
    chain.apply(
        secrets.process_app_secrets_seal,
        chain.tx(keys[liar], AppSecretsSeal("myapp", liar, check, garbage)),
    )
    return liar, honest, new_host


def reject_tx(chain: StateRunner, node_id: bytes) -> Tx:
    check = secrets.get_secret_set(chain.state, "myapp").key_check  # type: ignore[union-attr]
    return chain.tx(keys_by_node(chain)[node_id], AppSecretsReject("myapp", node_id, check))


def test_a_host_rejects_garbage_and_the_liar_cannot_seal_to_it_again() -> None:
    chain, _ = chain_with_app()
    liar, honest, new_host = lying_seal(chain)
    chain.apply(secrets.process_app_secrets_reject, reject_tx(chain, new_host))
    assert secrets.get_sealed_key(chain.state, "myapp", new_host) is None
    assert secrets.get_refused_sealers(chain.state, "myapp", new_host) == (liar,)
    (event,) = chain.events(EventKind.APP_SECRETS_REJECTED)
    assert event.fields == ("myapp", new_host, liar)
    error = rejected(chain, secrets.process_app_secrets_seal, seal_tx(chain, liar, (new_host,)))
    assert error.reason is Reason.REFUSED_SEALER
    chain.apply(secrets.process_app_secrets_seal, seal_tx(chain, honest, (new_host,)))
    assert unseal_as(chain, new_host) == VALUES


def test_the_on_duty_sealer_skips_a_sealer_the_target_rejected() -> None:
    chain, _ = chain_with_app()
    liar, honest, new_host = lying_seal(chain)
    chain.apply(secrets.process_app_secrets_reject, reject_tx(chain, new_host))
    keys = keys_by_node(chain)
    for height in range(4):  # whatever the height, only the honest holder is on duty
        assert reseal_due(chain.state, keys[liar].public_key, height) == []
        due = reseal_due(chain.state, keys[honest].public_key, height)
        assert due == [("myapp", honest, [new_host])]


def test_reject_without_a_sealed_key_or_from_a_non_host_is_refused() -> None:
    chain, _ = chain_with_app()
    hosts = hosts_of(chain)
    owner_sets_secrets(chain, hosts[:1], new_key_salt())
    error = rejected(chain, secrets.process_app_secrets_reject, reject_tx(chain, hosts[1]))
    assert error.reason is Reason.NO_SEALED_KEY
    stranger = next(n for n in keys_by_node(chain) if n not in hosts)
    error = rejected(chain, secrets.process_app_secrets_reject, reject_tx(chain, stranger))
    assert error.reason is Reason.NOT_HOSTING


def test_refusals_go_with_the_instance() -> None:
    chain, _ = chain_with_app()
    _liar, _honest, new_host = lying_seal(chain)
    chain.apply(secrets.process_app_secrets_reject, reject_tx(chain, new_host))
    chain.set_status(new_host, NodeStatus.DOWN)
    secrets.process_block(chain.ctx)
    assert chain.state.get(secrets.refusals_key("myapp", new_host)) is None


# -- secrets sent before the register: the app never runs without them ---------------------


def test_secrets_sent_before_the_register_are_the_apps_from_its_first_block() -> None:
    chain, owner = setup_chain(NODES)
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "myapp", VALUES, {}, new_key_salt()
    )
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OWNER_KEY, payload))
    assert secrets.get_secret_set(chain.state, "myapp") is None  # pending, no app yet
    web = component(environment=("MODE=prod",))
    register = chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(web,))))
    chain.apply(apps.process_app_register, register)
    secrets.process_block(chain.ctx)
    adopted = secrets.get_secret_set(chain.state, "myapp")
    assert adopted is not None and adopted.key_check == payload.key_check
    assert chain.state.get(secrets.pending_set_key("myapp", owner)) is None
    # every host knows at once that the app has secrets, and holds no key yet
    assert secrets.compute_unsealed_hosts(chain.state, "myapp") == sorted(hosts_of(chain))


def test_another_owners_pending_secrets_never_reach_the_app() -> None:
    chain, owner = setup_chain(NODES)
    chain.fund(OTHER_KEY)
    payload = secrets.seal_secrets(
        OTHER_KEY, chain.params.chain_id, "myapp", VALUES, {}, new_key_salt()
    )
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OTHER_KEY, payload))
    chain.apply(apps.process_app_register, chain.tx(OWNER_KEY, AppRegister(spec(owner))))
    secrets.process_block(chain.ctx)
    assert secrets.get_secret_set(chain.state, "myapp") is None


def test_pending_secrets_cannot_carry_seals() -> None:
    chain, _ = setup_chain(NODES)
    keys = keys_by_node(chain)
    some = next(iter(keys))
    payload = secrets.seal_secrets(
        OWNER_KEY,
        chain.params.chain_id,
        "myapp",
        VALUES,
        {some: keys[some].public_key},
        new_key_salt(),
    )
    tx = chain.secrets_tx(OWNER_KEY, payload)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.NOT_PLACED


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
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OWNER_KEY, payload))
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
    # dropped with an event naming why, and the pending record gone
    (dropped,) = chain.events(EventKind.APP_SECRETS_DROPPED)
    assert dropped.fields == ("myapp", owner, Reason.UNKNOWN_COMPONENT.value)
    assert chain.state.get(secrets.pending_set_key("myapp", owner)) is None


@pytest.mark.parametrize(
    ("values", "environment"),
    [
        ({("db", SecretKind.ENV, "PASSWORD"): b"x"}, ()),  # no component "db"
        ({("web", SecretKind.ENV, "MODE"): b"x"}, ("MODE=prod",)),  # MODE set in clear
    ],
)
def test_a_register_whose_pending_secrets_do_not_fit_is_refused(
    values: dict[tuple[str, SecretKind, str], bytes], environment: tuple[str, ...]
) -> None:
    """The register itself (as blocks run it) refuses a spec its owner's pending set does
    not fit: the app never runs without the secrets its owner sealed for it."""
    chain, owner = setup_chain(NODES)
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "myapp", values, {}, new_key_salt()
    )
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OWNER_KEY, payload))
    web = component(environment=environment)
    register = chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(web,))))
    error = rejected(chain, secrets.process_app_register, register)
    assert error.reason is Reason.SECRETS_DO_NOT_FIT
    assert apps.get_app(chain.state, "myapp") is None
    # the pending set waits for a spec that fits it
    assert chain.state.get(secrets.pending_set_key("myapp", owner)) is not None


def test_an_update_that_orphans_or_shadows_a_secret_is_refused() -> None:
    """APP_UPDATE must not leave a secret without its component, nor set a secret
    variable in clear: refused `secrets_do_not_fit`, the app's spec unchanged."""
    chain, owner = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    before = apps.get_app(chain.state, "myapp")
    assert before is not None
    renamed = component(name="site", environment=("MODE=prod",))
    shadowing = component(environment=("MODE=prod", "DB_PASSWORD=in-clear"))
    for web in (renamed, shadowing):
        update = chain.tx(OWNER_KEY, AppUpdate(spec(owner, components=(web,))))
        error = rejected(chain, secrets.process_app_update, update)
        assert error.reason is Reason.SECRETS_DO_NOT_FIT
    assert apps.get_app(chain.state, "myapp") == before
    # an update that keeps the secrets' component and variables goes through
    fitting = component(environment=("MODE=staging",))
    chain.apply(
        secrets.process_app_update,
        chain.tx(OWNER_KEY, AppUpdate(spec(owner, components=(fitting,)))),
    )


def test_the_secrets_view_is_provable_key_by_key() -> None:
    """`GET /apps/{name}/secrets?prove=1` renders the view from single-key reads (a
    listing of the table cannot be proven): the view lists the hosts' current keys."""
    chain, _ = chain_with_app()
    hosts = hosts_of(chain)
    owner_sets_secrets(chain, hosts[:2], new_key_salt())
    view = secrets.get_secrets_view(chain.state, "myapp")
    assert view is not None
    assert sorted(view["sealed"]) == sorted(h.hex() for h in hosts[:2])
    assert view["unsealed_hosts"] == [h.hex() for h in sorted(hosts[2:])]


@pytest.mark.parametrize("name", ["PORT", "HOST", "FLUX_APP", "FLUX_DB_ADDR"])
def test_a_secret_named_like_an_agent_variable_is_refused(name: str) -> None:
    """The agent sets PORT, HOST and FLUX_* in every workload's environment after the
    secrets: a secret of such a name would be sealed, paid for and never seen by the app.
    Refused by the chain's rules (`bad_field`), pending or not."""
    chain, _ = chain_with_app()
    values = {("web", SecretKind.ENV, name): b"x"}
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "myapp", values, {}, new_key_salt()
    )
    tx = chain.secrets_tx(OWNER_KEY, payload)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.BAD_FIELD


def test_pending_secrets_keep_a_full_tx_in_state_forever_for_one_min_fee() -> None:
    """Attack: any funded account sends APP_SECRETS for names it never registers. Each
    is kept as a pending set under (name, sender) with no expiry ("one never registered
    stays"), and it pays the flat min_fee however large: 32 secrets of up to 4 KiB, a tx
    near max_tx_bytes, for one min_fee, in every node's state for good (a memo of as many
    bytes pays one more min_fee per 256 bytes and is only in the block). Looping over
    names grows every node's state by ~64 KiB per min_fee. Should: a set's ciphertext
    bytes pay like a memo's (`memo_fee`), refused `fee_too_low` otherwise (and pending
    sets go after a bounded wait)."""
    chain, owner = setup_chain(NODES)
    value = b"v" * 1900
    values = {("web", SecretKind.ENV, f"V{i}"): value for i in range(32)}
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "never-registered", values, {}, new_key_salt()
    )
    tx = chain.tx(OWNER_KEY, payload, fee=chain.params.min_fee)
    assert len(tx.raw) <= chain.params.max_tx_bytes
    memo_price = chain.params.min_fee + memo_fee(b"x" * len(tx.raw), chain.params)
    try:
        check_stateless(tx, chain.params)
    except TxError as exc:
        assert exc.reason is Reason.FEE_TOO_LOW
        return
    chain.apply(secrets.process_app_secrets, tx)
    kept = chain.state.get(secrets.pending_set_key("never-registered", owner))
    assert kept is None, (
        f"{len(tx.raw)} bytes kept in state with no expiry for a fee of {tx.fee}"
        f" (a memo of as many bytes pays {memo_price})"
    )


def test_an_app_handed_to_a_new_owner_keeps_secrets_only_the_old_owner_can_read() -> None:
    """Attack: APP_UPDATE may hand an app to a new owner (docs/apps.md). The secrets stay:
    their data key is derived from the previous owner's private key, so after the
    hand-over the previous owner (who may no longer touch the app) still opens every
    value the app runs with, today's and, while the key is not rotated, every host's;
    the new owner can neither read nor re-seal them (`flux-wallet app secrets` refuses:
    "set with another owner key") and hosts keep running them. A seller keeps reading
    the database password of the app it sold. Should: a hand-over with secrets is
    refused `secrets_do_not_fit` until the owner removes them, or it drops the set and
    its sealed keys (the hosts hold the app until the new owner seals its own)."""
    chain, _ = chain_with_app()
    owner_sets_secrets(chain, hosts_of(chain), new_key_salt())
    new_owner = address_of(OTHER_KEY.public_key)
    web = component(environment=("MODE=prod",))
    hand_over = chain.tx(OWNER_KEY, AppUpdate(spec(new_owner, components=(web,))))
    try:
        chain.apply(secrets.process_app_update, hand_over)
    except TxError as exc:
        assert exc.reason is Reason.SECRETS_DO_NOT_FIT
        return
    app = apps.get_app(chain.state, "myapp")
    assert app is not None and app.spec.owner == new_owner  # handed over
    left = secrets.get_secret_set(chain.state, "myapp")
    assert left is None, "the previous owner's secrets run on under the new owner"
