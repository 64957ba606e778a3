"""A secret set sent before its app's register (a pending set) that will never apply is its
sender's to delete: an APP_SECRETS without secrets or seals (`flux-wallet app secrets NAME
--delete`). Nobody else can delete it."""

from __future__ import annotations

from typing import Any

from fluxchain.core import apps, secrets
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import Reason
from fluxchain.core.events import EventKind
from fluxchain.core.sealing import KEY_CHECK_SIZE, KEY_SALT_SIZE, new_key_salt
from fluxchain.core.tx import AppRegister, AppSecrets, SecretKind, secrets_fee
from tests.apps.test_apps import OTHER_KEY, OWNER_KEY, rejected, setup_chain
from tests.support.state import StateRunner, component, make_params, spec

NODES = 6
FITS_NO_SPEC = {("db", SecretKind.ENV, "PASSWORD"): b"for-a-component-never-made"}
FITS = {("web", SecretKind.ENV, "DB_PASSWORD"): b"hunter2-correct-horse"}
EMPTY = AppSecrets("myapp", bytes(KEY_SALT_SIZE), bytes(KEY_CHECK_SIZE), (), ())


def send_pending(
    chain: StateRunner, key: SigningKey, values: dict[tuple[str, SecretKind, str], bytes]
) -> None:
    payload = secrets.seal_secrets(key, chain.params.chain_id, "myapp", values, {}, new_key_salt())
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(key, payload))


def delete(chain: StateRunner, key: SigningKey) -> None:
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(key, EMPTY))


def test_an_owner_deletes_a_pending_set_that_fits_no_spec() -> None:
    """The owner sent secrets for a component the app will not have: every register of
    the name is refused `secrets_do_not_fit`, and before this rule the set could only be
    replaced, never removed. Deleted, the register goes through without secrets."""
    chain, owner = setup_chain(NODES)
    send_pending(chain, OWNER_KEY, FITS_NO_SPEC)
    register = chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(component(),))))
    assert rejected(chain, secrets.process_app_register, register).reason is (
        Reason.SECRETS_DO_NOT_FIT
    )
    delete(chain, OWNER_KEY)
    assert chain.state.get(secrets.pending_set_key("myapp", owner)) is None
    (dropped,) = chain.events(EventKind.APP_SECRETS_DROPPED)
    assert dropped.fields == ("myapp", owner, secrets.WITHDRAWN)
    chain.apply(secrets.process_app_register, register)
    secrets.process_block(chain.ctx)
    assert apps.get_app(chain.state, "myapp") is not None
    assert secrets.get_secret_set(chain.state, "myapp") is None


def test_an_owner_deletes_a_pending_set_for_a_name_someone_else_took() -> None:
    """Another owner registered the name first: the set can never apply. Its sender
    deletes it; the live app's own secrets are untouched."""
    chain, owner = setup_chain(NODES)
    send_pending(chain, OTHER_KEY, FITS)
    other = chain.tx(OTHER_KEY, EMPTY).sender_address
    web = component()
    chain.apply(
        apps.process_app_register, chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(web,))))
    )
    send_pending(chain, OWNER_KEY, FITS)  # the live app's owner sets its secrets
    secrets.process_block(chain.ctx)
    live = secrets.get_secret_set(chain.state, "myapp")
    assert live is not None and chain.state.get(secrets.pending_set_key("myapp", other))

    delete(chain, OTHER_KEY)
    assert chain.state.get(secrets.pending_set_key("myapp", other)) is None
    assert secrets.get_secret_set(chain.state, "myapp") == live


def test_a_stranger_cannot_delete_someone_elses_pending_set() -> None:
    """Pending sets are per sender: an empty APP_SECRETS from anyone else finds none of
    theirs and is refused as before (`unknown_app`), the owner's set kept."""
    chain, owner = setup_chain(NODES)
    send_pending(chain, OWNER_KEY, FITS)
    tx = chain.secrets_tx(OTHER_KEY, EMPTY)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.UNKNOWN_APP
    assert chain.state.get(secrets.pending_set_key("myapp", owner)) is not None


def test_a_stranger_cannot_remove_a_live_apps_secrets() -> None:
    """On a name someone else owns and with no pending set of theirs, an empty
    APP_SECRETS is the owner's removal of the app's secrets: refused `not_owner`."""
    chain, owner = setup_chain(NODES)
    chain.apply(
        apps.process_app_register,
        chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(component(),)))),
    )
    send_pending(chain, OWNER_KEY, FITS)
    tx = chain.secrets_tx(OTHER_KEY, EMPTY)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.NOT_OWNER
    assert secrets.get_secret_set(chain.state, "myapp") is not None


def test_removing_secrets_in_the_register_block_leaves_none_to_adopt() -> None:
    """Pending set, register, then "no secrets" from the owner, all in one block: the
    removal wins, the end of the block adopts nothing (before, the pending set was adopted
    after the owner had removed the secrets)."""
    chain, owner = setup_chain(NODES)
    send_pending(chain, OWNER_KEY, FITS)
    chain.apply(
        secrets.process_app_register,
        chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(component(),)))),
    )
    delete(chain, OWNER_KEY)
    secrets.process_block(chain.ctx)
    assert secrets.get_secret_set(chain.state, "myapp") is None
    assert chain.state.get(secrets.pending_set_key("myapp", owner)) is None


# -- red23d #1: what a pending set costs, and how long it lives ----------------------------

LIFE = 5  # secrets_pending_blocks of these tests


def short_life_chain(**params: Any) -> tuple[StateRunner, bytes]:
    chain = StateRunner(make_params(secrets_pending_blocks=LIFE, **params))
    for i in range(NODES):
        chain.add_node(i)
    chain.fund(OTHER_KEY)
    return chain, chain.fund(OWNER_KEY)


def end_block(chain: StateRunner) -> None:
    secrets.process_block(chain.ctx)
    chain.end_block()


def send_named(chain: StateRunner, key: SigningKey, name: str) -> None:
    payload = secrets.seal_secrets(key, chain.params.chain_id, name, FITS, {}, new_key_salt())
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(key, payload))


def test_a_pending_set_no_register_adopts_is_deleted_after_its_life() -> None:
    """A pending set lives `secrets_pending_blocks` from the block it was set: deleted at
    the end of the block that life ends in, with APP_SECRETS_DROPPED (`expired`)."""
    chain, owner = short_life_chain()
    set_at = chain.height
    send_pending(chain, OWNER_KEY, FITS)
    key = secrets.pending_set_key("myapp", owner)
    while chain.height < set_at + LIFE:
        end_block(chain)
        assert chain.state.get(key) is not None
    end_block(chain)
    assert chain.state.get(key) is None
    (dropped,) = chain.all_events(EventKind.APP_SECRETS_DROPPED)
    assert dropped.fields == ("myapp", owner, secrets.EXPIRED)


def test_setting_a_pending_set_again_restarts_its_life_without_a_second_deposit() -> None:
    """The first set burns `account_deposit` (a new record); setting it again replaces the
    same record: no deposit, only its byte charge, and its life counts from then (the
    first entry in the queue is stale and skipped)."""
    chain, owner = short_life_chain()
    send_pending(chain, OWNER_KEY, FITS)
    assert chain.ctx.burned >= chain.params.account_deposit
    end_block(chain)
    end_block(chain)
    again_at = chain.height
    send_pending(chain, OWNER_KEY, FITS)
    assert chain.ctx.burned < chain.params.account_deposit  # the byte charge only
    key = secrets.pending_set_key("myapp", owner)
    while chain.height < again_at + LIFE:
        end_block(chain)
        assert chain.state.get(key) is not None
    end_block(chain)
    assert chain.state.get(key) is None


def test_a_pending_set_adopted_by_its_register_is_not_expired() -> None:
    """The register adopts the set (it becomes the app's); its queue entry finds no
    pending set at its height and leaves the app's secrets alone."""
    chain, owner = short_life_chain()
    send_pending(chain, OWNER_KEY, FITS)
    register = chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(component(),))))
    chain.apply(secrets.process_app_register, register)
    end_block(chain)
    adopted = secrets.get_secret_set(chain.state, "myapp")
    assert adopted is not None
    for _ in range(LIFE + 1):
        end_block(chain)
    assert secrets.get_secret_set(chain.state, "myapp") == adopted
    assert not chain.all_events(EventKind.APP_SECRETS_DROPPED)


def test_pending_sets_ending_together_expire_a_bounded_number_per_block() -> None:
    """Five sets ending in one block with `app_expiries_per_block` = 2: two a block, the
    rest carried over to the next blocks, none lost."""
    chain, owner = short_life_chain(app_expiries_per_block=2)
    names = [f"squat-{i}" for i in range(5)]
    for name in names:
        send_named(chain, OWNER_KEY, name)
    for _ in range(LIFE):
        end_block(chain)
    left = []
    for _ in range(3):
        end_block(chain)
        left.append(
            sum(chain.state.get(secrets.pending_set_key(n, owner)) is not None for n in names)
        )
    assert left == [3, 1, 0]


def test_a_pending_sets_bytes_and_a_live_apps_are_burnt_not_tipped() -> None:
    """The byte charge of every APP_SECRETS with secrets is burnt out of the fee, for a
    live app's set as for a pending one (the pending one burns the deposit besides)."""
    chain, owner = short_life_chain()
    payload = secrets.seal_secrets(
        OWNER_KEY, chain.params.chain_id, "myapp", FITS, {}, new_key_salt()
    )
    charge = secrets_fee(sum(len(s.ciphertext) for s in payload.secrets), chain.params)
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OWNER_KEY, payload))
    assert chain.ctx.burned == charge + chain.params.account_deposit
    chain.apply(
        apps.process_app_register,
        chain.tx(OWNER_KEY, AppRegister(spec(owner, components=(component(),)))),
    )
    end_block(chain)
    assert secrets.get_secret_set(chain.state, "myapp") is not None
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OWNER_KEY, payload))
    assert chain.ctx.burned == charge


def test_a_pending_set_needs_the_deposit_in_the_balance() -> None:
    """Creating a pending set burns `account_deposit` from its sender's balance: refused
    `insufficient_funds`, with nothing kept, when the balance does not hold it."""
    chain, _ = short_life_chain()
    poor = SigningKey(b"\x44" * 32)
    chain.fund(poor, chain.params.account_deposit - 1)
    payload = secrets.seal_secrets(poor, chain.params.chain_id, "myapp", FITS, {}, new_key_salt())
    tx = chain.secrets_tx(poor, payload)
    assert rejected(chain, secrets.process_app_secrets, tx).reason is Reason.INSUFFICIENT_FUNDS
    assert chain.state.get(secrets.pending_set_key("myapp", tx.sender_address)) is None
