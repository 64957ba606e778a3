"""Apps: the four app transactions, escrow, expiry and hosting payouts.

Lifecycle (every handler: checks, each with a reason code → mutation → events):

- APP_REGISTER pays `price(spec, spec.expire)` into the app's escrow and places it; its
  pinned nodes must be active nodes the spec admits.
- APP_UPDATE (owner only) re-prices for `spec.expire` blocks from this block on: the
  signer pays the difference, or gets back what the escrow holds beyond the new price.
- Both burn `params.app_charge` from the signer besides (never refunded).
- APP_EXTEND (owner only) pays `price(spec, blocks)` for `blocks` more blocks.
- APP_CANCEL (owner only) refunds what the escrow has not yet paid out.
- Domains (a port's `domains`) belong to one live app at a time, first come: APP_REGISTER
  and APP_UPDATE claim the spec's domains in their block and are refused `domain_taken`
  when another live app (one not past its `expire_height`) holds one; an update releases
  the domains it drops, and cancel and expiry release all of the app's. A released domain
  is held for its last owner's address `params.domain_hold_blocks` blocks from its release
  (an expired app's at its `expire_height`): its DNS still points at the gateways, so only
  an app of that address may claim it then, and anyone after. Txs of a block apply in
  order, so a domain released by one tx can be claimed by a later tx of the same block
  (of the same owner), and never by an earlier one. When a hold ends, the record is
  deleted (bounded per block like expiries), so released domains do not accumulate.
- An app's name is a host name too (`<name>.<gateway domain>` on every gateway), so a
  name released by cancel or expiry is held the same way: for `domain_hold_blocks` from
  its release, only its last owner's address may register it (others are refused
  `app_name_held`); the hold's record is deleted when it ends, as a domain's.
- At `expire_height` the app is removed with its assignments (in a later block when more
  than `params.app_expiries_per_block` expire together, settled as of `expire_height`);
  the leftover is refunded.

Escrow accounting (exact, lazy). An app holds `escrow` for the blocks from
`settled_height` to `expire_height` (R blocks) and `wanted` instances (W). Settling it at
height h pays, for every stretch of hosting d_i (in blocks) that a node did since the
last settlement,

    payout_i = escrow * d_i // (R * W)        (to the node's owner, PAID reason HOSTING)

and moves the share of instance-blocks that ran nowhere (W * (h - settled) - Σ d_i) to
`refundable` the same way. Integer remainders stay in `escrow`; when h reaches
`expire_height` (d = R) what is left of `escrow` plus `refundable` goes back to the owner
(PAID reason REFUND). So owner payments = payouts + refunds, to the base unit.

When an app is settled, so that per-block work tracks changes and not the number of apps:
before any change of its spec, expiry or cancellation (here); when an instance leaves a
node, its hosting since the last settlement is recorded as an accrual (placement/assignment.py) and
paid at the next settlement; and periodically every `params.app_settle_interval` blocks,
first at a phase drawn from the app's name, so 25,000 apps settle ~35 per block rather
than all at once. Names ground onto one phase cannot make a block do more than
`params.app_settles_per_block` settlements: the rest carry over (`process_block`), and
each is next due an interval after the block that made it.

Tables:

    A  app      app name             -> App
    S  cursor   queue prefix         -> Cursor: the oldest height of the expiry (or
                                        settlement) queues with entries left over
    D  domain   domain name          -> DomainClaim: the app that owns it, or the address
                                        holding it since its release
    R  name     app name             -> DomainClaim (no app): the address holding a
                                        released app name, and until when

The app charge (`params.app_charge`) is burnt from the signer of every APP_REGISTER and
APP_UPDATE and never enters the escrow: cancel and expiry refund the escrow only, so an
app costs at least the charge per spec it ever had, whether it runs or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from hashlib import sha256
from typing import Annotated, Any, Final

from fluxchain.core import deque, placement
from fluxchain.core.accounts import burn_from_fee, credit, debit, get_account
from fluxchain.core.appspec import (
    MAX_APP_NAME,
    MAX_COMPONENTS_HARD,
    MAX_PORT_KEY,
    MAX_PORTS,
    OWNER_SIZE,
    AppSpec,
    validate,
)
from fluxchain.core.context import BlockContext
from fluxchain.core.encoding import Amount, Bytes, Int, ListOf, Record, Str, Uint64, record
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind, PayReason
from fluxchain.core.pricing import compute_price
from fluxchain.core.state import State
from fluxchain.core.tx import AppCancel, AppExtend, AppRegister, AppUpdate, Tx

APP: Final = b"A"
CURSOR: Final = b"S"  # + queue prefix: Cursor of the expiry or settlement queues
EXPIRY_QUEUE: Final = b"apps/expire/"  # + height(8): names of apps expiring then
SETTLE_QUEUE: Final = b"apps/settle/"  # + height(8): names of apps to settle then
RELEASE_QUEUE: Final = b"apps/unhold/"  # + height(8): state keys of holds ending then
DOMAIN: Final = b"D"  # + domain (ASCII): the DomainClaim of the app that owns it
# + app name: a released name's hold (a DomainClaim with no app), deleted when it ends
NAME_HOLD: Final = b"R"


@record("port_since")
@dataclass(frozen=True, slots=True)
class PortSince(Record):
    """Since when an app has published one (host port, protocol) (`port_key`): an update
    keeping the port keeps the height. A gateway gives a shared listen port to the app
    that has published it longest, so no update can take one another app holds."""

    key: Annotated[int, Int(0, MAX_PORT_KEY)]
    since: Uint64


@record("app")
@dataclass(frozen=True, slots=True)
class App(Record):
    """A registered app and its escrow."""

    spec: AppSpec
    escrow: Amount  # funds for hosting from settled_height to expire_height
    refundable: Amount  # accrued share of instance-blocks that ran nowhere
    registered_height: Uint64
    expire_height: Uint64  # removed at the end of this block
    settled_height: Uint64  # hosting before this height is paid
    next_settle: Uint64  # height of its periodic settlement; stale queue entries differ
    paid_total: Amount  # hosting paid out since registration
    # one per port key of the spec, sorted by key
    port_since: Annotated[
        tuple[PortSince, ...], ListOf(PortSince, max_len=MAX_COMPONENTS_HARD * MAX_PORTS * 2)
    ] = ()

    @property
    def name(self) -> str:
        return self.spec.name


@record("cursor")
@dataclass(frozen=True, slots=True)
class Cursor(Record):
    """The lowest height whose queue (expiries or settlements) may still hold entries:
    those of earlier heights are all done. Absent: the queues are done up to the last block."""

    height: Uint64


@record("domain")
@dataclass(frozen=True, slots=True)
class DomainClaim(Record):
    """The app a domain routes to (`app`): the first to name it, until the app is
    cancelled, expires, or drops the domain in an update. Released (`app` empty), it is
    held for `owner`, the last app's owner address, until `held_until`: only an app of that
    address may claim it before (its DNS may still point at the gateways)."""

    app: Annotated[str, Str(MAX_APP_NAME)]  # "" once released
    owner: Annotated[bytes, Bytes(OWNER_SIZE)]
    held_until: Uint64  # of a released domain: others may claim it from this height


TABLES: Final[dict[bytes, Callable[[Any], Any]]] = {
    APP: App.from_fields,
    CURSOR: Cursor.from_fields,
    DOMAIN: DomainClaim.from_fields,
    NAME_HOLD: DomainClaim.from_fields,
}


def app_key(name: str) -> bytes:
    return APP + name.encode()


def name_hold_key(name: str) -> bytes:
    return NAME_HOLD + name.encode()


def domain_key(domain: str) -> bytes:
    # the rules admit lowercase ASCII names only (no case or IDNA variants), so one name
    # has one key
    return DOMAIN + domain.encode()


# -- read-only accessors ----------------------------------------------------------------------


def get_app(state: State, name: str) -> App | None:
    app: App | None = state.get(app_key(name))
    return app


def get_domain_owner(state: State, domain: str) -> str | None:
    """The app that owns `domain`, or None. An app past its expire_height but not yet
    removed (an expiry backlog) may still be named here until its domain is claimed again."""
    claim: DomainClaim | None = state.get(domain_key(domain))
    return None if claim is None or not claim.app else claim.app


def compute_port_since(
    spec: AppSpec, before: tuple[PortSince, ...], height: int
) -> tuple[PortSince, ...]:
    """The spec's port keys, each since `before` says (a port it kept) or `height` (new)."""
    known = {p.key: p.since for p in before}
    return tuple(PortSince(key, known.get(key, height)) for key in sorted(set(spec.port_keys)))


def get_app_status(state: State, name: str) -> dict[str, Any] | None:
    """What the API shows for an app: escrow, expiry, and where it runs or why it does not."""
    app = get_app(state, name)
    where = placement.get_placement(state, name)
    if app is None or where is None:
        return None
    return {
        "name": name,
        "owner": app.spec.owner.hex(),
        "escrow": app.escrow,
        "refundable": app.refundable,
        "registered_height": app.registered_height,
        "expire_height": app.expire_height,
        "paid_total": app.paid_total,
        "wanted": where.wanted,
        "placed": len(where.instances),
        "status": "underplaced" if where.reason else "placed",
        "underplaced_reason": where.reason,
        # what the gateway may route to this app: its spec's domains that it owns (an app
        # kept past its expiry by a backlog may have lost one to a newer app)
        "domains": [d for d in app.spec.domains if get_domain_owner(state, d) == name],
        # since when it publishes each port (kept by updates): a gateway's listen port
        # shared by several apps goes to the one that has published it longest
        "port_since": [
            {"port": p.key // 2, "protocol": "udp" if p.key % 2 else "tcp", "since": p.since}
            for p in app.port_since
        ],
        "instances": [{"index": i.index, "node_id": i.node_id.hex()} for i in where.instances],
    }


def height_queue(prefix: bytes, height: int) -> bytes:
    return prefix + height.to_bytes(8, "big")


def compute_settle_interval(ctx: BlockContext) -> int:
    """Blocks between periodic settlements."""
    return ctx.params.app_settle_interval


def compute_first_settle(ctx: BlockContext, name: str) -> int:
    """The first periodic settlement: a name-derived phase spreads apps over blocks."""
    interval = compute_settle_interval(ctx)
    phase = int.from_bytes(sha256(b"fluxchain/settle/1" + name.encode()).digest()[:8], "big")
    return ctx.height + 1 + phase % interval


# -- escrow -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling an app at `height` pays: per node (node_id, owner, amount), and the
    share of instance-blocks that ran nowhere (moved to `refundable`)."""

    height: int
    payouts: tuple[tuple[bytes, bytes, int], ...]
    idle: int

    @property
    def paid(self) -> int:
        return sum(amount for _, _, amount in self.payouts)


def compute_settlement(state: State, app: App, height: int) -> Settlement:
    """The settlement of `app` at `height` (capped at its expiry), without writing."""
    height = min(height, app.expire_height)
    elapsed = height - app.settled_height
    if elapsed <= 0:
        return Settlement(app.settled_height, (), 0)
    remaining = app.expire_height - app.settled_height
    wanted = app.spec.instances
    denominator = remaining * wanted
    # one payout per node: merge its stretches, keeping first-appearance order
    blocks_of: dict[bytes, int] = {}
    owner_of: dict[bytes, bytes] = {}
    for accrual in placement.get_accruals(state, app.name, height):
        blocks_of[accrual.node_id] = blocks_of.get(accrual.node_id, 0) + accrual.blocks
        owner_of[accrual.node_id] = accrual.owner
    payouts = tuple(
        (node_id, owner_of[node_id], app.escrow * blocks // denominator)
        for node_id, blocks in blocks_of.items()
    )
    idle_blocks = max(0, wanted * elapsed - sum(blocks_of.values()))
    return Settlement(height, payouts, app.escrow * idle_blocks // denominator)


def settle(ctx: BlockContext, app: App) -> App:
    """Pay the hosting of `app` up to this block (see the module doc for the rule)."""
    settlement = compute_settlement(ctx.state, app, ctx.height)
    if settlement.height == app.settled_height:
        return app
    placement.mark_settled(ctx.state, app.name, settlement.height)
    for node_id, owner, amount in settlement.payouts:
        if amount:
            credit(ctx.state, owner, amount)
            ctx.emit(EventKind.PAID, owner, amount, int(PayReason.HOSTING), node_id)
    paid = settlement.paid
    app = replace(
        app,
        escrow=app.escrow - paid - settlement.idle,
        refundable=app.refundable + settlement.idle,
        settled_height=settlement.height,
        paid_total=app.paid_total + paid,
    )
    ctx.state.put(app_key(app.name), app)
    return app


def _refund(ctx: BlockContext, owner: bytes, amount: int) -> None:
    if amount:
        credit(ctx.state, owner, amount)
        ctx.emit(EventKind.PAID, owner, amount, int(PayReason.REFUND), b"")


def _require_app(ctx: BlockContext, name: str, signer: bytes) -> App:
    app = get_app(ctx.state, name)
    # check: the app exists
    if app is None:
        raise TxError(Reason.UNKNOWN_APP, f"no app named {name!r}")
    # check: it has not reached its expiry (removed at the end of block expire_height,
    # or a few blocks later when many expire together)
    if app.expire_height <= ctx.height:
        raise TxError(
            Reason.APP_WRONG_STATE, f"app {name!r} reached its expiry at height {app.expire_height}"
        )
    # check: only the owner changes, extends or cancels an app
    if app.spec.owner != signer:
        raise TxError(Reason.NOT_OWNER, f"app {name!r} belongs to another address")
    return app


def _check_spec(ctx: BlockContext, spec: AppSpec) -> None:
    problems = validate(spec, ctx.params)
    if problems:
        raise TxError(Reason.INVALID_SPEC, "; ".join(str(p) for p in problems))


def _check_pins(ctx: BlockContext, spec: AppSpec) -> None:
    """Every pinned node is active (CONFIRMED, so it has a load record) and passes the
    spec's own tier and geolocation rules: a pin that can never host is refused, not left
    to make an app that runs nowhere (docs/economics.md)."""
    demand = placement.Demand.of(spec)
    for node_id in spec.pinned_nodes:
        load = placement.get_load(ctx.state, node_id)
        if load is None:
            raise TxError(
                Reason.PINNED_NODE_NOT_ELIGIBLE,
                f"pinned node {node_id.hex()} is not an active (confirmed) node",
            )
        if load.tier < demand.min_tier or not demand.location_allowed(load.continent, load.country):
            raise TxError(
                Reason.PINNED_NODE_NOT_ELIGIBLE,
                f"pinned node {node_id.hex()} is outside the spec's tier or geolocation rules",
            )


def _check_domains(ctx: BlockContext, spec: AppSpec, signer: bytes) -> None:
    """No other live app owns a domain the spec names (first come owns it), and none is
    held for an address other than the `signer`'s. The hold binds the signer, who chose
    the spec, not the owner the spec names: an update may hand an app to any address
    without its consent, so naming a domain's holder as the new owner claims nothing.
    An owner past its expire_height is not live: its domain is released at its expiry
    (held for its owner from then) though the app is removed later."""
    for domain in spec.domains:
        claim: DomainClaim | None = ctx.state.get(domain_key(domain))
        if claim is None or claim.app == spec.name:
            continue
        app = get_app(ctx.state, claim.app) if claim.app else None
        if app is not None and app.expire_height > ctx.height:
            raise TxError(Reason.DOMAIN_TAKEN, f"domain {domain!r} belongs to app {claim.app!r}")
        held_until, holder = claim.held_until, claim.owner
        if app is not None:  # expired, not yet removed: released at its expiry, held for
            # the owner it has then (`_close`), not the one that claimed it
            held_until = app.expire_height + ctx.params.domain_hold_blocks
            holder = app.spec.owner
        if signer != holder and ctx.height < held_until:
            raise TxError(
                Reason.DOMAIN_TAKEN,
                f"domain {domain!r} was released at most {ctx.params.domain_hold_blocks} "
                f"blocks ago and is held for its last owner until height {held_until}",
            )


def _check_name_hold(ctx: BlockContext, spec: AppSpec) -> None:
    """A name released by another owner's app less than `domain_hold_blocks` ago is
    theirs still: every gateway serves it at `<name>.<domain>`, and its users' bookmarks,
    API clients and cookies still go there."""
    hold: DomainClaim | None = ctx.state.get(name_hold_key(spec.name))
    if hold is not None and hold.owner != spec.owner and ctx.height < hold.held_until:
        raise TxError(
            Reason.APP_NAME_HELD,
            f"app name {spec.name!r} was released at most {ctx.params.domain_hold_blocks} "
            f"blocks ago and is held for its last owner until height {hold.held_until}",
        )


def _hold(ctx: BlockContext, key: bytes, hold: DomainClaim) -> None:
    """Write a released domain's or app name's hold under `key`; the record is deleted at
    the end of the block its hold ends in (one that ended already, an expiry worked off
    late, in the next block)."""
    ctx.state.put(key, hold)
    deque.push(ctx.state, height_queue(RELEASE_QUEUE, max(hold.held_until, ctx.height + 1)), key)


def _hold_name(ctx: BlockContext, app: AppSpec, released_at: int) -> None:
    """Hold `app`'s name for its owner `domain_hold_blocks` from `released_at`."""
    hold = DomainClaim("", app.owner, released_at + ctx.params.domain_hold_blocks)
    if hold.held_until <= ctx.height:
        return  # no hold (or one that ended already, an expiry worked off late)
    _hold(ctx, name_hold_key(app.name), hold)


def _claim_domains(
    ctx: BlockContext,
    app: AppSpec,
    before: tuple[str, ...],
    after: tuple[str, ...],
    released_at: int,
    holder: bytes,
) -> None:
    """App `app` owns `after` (checked by `_check_domains`) and no longer `before`'s others,
    which are held for `holder` from `released_at`: the owner the app had while it named
    them (an update's signer, not an owner it hands the app to), whose DNS points at the
    gateways. A domain another app has claimed since is that app's and stays so."""
    keep = set(after)
    hold = DomainClaim("", holder, released_at + ctx.params.domain_hold_blocks)
    for domain in before:
        if domain not in keep and get_domain_owner(ctx.state, domain) == app.name:
            _hold(ctx, domain_key(domain), hold)
    for domain in after:
        if get_domain_owner(ctx.state, domain) != app.name:
            ctx.state.put(domain_key(domain), DomainClaim(app.name, app.owner, 0))


def _check_funds(ctx: BlockContext, address: bytes, amount: int) -> None:
    balance = get_account(ctx.state, address).balance
    if balance < amount:
        raise TxError(
            Reason.INSUFFICIENT_FUNDS, f"balance {balance} is below the {amount} this costs"
        )


# -- transactions -----------------------------------------------------------------------------


def process_app_register(ctx: BlockContext, tx: Tx) -> None:
    payload: AppRegister = tx.payload
    spec, signer = payload.spec, tx.sender_address
    # check: the spec follows every rule (all problems reported at once)
    _check_spec(ctx, spec)
    # check: the signer is the owner the spec names
    if spec.owner != signer:
        raise TxError(Reason.NOT_OWNER, "spec.owner must be the address that signs the register")
    # check: the name is free
    if get_app(ctx.state, spec.name) is not None:
        raise TxError(Reason.APP_EXISTS, f"an app named {spec.name!r} exists")
    # check: the name is not held for another address since its app left
    _check_name_hold(ctx, spec)
    # check: every pinned node is an active node that the spec lets host it
    _check_pins(ctx, spec)
    # check: no other live app owns one of its domains
    _check_domains(ctx, spec, signer)
    # check: the signer can pay for `expire` blocks and the non-refundable app charge
    price = compute_price(spec, ctx.params, spec.expire)
    charge = ctx.params.app_charge
    _check_funds(ctx, signer, price + charge)

    debit(ctx.state, signer, price + charge)
    ctx.burned += charge
    expire_height = ctx.height + spec.expire
    next_settle = compute_first_settle(ctx, spec.name)
    port_since = compute_port_since(spec, (), ctx.height)
    app = App(spec, price, 0, ctx.height, expire_height, ctx.height, next_settle, 0, port_since)
    ctx.state.put(app_key(spec.name), app)
    deque.push(ctx.state, height_queue(EXPIRY_QUEUE, expire_height), spec.name.encode())
    deque.push(ctx.state, height_queue(SETTLE_QUEUE, next_settle), spec.name.encode())
    _claim_domains(ctx, spec, (), spec.domains, ctx.height, signer)

    ctx.emit(EventKind.APP_REGISTERED, spec.name, signer, price)
    placement.place_new_app(ctx, spec.name, spec, expire_height)


def process_app_update(ctx: BlockContext, tx: Tx) -> None:
    payload: AppUpdate = tx.payload
    spec, signer = payload.spec, tx.sender_address
    # check: the spec follows every rule
    _check_spec(ctx, spec)
    # check: the app exists, is live, and the signer owns it
    app = _require_app(ctx, spec.name, signer)
    # check: every pinned node is an active node that the new spec lets host it
    _check_pins(ctx, spec)
    # check: no other live app owns one of its domains
    _check_domains(ctx, spec, signer)
    # check: the signer can pay any increase (the escrow held now counts towards it) and
    # the non-refundable app charge (which the escrow never pays)
    price = compute_price(spec, ctx.params, spec.expire)
    charge = ctx.params.app_charge
    settlement = compute_settlement(ctx.state, app, ctx.height)
    held = app.escrow + app.refundable - settlement.paid
    _check_funds(ctx, signer, max(0, price - held) + charge)
    # check: the fee covers every instance the new spec moves off its node (burnt)
    moved = placement.count_moved_by_update(ctx.state, spec.name, spec)
    burn_from_fee(ctx, tx, moved * ctx.params.relocation_price)

    debit(ctx.state, signer, charge)
    ctx.burned += charge
    app = settle(ctx, app)
    held = app.escrow + app.refundable
    if price > held:
        debit(ctx.state, signer, price - held)
    else:
        _refund(ctx, signer, held - price)
    expire_height = ctx.height + spec.expire
    if expire_height != app.expire_height:
        deque.push(ctx.state, height_queue(EXPIRY_QUEUE, expire_height), spec.name.encode())
    old_domains = app.spec.domains
    app = replace(
        app,
        spec=spec,
        escrow=price,
        refundable=0,
        expire_height=expire_height,
        settled_height=ctx.height,
        port_since=compute_port_since(spec, app.port_since, ctx.height),
    )
    ctx.state.put(app_key(spec.name), app)
    _claim_domains(ctx, spec, old_domains, spec.domains, ctx.height, signer)

    ctx.emit(EventKind.APP_UPDATED, spec.name, price)
    placement.replace_demand(ctx, spec.name, spec, expire_height)


def process_app_extend(ctx: BlockContext, tx: Tx) -> None:
    payload: AppExtend = tx.payload
    signer = tx.sender_address
    # check: the app exists, is live, and the signer owns it
    app = _require_app(ctx, payload.name, signer)
    # check: the app stays within the longest paid-ahead period
    ahead = app.expire_height + payload.blocks - ctx.height
    if ahead > ctx.params.app_max_expire:
        raise TxError(
            Reason.EXPIRE_TOO_FAR,
            f"blocks: the app would be paid {ahead} blocks ahead, "
            f"at most {ctx.params.app_max_expire}",
        )
    # check: the signer can pay for the added blocks
    price = compute_price(app.spec, ctx.params, payload.blocks)
    _check_funds(ctx, signer, price)

    app = settle(ctx, app)
    debit(ctx.state, signer, price)
    expire_height = app.expire_height + payload.blocks
    app = replace(app, escrow=app.escrow + price, expire_height=expire_height)
    ctx.state.put(app_key(app.name), app)
    deque.push(ctx.state, height_queue(EXPIRY_QUEUE, expire_height), app.name.encode())
    placement.set_paid_until(ctx.state, app.name, expire_height)

    ctx.emit(EventKind.APP_EXTENDED, app.name, expire_height)


def process_app_cancel(ctx: BlockContext, tx: Tx) -> None:
    payload: AppCancel = tx.payload
    signer = tx.sender_address
    # check: the app exists, is live, and the signer owns it
    app = _require_app(ctx, payload.name, signer)

    refund = _close(ctx, app, "app_cancelled")
    ctx.emit(EventKind.APP_CANCELLED, app.name, refund)


def _close(ctx: BlockContext, app: App, reason: str) -> int:
    """Settle, unassign every instance, release its domains, refund the rest, delete.
    Returns the refund."""
    app = settle(ctx, app)
    placement.remove_app(ctx, app.name, reason)
    # an app closed late (an expiry backlog) released its domains at its expiry
    released_at = min(ctx.height, app.expire_height)
    _claim_domains(ctx, app.spec, app.spec.domains, (), released_at, app.spec.owner)
    _hold_name(ctx, app.spec, released_at)
    refund = app.escrow + app.refundable
    _refund(ctx, app.spec.owner, refund)
    ctx.state.delete(app_key(app.name))
    return refund


# -- end of block -----------------------------------------------------------------------------


def drain_due(ctx: BlockContext, prefix: bytes, limit: int) -> list[tuple[int, bytes]]:
    """Take up to `limit` entries due by this block from the height queues under `prefix`,
    oldest height first: (the height it was due at, the entry). What is left stays for the
    next blocks, found again through the cursor, so no block does more than `limit`."""
    state, key = ctx.state, CURSOR + prefix
    cursor: Cursor | None = state.get(key)
    height = ctx.height if cursor is None else cursor.height
    taken: list[tuple[int, bytes]] = []
    while height <= ctx.height:
        queue = height_queue(prefix, height)
        while len(taken) < limit and (item := deque.pop(state, queue)) is not None:
            taken.append((height, item[1]))
        if len(taken) >= limit and deque.size(state, queue):
            break  # this height's queue still holds entries: resume here next block
        height += 1
    if height > ctx.height:
        if cursor is not None:
            state.delete(key)  # caught up: the next block starts at its own height
    elif cursor is None or cursor.height != height:
        state.put(key, Cursor(height))
    return taken


def process_block(ctx: BlockContext) -> None:
    """After all txs: expiries due, periodic settlements due, then refills, each bounded.

    At most `params.app_expiries_per_block` expiry entries (and as many ended domain and
    name holds) and `params.app_settles_per_block` settlement entries are taken per block,
    oldest first; the rest carry over to the next blocks (`drain_due`). The accounting
    stays exact: a settlement made late pays the hosting up to the block it is made in,
    and an app closed after its expire_height is settled at expire_height (hosting after
    it is neither paid nor charged, and it gets no new instances: placement's `paid_until`).

    Queue entries are checked lazily: an entry whose app is gone, or whose height no longer
    matches the app's `expire_height` / `next_settle` (it was extended or re-phased), is
    skipped (it counts towards the bound: each entry is one push paid for by a tx).
    """
    for due, raw in drain_due(ctx, EXPIRY_QUEUE, ctx.params.app_expiries_per_block):
        app = get_app(ctx.state, raw.decode())
        if app is not None and app.expire_height == due:
            _close(ctx, app, "app_expired")
            ctx.emit(EventKind.APP_EXPIRED, app.name)
    interval = compute_settle_interval(ctx)
    for due, raw in drain_due(ctx, SETTLE_QUEUE, ctx.params.app_settles_per_block):
        app = get_app(ctx.state, raw.decode())
        if app is None or app.next_settle != due:
            continue
        app = settle(ctx, app)
        # from this block: a backlog of apps ground onto one height spreads out over the
        # blocks that worked it off, instead of landing together again
        next_settle = ctx.height + interval
        ctx.state.put(app_key(app.name), replace(app, next_settle=next_settle))
        # scheduled even past the expiry: an extension may keep the app alive until then
        deque.push(ctx.state, height_queue(SETTLE_QUEUE, next_settle), raw)
    for _due, key in drain_due(ctx, RELEASE_QUEUE, ctx.params.app_expiries_per_block):
        # stale when claimed again since, or held again with a later end (its own entry)
        claim: DomainClaim | None = ctx.state.get(key)
        if claim is not None and not claim.app and claim.held_until <= ctx.height:
            ctx.state.delete(key)
    placement.process_block(ctx)
