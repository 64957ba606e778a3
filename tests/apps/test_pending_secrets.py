"""A secret set sent before its app's register (a pending set) that will never apply is its
sender's to delete: an APP_SECRETS without secrets or seals (`flux-wallet app secrets NAME
--delete`). Nobody else can delete it."""

from __future__ import annotations

from fluxchain.core import apps, secrets
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import Reason
from fluxchain.core.events import EventKind
from fluxchain.core.sealing import KEY_CHECK_SIZE, KEY_SALT_SIZE, new_key_salt
from fluxchain.core.tx import AppRegister, AppSecrets, SecretKind
from tests.apps.test_apps import OTHER_KEY, OWNER_KEY, rejected, setup_chain
from tests.support.state import StateRunner, component, spec

NODES = 6
FITS_NO_SPEC = {("db", SecretKind.ENV, "PASSWORD"): b"for-a-component-never-made"}
FITS = {("web", SecretKind.ENV, "DB_PASSWORD"): b"hunter2-correct-horse"}
EMPTY = AppSecrets("myapp", bytes(KEY_SALT_SIZE), bytes(KEY_CHECK_SIZE), (), ())


def send_pending(
    chain: StateRunner, key: SigningKey, values: dict[tuple[str, SecretKind, str], bytes]
) -> None:
    payload = secrets.seal_secrets(key, chain.params.chain_id, "myapp", values, {}, new_key_salt())
    chain.apply(secrets.process_app_secrets, chain.tx(key, payload, fee=chain.params.min_fee))


def delete(chain: StateRunner, key: SigningKey) -> None:
    chain.apply(secrets.process_app_secrets, chain.tx(key, EMPTY, fee=chain.params.min_fee))


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
    tx = chain.tx(OTHER_KEY, EMPTY, fee=chain.params.min_fee)
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
    tx = chain.tx(OTHER_KEY, EMPTY, fee=chain.params.min_fee)
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
