"""Sealed app secrets in the state: what the chain keeps and who may add to it.

The chain never sees a plaintext secret: it stores the owner's ciphertexts (`SecretSet`)
and, per hosting node, the app's data key sealed to that node's key (`SealedKey`). The
cryptography is core/sealing.py; the user-facing story is docs/apps.md "Secrets".

Rules:

- APP_SECRETS (the app's owner, paid): sets the app's secrets, replacing any before, and
  seals the data key to any of the app's current hosts. A new key (another `key_check`)
  drops every sealed key of the old one; no secrets removes the set. Every secret names a
  component of the current spec, and an environment secret no variable the spec's plain
  `environment` sets already.
- APP_SECRETS_SEAL (a host's node key, fee-free): the failover path. A node that hosts
  the app now and holds the current key seals it to hosts the chain placed since, each
  lacking the current key. So a node cannot seal for an app it does not host, nor to a
  node the chain did not place there, and each (app, node, placement, key) is sealed by a
  node at most once: the txs are bounded by the placements, the mempool keeps at most one
  per sealing node (`duty_pending`), and admission runs these same checks on committed
  state (core/admission.py).
- APP_SECRETS_REJECT (a host's node key, fee-free): a host whose sealed key of the current
  data key does not open, or opens to another key than `key_check` names (a lying host
  sealed garbage), drops it; its sealer may not seal to that host again (`refused_sealer`),
  so another holder seals a good one. The chain cannot tell who lies: a host that rejects
  a good key only delays its own start, and at most once per sealer.
- When an instance leaves a node (UNASSIGNED, whatever the cause) the node's sealed key
  (and its refusals) are deleted; when the app is cancelled or expires, its set goes too.
  A node that hosted the app still knows the key it unsealed: the owner rotates it with a
  new APP_SECRETS.

Tables (one byte prefix):

    Z  secret set   app name                      -> SecretSet
    Y  sealed key   app name ‖ 0x00 ‖ node_id(20)   -> SealedKey (names hold no NUL)
    X  refusals     app name ‖ 0x00 ‖ node_id(20)   -> Refusals: sealers that host rejected
    V  pending set  app name ‖ 0x00 ‖ owner(20)     -> SecretSet sent before the register

A set belongs to the registration it was made for (`registered_height`): an app name that
expires and is registered again, by anyone, starts without the old secrets.

An owner may send APP_SECRETS (without seals) *before* APP_REGISTER, at a lower nonce: the
set waits under (name, owner) and the register's block adopts it, so the app's hosts know
from its first block that it has secrets and hold it until a key is sealed to them: the
app never runs without its secrets. Pending sets are per owner, so nobody can take a name's
slot. A set that will never apply (the name went to someone else, the owner changed their
mind, or a spec it does not fit) is its sender's to delete: an APP_SECRETS without secrets
or seals from the sender of a pending set deletes that set (`APP_SECRETS_DROPPED`, reason
`withdrawn`), whoever holds the name now. Without a pending set it is refused as before.

What state costs its writer: every APP_SECRETS with secrets burns its byte charge
(`tx.secrets_fee`, one min_fee per started 256 bytes of ciphertext, which its fee must
cover) instead of tipping it, so a proposer filling its own blocks pays for the bytes
too. A pending set is a record under a name of its sender's choosing, adopted by nothing
if no register follows: creating one burns `account_deposit` from its sender (as a new
account does), and it is deleted `secrets_pending_blocks` after it was last set
(`APP_SECRETS_DROPPED`, reason `expired`), at most `app_expiries_per_block` a block, the
rest in the next blocks (apps.drain_due), so nothing keeps it for ever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Final

from fluxchain.core import apps, deque, placement
from fluxchain.core.accounts import burn_from_fee, debit
from fluxchain.core.appspec import AppSpec
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import ADDRESS_SIZE, SigningKey
from fluxchain.core.encoding import Bytes, ListOf, Record, Uint64, record
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.nodes import get_node
from fluxchain.core.records import Node
from fluxchain.core.sealing import (
    KEY_CHECK_SIZE,
    KEY_SALT_SIZE,
    SEALED_KEY_SIZE,
    decrypt_value,
    derive_data_key,
    encrypt_value,
    key_check,
    seal_key,
    value_context,
)
from fluxchain.core.state import State
from fluxchain.core.tx import (
    MAX_SEALS,
    MAX_SECRETS,
    NODE_ID_SIZE,
    AppRegister,
    AppSecrets,
    AppSecretsReject,
    AppSecretsSeal,
    AppUpdate,
    Seal,
    Secret,
    SecretKind,
    Tx,
    is_reserved_variable,
    secrets_fee,
)

SECRET_SET: Final = b"Z"
SEALED_KEY: Final = b"Y"
REFUSALS: Final = b"X"
PENDING_SET: Final = b"V"
_NO_NODE: Final = b""  # the sealer of a key the owner sealed
# APP_SECRETS_DROPPED's reason when the sender deleted its own pending set, and when
# one reached its `secrets_pending_blocks` unadopted (the other reasons are the misfit's
# Reason codes)
WITHDRAWN: Final = "withdrawn"
EXPIRED: Final = "expired"
# + height(8): pending-set keys whose `secrets_pending_blocks` end then (apps.drain_due)
PENDING_QUEUE: Final = b"secrets/pending/"


@record("secret_set")
@dataclass(frozen=True, slots=True)
class SecretSet(Record):
    """An app's encrypted secrets and the data key's salt and check (core/sealing.py)."""

    registered_height: Uint64  # of the app registration this set belongs to
    key_salt: Annotated[bytes, Bytes(KEY_SALT_SIZE)]
    key_check: Annotated[bytes, Bytes(KEY_CHECK_SIZE)]
    secrets: Annotated[tuple[Secret, ...], ListOf(Secret, max_len=MAX_SECRETS)]
    height: Uint64  # set at


@record("sealed_key")
@dataclass(frozen=True, slots=True)
class SealedKey(Record):
    """The data key `key_check` names, sealed to one hosting node's key."""

    key_check: Annotated[bytes, Bytes(KEY_CHECK_SIZE)]
    sealed: Annotated[bytes, Bytes(SEALED_KEY_SIZE)]
    sealer: Annotated[bytes, Bytes(NODE_ID_SIZE, or_empty=True)]  # b"": the owner
    height: Uint64


@record("refusals")
@dataclass(frozen=True, slots=True)
class Refusals(Record):
    """The sealers whose keys of data key `key_check` one host rejected."""

    key_check: Annotated[bytes, Bytes(KEY_CHECK_SIZE)]
    sealers: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_SEALS)]


TABLES: Final[dict[bytes, Callable[[Any], Any]]] = {
    SECRET_SET: SecretSet.from_fields,
    SEALED_KEY: SealedKey.from_fields,
    REFUSALS: Refusals.from_fields,
    PENDING_SET: SecretSet.from_fields,
}


def secret_set_key(name: str) -> bytes:
    return SECRET_SET + name.encode()


def sealed_key_key(name: str, node_id: bytes) -> bytes:
    return SEALED_KEY + name.encode() + b"\x00" + node_id


def pending_set_key(name: str, owner: bytes) -> bytes:
    return PENDING_SET + name.encode() + b"\x00" + owner


def refusals_key(name: str, node_id: bytes) -> bytes:
    return REFUSALS + name.encode() + b"\x00" + node_id


# -- read-only accessors ----------------------------------------------------------------------


def get_secret_set(state: State, name: str) -> SecretSet | None:
    """The live app's current secrets, or None (none set, or left from an earlier app of
    the same name)."""
    found: SecretSet | None = state.get(secret_set_key(name))
    app = apps.get_app(state, name)
    if found is None or app is None or app.registered_height != found.registered_height:
        return None
    return found


def get_sealed_key(state: State, name: str, node_id: bytes) -> SealedKey | None:
    """The key sealed to `node_id` for the app's current secrets, or None."""
    secret_set = get_secret_set(state, name)
    sealed: SealedKey | None = state.get(sealed_key_key(name, node_id))
    if secret_set is None or sealed is None or sealed.key_check != secret_set.key_check:
        return None
    return sealed


def get_refused_sealers(state: State, name: str, node_id: bytes) -> tuple[bytes, ...]:
    """The sealers `node_id` rejected for the app's current key (they may not seal to it)."""
    secret_set = get_secret_set(state, name)
    found: Refusals | None = state.get(refusals_key(name, node_id))
    if secret_set is None or found is None or found.key_check != secret_set.key_check:
        return ()
    return found.sealers


def iter_sealed_keys(state: State, name: str) -> Iterator[tuple[bytes, SealedKey]]:
    """(node_id, sealed key) of every key stored for the app, current or not."""
    prefix = SEALED_KEY + name.encode() + b"\x00"
    for key, sealed in state.items(prefix):
        yield key[len(prefix) :], sealed


def get_hosts(state: State, name: str) -> tuple[bytes, ...]:
    """The nodes the chain places the app on now."""
    where = placement.get_placement(state, name)
    return () if where is None else where.nodes


def compute_unsealed_hosts(state: State, name: str) -> list[bytes]:
    """The app's hosts without the current key (sorted): whom a re-seal is owed to."""
    if get_secret_set(state, name) is None:
        return []
    hosts = get_hosts(state, name)
    return sorted(h for h in hosts if get_sealed_key(state, name, h) is None)


def get_secrets_view(state: State, name: str) -> dict[str, Any] | None:
    """What the API shows of an app's secrets (`GET /apps/{name}/secrets`): ciphertexts
    and sealed keys only, which the chain holds anyway; None without secrets."""
    secret_set = get_secret_set(state, name)
    if secret_set is None:
        return None
    # Key by key over the hosts, never a listing of the table, so that the answer can be
    # proven (`?prove=1`: a wallet re-seals only a set the chain holds). The same keys:
    # a sealed key is stored for a host only and deleted when the node stops hosting.
    sealed = {}
    for node_id in sorted(get_hosts(state, name)):
        found = get_sealed_key(state, name, node_id)
        if found is not None and found.key_check == secret_set.key_check:
            sealed[node_id.hex()] = {
                "sealed": found.sealed.hex(),
                "sealer": found.sealer.hex(),
                "height": found.height,
            }
    return {
        "name": name,
        "key_salt": secret_set.key_salt.hex(),
        "key_check": secret_set.key_check.hex(),
        "height": secret_set.height,
        "secrets": [
            {
                "component": s.component,
                "kind": s.kind.name.lower(),
                "name": s.name,
                "ciphertext": s.ciphertext.hex(),
            }
            for s in secret_set.secrets
        ],
        "sealed": sealed,
        "unsealed_hosts": [h.hex() for h in compute_unsealed_hosts(state, name)],
    }


def secret_set_from_view(view: Mapping[str, Any], registered_height: int = 0) -> SecretSet:
    """The SecretSet a `get_secrets_view` answer describes (for the agent and wallet)."""
    secrets = tuple(
        Secret(
            s["component"], SecretKind[s["kind"].upper()], s["name"], bytes.fromhex(s["ciphertext"])
        )
        for s in view["secrets"]
    )
    return SecretSet(
        registered_height,
        bytes.fromhex(view["key_salt"]),
        bytes.fromhex(view["key_check"]),
        secrets,
        int(view["height"]),
    )


# -- transactions -----------------------------------------------------------------------------


def _check_secrets(ctx: BlockContext, payload: AppSecrets, app: apps.App) -> None:
    problem = find_misfit(app.spec, payload.secrets)
    if problem is not None:
        raise TxError(problem[0], problem[1])


def find_misfit(spec: AppSpec, secrets: tuple[Secret, ...]) -> tuple[Reason, str] | None:
    """The first secret that does not fit `spec` (reason, message), or None when all do.

    One rule for every path a set meets a spec by: APP_SECRETS, the adoption of a set sent
    before the register, and APP_UPDATE (which may not orphan or shadow a secret)."""
    for index, secret in enumerate(secrets):
        problem = secret_misfit(spec, secret)
        if problem is not None:
            return problem[0], f"secrets[{index}]: {problem[1]}"
    return None


def secret_misfit(spec: AppSpec, secret: Secret) -> tuple[Reason, str] | None:
    """Why one secret does not fit `spec` (reason, message), or None; the wallet asks it
    of each secret of a file before anything is signed."""
    # check: every secret belongs to a component of the spec
    component = next((c for c in spec.components if c.name == secret.component), None)
    if component is None:
        return (
            Reason.UNKNOWN_COMPONENT,
            f"app {spec.name!r} has no component {secret.component!r}",
        )
    # check: not a variable the runtime sets itself (it would override the secret)
    if secret.kind is SecretKind.ENV and is_reserved_variable(secret.name):
        return (
            Reason.BAD_FIELD,
            f"{secret.name} is set by the hosting agent (PORT, HOST, FLUX_*)",
        )
    # check: a secret variable is not also a plain one (which would win is ambiguous)
    plain = {entry.split("=", 1)[0] for entry in component.environment}
    if secret.kind is SecretKind.ENV and secret.name in plain:
        return (
            Reason.BAD_FIELD,
            f"component {secret.component!r} sets {secret.name} in its plain environment already",
        )
    return None


def _require_fit(spec: AppSpec, secret_set: SecretSet | None, whose: str) -> None:
    if secret_set is None:
        return
    problem = find_misfit(spec, secret_set.secrets)
    if problem is not None:
        raise TxError(Reason.SECRETS_DO_NOT_FIT, f"{whose} do not fit the spec: {problem[1]}")


def process_app_register(ctx: BlockContext, tx: Tx) -> None:
    """APP_REGISTER, then the secrets rule: a set its owner sent before the register (the
    pending set the register's block adopts) fits the spec, else the register is refused
    `secrets_do_not_fit`, so the app never runs without the secrets its owner sealed. A
    refused tx leaves nothing (apply_tx)."""
    apps.process_app_register(ctx, tx)
    payload: AppRegister = tx.payload
    pending = ctx.state.get(pending_set_key(payload.spec.name, tx.sender_address))
    _require_fit(payload.spec, pending, "the secrets sent before the register")


def process_app_update(ctx: BlockContext, tx: Tx) -> None:
    """APP_UPDATE, then the secrets rule: the new spec keeps a component for every secret
    of the app (and of a set sent before a register in this block, not adopted yet) and
    sets none of its secret variables in clear: an update must not orphan a secret, nor
    make which value wins ambiguous. Refused `secrets_do_not_fit`; the owner re-sends or
    removes the secrets first. A refused tx leaves nothing (apply_tx).

    Nor may it hand an app with secrets to a new owner: their data key derives from the
    sender's private key, so the previous owner would go on opening every value while the
    new one could neither read nor re-seal them. The owner removes them first (the new
    owner then sets its own); the chain never decides to run the app without them."""
    apps.process_app_update(ctx, tx)
    payload: AppUpdate = tx.payload
    name = payload.spec.name
    # check: no hand-over of secrets only the previous owner's key opens
    if payload.spec.owner != tx.sender_address and get_secret_set(ctx.state, name) is not None:
        raise TxError(
            Reason.SECRETS_DO_NOT_FIT,
            f"app {name!r} has secrets only your key opens: remove them before handing it"
            " to a new owner, who then sets its own",
        )
    _require_fit(payload.spec, get_secret_set(ctx.state, name), "the app's secrets")
    pending = ctx.state.get(pending_set_key(name, tx.sender_address))
    _require_fit(payload.spec, pending, "the secrets sent before the register")


def process_app_secrets(ctx: BlockContext, tx: Tx) -> None:
    payload: AppSecrets = tx.payload
    name = payload.name
    app = apps.get_app(ctx.state, name)
    if _withdraws_pending_set(ctx, tx, app):
        return
    if app is None:
        _process_pending_secrets(ctx, tx)
        return
    # check: the app is live and the signer owns it
    if app.spec.owner != tx.sender_address:
        raise TxError(Reason.NOT_OWNER, "only the app's owner sets its secrets")
    if ctx.height >= app.expire_height:
        raise TxError(Reason.APP_WRONG_STATE, f"app {name!r} reached its expiry")
    # check: the secrets fit the spec
    _check_secrets(ctx, payload, app)
    # check: no seals without secrets (nothing to unseal them for)
    if not payload.secrets and payload.seals:
        raise TxError(Reason.BAD_FIELD, "seals need secrets")
    # check: every seal is for a node the chain places the app on now
    hosts = set(get_hosts(ctx.state, name))
    for seal in payload.seals:
        if seal.node_id not in hosts:
            raise TxError(
                Reason.NOT_PLACED, f"node {seal.node_id.hex()} does not host {name!r} now"
            )

    _burn_byte_charge(ctx, tx)

    before = get_secret_set(ctx.state, name)
    if before is None or before.key_check != payload.key_check or not payload.secrets:
        _forget_sealed_keys(ctx.state, name, keep=None)
    if not payload.secrets:
        ctx.state.delete(secret_set_key(name))
    else:
        secret_set = SecretSet(
            app.registered_height, payload.key_salt, payload.key_check, payload.secrets, ctx.height
        )
        ctx.state.put(secret_set_key(name), secret_set)
    for seal in payload.seals:
        sealed = SealedKey(payload.key_check, seal.sealed, _NO_NODE, ctx.height)
        ctx.state.put(sealed_key_key(name, seal.node_id), sealed)
    ctx.emit(EventKind.APP_SECRETS_SET, name, len(payload.secrets), len(payload.seals))


def _withdraws_pending_set(ctx: BlockContext, tx: Tx, app: apps.App | None) -> bool:
    """An empty APP_SECRETS (no secrets, no seals) from the sender of a pending set of the
    name deletes that set. The name may be anyone's by now (the set would never apply)
    or no one's (the owner changed their mind, or the set fits no spec they mean to
    register): then the tx is done (True). The owner of the live app (registered in this
    very block, the set not adopted yet) goes on to remove the app's set as well (False):
    "no secrets" leaves none to adopt at the end of the block."""
    payload: AppSecrets = tx.payload
    if payload.secrets or payload.seals:
        return False
    key = pending_set_key(payload.name, tx.sender_address)
    if ctx.state.get(key) is None:
        return False
    ctx.state.delete(key)
    ctx.emit(EventKind.APP_SECRETS_DROPPED, payload.name, tx.sender_address, WITHDRAWN)
    return app is None or app.spec.owner != tx.sender_address


def _process_pending_secrets(ctx: BlockContext, tx: Tx) -> None:
    """APP_SECRETS for an app its sender has not registered yet: kept for the register."""
    payload: AppSecrets = tx.payload
    # check: secrets to keep, and no seals (no node hosts an unregistered app)
    if not payload.secrets:
        raise TxError(
            Reason.UNKNOWN_APP,
            f"no app named {payload.name!r}, and no secrets of yours wait for it",
        )
    if payload.seals:
        raise TxError(Reason.NOT_PLACED, f"app {payload.name!r} is not registered: no hosts")
    _burn_byte_charge(ctx, tx)
    key = pending_set_key(payload.name, tx.sender_address)
    if ctx.state.get(key) is None:
        # check (inside debit): the balance covers the deposit a new record burns
        debit(ctx.state, tx.sender_address, ctx.params.account_deposit)
        ctx.burned += ctx.params.account_deposit

    pending = SecretSet(0, payload.key_salt, payload.key_check, payload.secrets, ctx.height)
    ctx.state.put(key, pending)
    due = ctx.height + ctx.params.secrets_pending_blocks
    deque.push(ctx.state, apps.height_queue(PENDING_QUEUE, due), key)
    ctx.emit(EventKind.APP_SECRETS_SET, payload.name, len(payload.secrets), 0)


def _burn_byte_charge(ctx: BlockContext, tx: Tx) -> None:
    """Burn the secrets' byte charge out of the fee (which covers it: a stateless rule):
    their bytes stay in every node's state, so they cost even a self-proposer."""
    stored = sum(len(secret.ciphertext) for secret in tx.payload.secrets)
    burn_from_fee(ctx, tx, secrets_fee(stored, ctx.params))


def check_app_secrets_seal(ctx: BlockContext, tx: Tx) -> Node:
    """The stateful checks of an APP_SECRETS_SEAL (block execution and mempool admission);
    return the sealing node."""
    payload: AppSecretsSeal = tx.payload
    name = payload.name
    # check: the app is live and has secrets
    if apps.get_app(ctx.state, name) is None:
        raise TxError(Reason.UNKNOWN_APP, f"no app named {name!r}")
    secret_set = get_secret_set(ctx.state, name)
    if secret_set is None:
        raise TxError(Reason.NO_SECRETS, f"app {name!r} has no secrets")
    # check: the key is the app's current one (a seal of a rotated key is worthless)
    if payload.key_check != secret_set.key_check:
        raise TxError(Reason.KEY_CHANGED, f"app {name!r} has another data key now")
    # check: the sealer signs with its own node key
    node = get_node(ctx.state, payload.node_id)
    if node is None:
        raise TxError(Reason.UNKNOWN_NODE, f"no node {payload.node_id.hex()}")
    if tx.sender != node.node_key:
        raise TxError(Reason.NOT_OWNER, "a seal must be signed by the sealing node's key")
    # check: the sealer hosts the app now and holds the current key
    hosts = set(get_hosts(ctx.state, name))
    if payload.node_id not in hosts:
        raise TxError(Reason.NOT_HOSTING, f"node {payload.node_id.hex()} does not host {name!r}")
    if get_sealed_key(ctx.state, name, payload.node_id) is None:
        raise TxError(
            Reason.NO_SEALED_KEY, f"node {payload.node_id.hex()} holds no key of {name!r}"
        )
    for seal in payload.seals:
        target = seal.node_id.hex()
        # check: the target is placed here by the chain, and is not the sealer itself
        if seal.node_id not in hosts or seal.node_id == payload.node_id:
            raise TxError(Reason.NOT_PLACED, f"node {target} is not a new host of {name!r}")
        # check: once per (app, node, placement, key): a sealed key is never replaced by
        # a node, so a liar cannot overwrite a good key with garbage
        if get_sealed_key(ctx.state, name, seal.node_id) is not None:
            raise TxError(Reason.ALREADY_SEALED, f"node {target} holds the key of {name!r}")
        # check: the target has not rejected a key of this sealer (garbage, it said)
        if payload.node_id in get_refused_sealers(ctx.state, name, seal.node_id):
            raise TxError(
                Reason.REFUSED_SEALER, f"node {target} rejected a key this node sealed to it"
            )
    return node


def process_app_secrets_seal(ctx: BlockContext, tx: Tx) -> None:
    payload: AppSecretsSeal = tx.payload
    check_app_secrets_seal(ctx, tx)
    for seal in payload.seals:
        sealed = SealedKey(payload.key_check, seal.sealed, payload.node_id, ctx.height)
        ctx.state.put(sealed_key_key(payload.name, seal.node_id), sealed)
        ctx.emit(EventKind.APP_SECRETS_SEALED, payload.name, seal.node_id, payload.node_id)


def check_app_secrets_reject(ctx: BlockContext, tx: Tx) -> Node:
    """The stateful checks of an APP_SECRETS_REJECT (block execution and mempool
    admission); return the rejecting node."""
    payload: AppSecretsReject = tx.payload
    name, node_id = payload.name, payload.node_id
    # check: the app is live, has secrets, and the rejected key is of its current data key
    if apps.get_app(ctx.state, name) is None:
        raise TxError(Reason.UNKNOWN_APP, f"no app named {name!r}")
    secret_set = get_secret_set(ctx.state, name)
    if secret_set is None:
        raise TxError(Reason.NO_SECRETS, f"app {name!r} has no secrets")
    if payload.key_check != secret_set.key_check:
        raise TxError(Reason.KEY_CHANGED, f"app {name!r} has another data key now")
    # check: the rejecting node signs with its own node key and hosts the app now
    node = get_node(ctx.state, node_id)
    if node is None:
        raise TxError(Reason.UNKNOWN_NODE, f"no node {node_id.hex()}")
    if tx.sender != node.node_key:
        raise TxError(Reason.NOT_OWNER, "a rejection must be signed by the node's key")
    if node_id not in get_hosts(ctx.state, name):
        raise TxError(Reason.NOT_HOSTING, f"node {node_id.hex()} does not host {name!r}")
    # check: it holds a key to reject (so a rejection follows a seal: bounded by them)
    if get_sealed_key(ctx.state, name, node_id) is None:
        raise TxError(Reason.NO_SEALED_KEY, f"node {node_id.hex()} holds no key of {name!r}")
    return node


def process_app_secrets_reject(ctx: BlockContext, tx: Tx) -> None:
    payload: AppSecretsReject = tx.payload
    check_app_secrets_reject(ctx, tx)
    name, node_id = payload.name, payload.node_id
    sealed = get_sealed_key(ctx.state, name, node_id)
    assert sealed is not None  # checked
    refused = get_refused_sealers(ctx.state, name, node_id)
    if sealed.sealer and sealed.sealer not in refused:
        refused = (*refused, sealed.sealer)
    ctx.state.delete(sealed_key_key(name, node_id))
    ctx.state.put(refusals_key(name, node_id), Refusals(payload.key_check, refused))
    ctx.emit(EventKind.APP_SECRETS_REJECTED, name, node_id, sealed.sealer)


# -- end of block -----------------------------------------------------------------------------


def _adopt_pending_set(ctx: BlockContext, name: str, owner: bytes) -> None:
    """The owner's set sent before the register becomes the new app's: if the app is still
    this owner's, no APP_SECRETS after the register in this block set a newer one, and
    the set fits the spec the app has at the end of the block (the checks APP_SECRETS
    runs on a registered app). A set that does not fit is dropped, with an
    APP_SECRETS_DROPPED event naming why: the owner sends a fitting APP_SECRETS."""
    pending: SecretSet | None = ctx.state.get(pending_set_key(name, owner))
    app = apps.get_app(ctx.state, name)
    if pending is None or app is None or app.spec.owner != owner:
        return
    ctx.state.delete(pending_set_key(name, owner))
    if get_secret_set(ctx.state, name) is not None:
        return
    problem = find_misfit(app.spec, pending.secrets)
    if problem is not None:
        ctx.emit(EventKind.APP_SECRETS_DROPPED, name, owner, problem[0].value)
        return
    _forget_sealed_keys(ctx.state, name, keep=None)
    ctx.state.put(secret_set_key(name), replace(pending, registered_height=app.registered_height))


def _forget_sealed_keys(state: State, name: str, keep: set[bytes] | None) -> None:
    """Delete the app's sealed keys, but those of the nodes in `keep` (None: all)."""
    for node_id, _sealed in list(iter_sealed_keys(state, name)):
        if keep is None or node_id not in keep:
            state.delete(sealed_key_key(name, node_id))
    for key in state.keys(REFUSALS + name.encode() + b"\x00"):
        if keep is None or key[-NODE_ID_SIZE:] not in keep:
            state.delete(key)


def process_block(ctx: BlockContext) -> None:
    """Drop the sealed keys of nodes that stopped hosting an app in this block, and the
    secrets of apps that ended; adopt the pending sets of apps registered in it, then
    delete those whose life ended. Reads this block's events and a bounded take of the
    pending sets' height queue: no scan of the tables."""
    left: set[tuple[str, bytes]] = set()
    ended: set[str] = set()
    registered: list[tuple[str, bytes]] = []
    for event in ctx.events:
        if event.kind is EventKind.UNASSIGNED:
            left.add((event.fields[0], event.fields[1]))
        elif event.kind in (EventKind.APP_CANCELLED, EventKind.APP_EXPIRED):
            ended.add(event.fields[0])
        elif event.kind is EventKind.APP_REGISTERED:
            registered.append((event.fields[0], event.fields[1]))
    for name, node_id in sorted(left):
        if node_id not in get_hosts(ctx.state, name):
            ctx.state.delete(sealed_key_key(name, node_id))
            ctx.state.delete(refusals_key(name, node_id))
    for name in sorted(ended):
        if get_secret_set(ctx.state, name) is None:  # not set again by a new registration
            ctx.state.delete(secret_set_key(name))
            _forget_sealed_keys(ctx.state, name, keep=None)
    # after the sweep: an app cancelled and registered again in one block adopts its new set
    for name, owner in registered:
        _adopt_pending_set(ctx, name, owner)
    # after the adoptions: a register in the block a set ends in still adopts it
    _expire_pending_sets(ctx)


def _expire_pending_sets(ctx: BlockContext) -> None:
    """Delete the pending sets whose `secrets_pending_blocks` are over, a bounded number
    per block (the rest in the next blocks). An entry is stale when its set was adopted or
    withdrawn, or set again since (which pushed an entry of its own, for later)."""
    life = ctx.params.secrets_pending_blocks
    for _due, key in apps.drain_due(ctx, PENDING_QUEUE, ctx.params.app_expiries_per_block):
        pending: SecretSet | None = ctx.state.get(key)
        if pending is None or pending.height + life > ctx.height:
            continue
        ctx.state.delete(key)
        name, owner = key[len(PENDING_SET) : -ADDRESS_SIZE - 1].decode(), key[-ADDRESS_SIZE:]
        ctx.emit(EventKind.APP_SECRETS_DROPPED, name, owner, EXPIRED)


# -- making and opening secrets: the wallet and the agent (never run by the chain) ---------


def seal_secrets(
    owner: SigningKey,
    chain_id: str,
    name: str,
    values: Mapping[tuple[str, SecretKind, str], bytes],
    host_keys: Mapping[bytes, bytes],
    key_salt: bytes,
) -> AppSecrets:
    """The APP_SECRETS payload an owner sends: `values` by (component, kind, name)
    encrypted under the data key of `key_salt`, the key sealed to each host in `host_keys`
    (node id -> node public key)."""
    data_key = derive_data_key(owner.secret, chain_id, name, key_salt)
    check = key_check(data_key)
    secrets = tuple(
        Secret(
            component,
            kind,
            secret_name,
            encrypt_value(
                data_key, value_context(chain_id, name, check, component, kind, secret_name), value
            ),
        )
        for (component, kind, secret_name), value in sorted(values.items())
    )
    seals = tuple(
        Seal(node_id, seal_key(public_key, data_key))
        for node_id, public_key in sorted(host_keys.items())
    )
    return AppSecrets(name, key_salt, check, secrets, seals)


def open_secrets(
    secret_set: SecretSet, data_key: bytes, chain_id: str, name: str
) -> dict[tuple[str, SecretKind, str], bytes]:
    """Every value of the set, decrypted (in memory only); SealingError if one does not
    open (a wrong key or a tampered ciphertext)."""
    out = {}
    for secret in secret_set.secrets:
        context = value_context(
            chain_id, name, secret_set.key_check, secret.component, secret.kind, secret.name
        )
        out[(secret.component, secret.kind, secret.name)] = decrypt_value(
            data_key, context, secret.ciphertext
        )
    return out
