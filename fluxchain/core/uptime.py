"""Uptime: who checks whom each epoch, their attestations, marking nodes down, and the
checkers that the outcome contradicts or that stayed silent.

At the start of each epoch the confirmed nodes that have a rank key are shuffled by the
epoch seed and their rank keys into a ring. The checkers of a target are the first
`k = checkers_per_node` nodes after it in the ring that its own owner does not run,
within `WALK_FACTOR * k` positions. Every node is one checker slot, whoever runs it: an
owner address costs nothing, so a rule that counted operators instead of nodes would
shrink the honest side (a few large hosts) and not the attacker's (one address per
node). Each checker probes its targets and sends one UPTIME_ATTEST per epoch with an up
or down verdict for each.

The checkers of an epoch are fixed by its ring: a checker marked DOWN during the epoch
still attests for it and its reports count (`on_duty`), so the same reports give the
same outcome whatever order they come in (rev25e: a liar that reported first used to
silence the checkers it downed, and with them their "up" about their own targets). A
target is DOWN at once, in the block that carries the deciding report (placement moves
its instances in that block), when down reports come from more than 2/3 of its checkers.
How rarely a minority holds that is `k`'s whole job: with k = 30 (mainnet-shaped) a
third of the nodes holds it on a given target in 3.7e-5 of the epochs; k = 21 gave
3.6e-4, enough for a 33 % liar to take 37.6 % of the payouts (two thirds of that gain
the forfeits of its false DOWNs' honest up reporters, the rest the victims' cooldowns
and queue places; the wait below takes most of both). Beside a large honest operator,
whose nodes never check its own, the attacker's share of the pool is p / (1 - s) for an
operator share s: k = 30 halves that case, which stays open (docs/state.md). Checkers
that stay silent cannot shield a dead node: at the epoch's end a target is also DOWN
when more than half of its checkers reported and down reports are more than 2/3 of the
reports (docs/state.md has the arithmetic).

At the next epoch start the reports a clear outcome contradicts are judged: up reports
about a node that was marked down, down reports about a node that an up quorum (the same
rule, mirrored) kept; without either quorum nobody is judged. A contradicted up report
costs its checker a forfeit; a contradicted down report is named and costs nothing.
No count tells a falsely downed node's honest up reporters from an attacker's failed
shield of its own dead node; the next epoch does: a node that is up answers, a dead one
does not. So the forfeits of the up reporters about a node of the ring marked DOWN wait
one epoch (`UpPending`, at most its checkers' ids), in which the node is watched: a
target of that epoch's ring, checker of nobody. At that epoch's end its up reporters owe
nothing if more than half of its checkers reported and more said up than down, and the
node itself attested in the epoch it was downed (`cleared`); anything else charges them.
A simple majority, not the 2/3 quorum, because the liar who downed the node holds about
as large a share of its new checkers, and a third of them blocks any 2/3 verdict (55 %
of the time at 33 % of the nodes; a majority, with a tie, 4.0 % of the time). Its own
attestation, because a node that was down answered nobody: it sent none (a ring node
marked DOWN stays on duty, `on_duty`), so the up reporters of a one-epoch outage pay
for their failed shield even when the node answers the next epoch (rev26e). An owner
who keeps signing its dark node's attestations elsewhere (a node refusing its probes)
is not told from a falsely downed node; its failed shield is free, and gains it
nothing: the node marked DOWN sits out its cooldown whatever the watch epoch says
(rev26e: confirming it again skipped the cooldown of a real outage; it was worth 0-0.2
points against the liar, docs/economics.md). A node is watched once: a down quorum on a
watched node charges its up reporters at once.

Every contradicted report is judged against the statuses the ended epoch left
(`_judged`): a checker that the same epoch start marks DOWN still owes its forfeit, so
the outcome does not depend on which node id's record is read first (rev26e).

A checker cannot prove what its probe saw, and a target decides whom it answers (a
firewall rule on a checker's public endpoint), so it can make any honest probe fail: a
forfeit for a contradicted down, at any count, is a penalty the target holds over its
checkers. A false down gains only where it is part of a down quorum, which no up quorum
contradicts; the quorum's arithmetic bounds that whether or not lies cost anything. A
target cannot make a checker see it up, nor make it silent: a checker that had targets
and sent no attestation is penalised too. The penalty is a forfeit: the node's next
payout is passed over (rewards.py), a whole payout wherever it stands in the queue, once
per node per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Final

from fluxchain.core import nodes, rewards
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import SIGNATURE_SIZE, sha256, tagged_hash, verify
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.params import Params
from fluxchain.core.records import (
    META,
    NODE,
    RING,
    UP_PENDING,
    UPTIME,
    WATCHED,
    Meta,
    Node,
    NodeStatus,
    Ring,
    UpPending,
    UptimeTally,
    Watched,
    node_key,
)
from fluxchain.core.state import State
from fluxchain.core.tx import Tx, UptimeAttest

# How far past a target the checker walk looks, in multiples of k: it bounds the targets
# of one checker (an attestation carries at most tx.MAX_REPORTS) when the target's owner
# runs the nodes that follow it in the ring.
WALK_FACTOR: Final = 2

# The positions of the current ring, derived from the Ring record. Kept by identity: the
# record object stays in the state until the next epoch replaces it.
_positions: list[tuple[Ring, dict[bytes, int]]] = []
_POSITIONS_KEPT: Final = 4
# The same for the Watched record, as a set.
_watched_sets: list[tuple[Watched, frozenset[bytes]]] = []


def down_at_once(down: int, checkers: int) -> bool:
    """Down reports from more than 2/3 of all its checkers mark a node DOWN in the block:
    the other checkers' reports, whenever they come, cannot outweigh them."""
    return checkers > 0 and 3 * down > 2 * checkers


def quorum_reached(agree: int, disagree: int, checkers: int) -> bool:
    """The epoch's outcome for a target: `agree` reports (down, or up) decide when more
    than half of its `checkers` reported and they are more than 2/3 of the reports."""
    reported = agree + disagree
    return 2 * reported > checkers and 3 * agree > 2 * reported


def _operator(state: State, node_id: bytes) -> bytes:
    """Who runs a node: its owner address (a node released mid-epoch counts as its own)."""
    node = nodes.get_node(state, node_id)
    return node_id if node is None else node.owner


def _position(ring: Ring, node_id: bytes) -> int | None:
    for cached_ring, positions in _positions:
        if cached_ring is ring:
            return positions.get(node_id)
    positions = {n: i for i, n in enumerate(ring.nodes)}
    _positions.append((ring, positions))
    del _positions[:-_POSITIONS_KEPT]
    return positions.get(node_id)


def get_ring(state: State) -> Ring:
    ring: Ring | None = state.get(RING)
    return Ring(0, ()) if ring is None else ring


def watched(state: State) -> frozenset[bytes]:
    """This epoch's watched nodes: targets of its ring that check nobody."""
    record: Watched | None = state.get(WATCHED)
    if record is None or record.epoch != get_ring(state).epoch:
        return frozenset()
    for cached, ids in _watched_sets:
        if cached is record:
            return ids
    ids = frozenset(record.nodes)
    _watched_sets.append((record, ids))
    del _watched_sets[:-_POSITIONS_KEPT]
    return ids


def _checkers_at(
    ring: Ring,
    i: int,
    params_k: int,
    owner_at: Callable[[int], bytes],
    targets_only: frozenset[bytes],
) -> list[bytes]:
    """The checkers of the node at ring position `i`; `owner_at(j)` is the owner of the
    node at position j; the nodes in `targets_only` (the watched ones) check nobody."""
    n = len(ring.nodes)
    own = owner_at(i)
    checkers: list[bytes] = []
    for d in range(1, min(n, WALK_FACTOR * params_k + 1)):
        if len(checkers) == params_k:
            break
        j = (i + d) % n
        if ring.nodes[j] not in targets_only and owner_at(j) != own:
            checkers.append(ring.nodes[j])
    return checkers


def checkers_of(state: State, target_id: bytes, params_k: int) -> list[bytes]:
    """The nodes that probe `target_id` this epoch: the first `params_k` nodes after it in
    the ring that its owner does not run and that are not watched, within
    `WALK_FACTOR * params_k` positions."""
    ring = get_ring(state)
    i = _position(ring, target_id)
    if i is None:
        return []
    return _checkers_at(
        ring, i, params_k, lambda j: _operator(state, ring.nodes[j]), watched(state)
    )


def targets_of(state: State, checker_id: bytes, params_k: int) -> list[bytes]:
    """The nodes `checker_id` must probe this epoch (empty if it is not in the ring): the
    inverse of `checkers_of`, over the `WALK_FACTOR * params_k` nodes before it."""
    ring = get_ring(state)
    i = _position(ring, checker_id)
    targets_only = watched(state)
    if i is None or checker_id in targets_only:
        return []
    n = len(ring.nodes)
    # The 2k walks overlap: read each ring position's owner once, not once per walk
    # (every attestation is checked with this, at admission and in its block).
    owners: dict[int, bytes] = {}

    def owner_at(j: int) -> bytes:
        owner = owners.get(j)
        if owner is None:
            owner = owners[j] = _operator(state, ring.nodes[j])
        return owner

    targets = []
    for d in range(1, min(n, WALK_FACTOR * params_k + 1)):
        t = (i - d) % n
        if checker_id in _checkers_at(ring, t, params_k, owner_at, targets_only):
            targets.append(ring.nodes[t])
    return targets


def on_duty(state: State, node: Node) -> bool:
    """Whether `node` checks others this epoch: a confirmed node, or one of this epoch's
    ring marked DOWN since the ring was built (it was confirmed then). The checkers of an
    epoch are fixed by its ring: were a node downed by this epoch's reports no longer
    counted, the order of the reports would decide the epoch (a liar reporting first would
    silence the checkers it downs, and with them their "up" about their own targets).
    A watched node (DOWN when the ring was built) and jailed, expired, unbonding or
    released nodes are off duty."""
    if nodes.is_active(node):
        return True
    return (
        node.status is NodeStatus.DOWN
        and _position(get_ring(state), node.node_id) is not None
        and node.node_id not in watched(state)
    )


def _judged(
    ctx: BlockContext, node_id: bytes, forfeit: bool, kind: EventKind, *fields: object
) -> None:
    """The event naming a judged checker and, if `forfeit`, a forfeit of its next payout
    (once per node per epoch). Judged against the statuses the ended epoch left: a node
    confirmed then is named, even if this epoch's start has marked it DOWN since (its
    forfeit waits for its return); a node already out then has no payout to forfeit and
    is not. Judging by the status of the moment would let the order of the node ids
    decide who pays (rev26e)."""
    node = nodes.get_node(ctx.state, node_id)
    if node is None or not _active_when_epoch_ended(ctx, node):
        return
    _name(ctx, node_id, forfeit, kind, *fields)


def _name(
    ctx: BlockContext, node_id: bytes, forfeit: bool, kind: EventKind, *fields: object
) -> None:
    if forfeit:
        rewards.owe_forfeit(ctx.state, node_id)
    ctx.emit(kind, node_id, *fields)


def _active_when_epoch_ended(ctx: BlockContext, node: Node) -> bool:
    """Whether `node` was confirmed when the ended epoch closed: it is, or the epoch's
    judging marked it DOWN in this block (`epochs.process_epoch` runs before the block's
    transactions, and nothing else in it marks a node DOWN)."""
    if nodes.is_active(node):
        return True
    return node.status is NodeStatus.DOWN and node.status_height == ctx.height


def _charge_up_reporters(ctx: BlockContext, target_id: bytes, reporters: tuple[bytes, ...]) -> None:
    """A forfeit for each checker whose "up" about `target_id` a down quorum contradicted."""
    for reporter_id in reporters:
        _judged(ctx, reporter_id, True, EventKind.REPORT_CONTRADICTED, target_id, 1, 1)


def _charge_held(ctx: BlockContext, target_id: bytes, pending: UpPending) -> None:
    """Charge the up reporters whose forfeits waited (`UpPending`), each judged against
    the statuses of the epoch start that put them on hold (`pending.height`), as
    `_judged` would have judged it then: confirmed before that block (and still), or
    marked DOWN by it or since (its forfeit waits for its return). One already DOWN
    before it had no payout to forfeit; one the same epoch start marked DOWN pays here
    too (rev27e: judged by the status of the moment, it escaped). One that expired,
    unbonded, was jailed or released during the wait escapes (docs/economics.md, "Not
    closed here"). Status heights, not read order, decide: the outcome is order-free."""
    held_at = pending.height
    for reporter_id in pending.up:
        node = nodes.get_node(ctx.state, reporter_id)
        if node is None:
            continue
        confirmed_then = nodes.is_active(node) and node.status_height < held_at
        downed_since = node.status is NodeStatus.DOWN and node.status_height >= held_at
        if confirmed_then or downed_since:
            _name(ctx, reporter_id, True, EventKind.REPORT_CONTRADICTED, target_id, 1, 1)


def cleared(tally: UptimeTally | None, target: Node | None, pending: UpPending) -> bool:
    """Whether the watch epoch's reports (`tally`) clear the up reporters of `target`,
    marked DOWN in `pending.epoch`: more than half of its checkers reported and more up
    than down, and the target attested in that epoch if it had targets then
    (`pending.attest_due`; a node that was dark sent nothing, one with no targets could
    send nothing: its attestation is refused `not_a_checker`). Not the 2/3 quorum: the
    liar who downed the node is among its new checkers too, and with a third of them it
    would block any 2/3 verdict; a simple majority needs more than half."""
    if tally is None or target is None:
        return False
    if pending.attest_due and target.last_attest_epoch != pending.epoch + 1:
        return False
    up, down = len(tally.up), len(tally.down)
    return 2 * (up + down) > tally.checkers and up > down


def _settle_pending(ctx: BlockContext, epoch: int, tallies: dict[bytes, UptimeTally]) -> None:
    """The up reporters of the nodes marked DOWN in `epoch - 1`, whose forfeits waited for
    `epoch`'s outcome on them (`tallies`): owe nothing if the node is `cleared`, a forfeit
    otherwise. The node stays DOWN either way (its cooldown is its owner's to sit out).
    Every record goes: each waits one epoch."""
    state = ctx.state
    for key, pending in list(state.items(UP_PENDING)):
        state.delete(key)
        target_id = key[len(UP_PENDING) :]
        target = nodes.get_node(state, target_id)
        if pending.epoch + 1 != epoch or not cleared(tallies.get(target_id), target, pending):
            _charge_held(ctx, target_id, pending)


def _judge_ended_epoch(ctx: BlockContext, epoch: int) -> None:
    """The ended epoch's outcome per target: DOWN if its reports say so (and it is still
    confirmed), and the reports a clear outcome contradicts, each named; a contradicted
    up report costs its checker a forfeit, a contradicted down report nothing (the
    module's docstring says why). The forfeits of the up reporters about a node of the
    ring now DOWN wait for the next epoch (`UP_PENDING`); those that waited for this one
    are settled first. The epoch's tallies are dropped."""
    state = ctx.state
    tallies: dict[bytes, UptimeTally] = {}
    for key, tally in list(state.items(UPTIME)):
        state.delete(key)
        if tally.epoch == epoch:
            tallies[key[len(UPTIME) :]] = tally
    _settle_pending(ctx, epoch, tallies)
    ring = get_ring(state)
    targets_only = watched(state)
    for target_id, tally in tallies.items():
        up, down = len(tally.up), len(tally.down)
        if quorum_reached(down, up, tally.checkers):
            target = nodes.get_node(state, target_id)
            if target is not None and nodes.is_active(target):
                target = nodes.set_status(ctx, target, NodeStatus.DOWN, "down")
                ctx.emit(EventKind.NODE_DOWN, target_id, down, tally.checkers)
            # A falsely downed node answers in the next epoch, a dead one does not: a
            # node of this ring now DOWN is watched then, once (a watched node's up
            # reporters are charged now), and its up reporters wait for that.
            if (
                tally.up
                and target is not None
                and target.status is NodeStatus.DOWN
                and ring.epoch == epoch
                and _position(ring, target_id) is not None
                and target_id not in targets_only
            ):
                state.put(
                    UP_PENDING + target_id,
                    UpPending(
                        epoch,
                        tally.up,
                        ctx.height,
                        bool(targets_of(state, target_id, ctx.params.checkers_per_node)),
                    ),
                )
            else:
                _charge_up_reporters(ctx, target_id, tally.up)
        elif quorum_reached(up, down, tally.checkers):
            for reporter_id in tally.down:  # an up quorum: "down" was false, costs nothing
                _judged(ctx, reporter_id, False, EventKind.REPORT_CONTRADICTED, target_id, 0, 0)


def _penalise_silent(ctx: BlockContext, epoch: int, ring: Ring) -> None:
    """Penalise every node of the ended epoch's ring that sent no attestation although
    it had a target. A node certainly had one when the node before it in the ring is
    another owner's (it was that node's first checker); judging only those keeps this one
    read per ring node, and the few it misses are the ones a seed put behind their own
    owner's node."""
    if ring.epoch != epoch or len(ring.nodes) < 2:
        return
    state = ctx.state
    targets_only = watched(state)
    previous = nodes.get_node(state, ring.nodes[-1])
    for node_id in ring.nodes:
        node = nodes.get_node(state, node_id)
        before, previous = previous, node
        # A ring node marked DOWN since is skipped: it left the payment queue, so it has no
        # payout to forfeit (its duty held, `on_duty`, but its silence costs nothing more).
        # A watched node had no duty, even if it confirmed again during the epoch.
        if (
            node is None
            or not nodes.is_active(node)
            or node.last_attest_epoch == epoch + 1
            or node_id in targets_only
        ):
            continue
        if before is not None and before.owner != node.owner:
            _judged(ctx, node_id, True, EventKind.CHECKER_SILENT, epoch)


def start_epoch(ctx: BlockContext, epoch: int, seed: bytes) -> None:
    """Judge the ended epoch's reports, then shuffle the confirmed nodes into this
    epoch's ring."""
    _judge_ended_epoch(ctx, epoch - 1)
    _penalise_silent(ctx, epoch - 1, get_ring(ctx.state))
    # By rank key, not node id: a node id is fixed by its register tx and can be ground;
    # a rank key comes from a mix nobody knew then. A node without one yet sits out.
    confirmed = [
        (sha256(seed + node.rank_key), node.node_id)
        for _, node in ctx.state.items(NODE)
        if node.status is NodeStatus.CONFIRMED and node.rank_key
    ]
    targets_only = _watch(ctx, epoch, len(confirmed))
    confirmed += [(sha256(seed + node.rank_key), node.node_id) for node in targets_only]
    confirmed.sort()
    ctx.state.put(RING, Ring(epoch, tuple(node_id for _, node_id in confirmed)))
    if targets_only:
        ids = {node.node_id for node in targets_only}
        ctx.state.put(WATCHED, Watched(epoch, tuple(n for _, n in confirmed if n in ids)))
    elif ctx.state.get(WATCHED) is not None:
        ctx.state.delete(WATCHED)


def _watch(ctx: BlockContext, epoch: int, confirmed: int) -> list[Node]:
    """The nodes this epoch watches: each DOWN node whose up reporters wait for it
    (`UP_PENDING`). A watched node needs no active slot: it is a target and sends no
    attestation, so it adds only its `k` reports to the epoch's, and a full network would
    otherwise charge at once the honest up reporters of every false DOWN (rev27e: a liar
    frees a slot with it that a pending confirm fills). What bounds them: each was a
    checker of the ended epoch's ring, so there are at most `nodes.max_active` (their
    reports less than the half of an epoch's blocks `max_active` leaves beside the
    attestations), and the ring must stay within what its record decodes
    (`nodes.MAX_ACTIVE_NODES`). If they do not all fit, none is watched and every waiting
    up reporter is charged now, as without the wait. All or none: a cut by node id would
    let ids an owner can grind choose whose wait is kept."""
    state = ctx.state
    waiting: list[tuple[bytes, UpPending, Node | None]] = [
        (key, pending, nodes.get_node(state, key[len(UP_PENDING) :]))
        for key, pending in state.items(UP_PENDING)
    ]
    watchable = {
        node.node_id
        for _, pending, node in waiting
        if node is not None
        and node.status is NodeStatus.DOWN
        and node.rank_key
        and pending.epoch + 1 == epoch
    }
    fits = (
        len(watchable) <= nodes.max_active(ctx.params)
        and confirmed + len(watchable) <= nodes.MAX_ACTIVE_NODES
    )
    targets_only: list[Node] = []
    for key, pending, node in waiting:
        if fits and node is not None and node.node_id in watchable:
            targets_only.append(node)
        else:
            state.delete(key)
            _charge_held(ctx, key[len(UP_PENDING) :], pending)
    return targets_only


def check_uptime_attest(ctx: BlockContext, tx: Tx) -> Node:
    """The stateful checks of an UPTIME_ATTEST (block execution and mempool admission);
    return the checker."""
    payload: UptimeAttest = tx.payload
    state, k_param = ctx.state, ctx.params.checkers_per_node
    checker = nodes.get_node(state, payload.node_id)
    # check: the checker exists, signs with its node key, and is confirmed
    if checker is None:
        raise TxError(Reason.UNKNOWN_NODE, f"no node {payload.node_id.hex()}")
    if tx.sender != checker.node_key:
        raise TxError(Reason.NOT_OWNER, "an attestation must be signed by the node key")
    if not on_duty(state, checker):
        raise TxError(
            Reason.NODE_WRONG_STATE,
            "only confirmed nodes, and nodes of this epoch's ring marked down since, check others",
        )
    # check: it reports on the current epoch, once
    meta: Meta = state.get(META)
    ring = get_ring(state)
    if payload.epoch != ring.epoch or payload.epoch != meta.epoch:
        raise TxError(Reason.WRONG_EPOCH, f"epoch {payload.epoch}, current is {meta.epoch}")
    if checker.last_attest_epoch == payload.epoch + 1:
        raise TxError(Reason.ALREADY_ATTESTED, "this node already attested in this epoch")
    # check: it reports on every target the ring assigned to it, once each: leaving a
    # target out would be silence about it, which the penalty for silence cannot see
    targets = targets_of(state, checker.node_id, k_param)
    if not targets:
        raise TxError(Reason.NOT_A_CHECKER, "this node has no targets in this epoch")
    reported = [report.target for report in payload.reports]
    if len(set(reported)) != len(reported) or set(reported) != set(targets):
        raise TxError(
            Reason.NOT_A_CHECKER,
            f"an attestation reports on exactly this node's {len(targets)} targets, once each",
        )
    return checker


def process_uptime_attest(ctx: BlockContext, tx: Tx) -> None:
    payload: UptimeAttest = tx.payload
    state, k_param = ctx.state, ctx.params.checkers_per_node
    checker = check_uptime_attest(ctx, tx)
    state.put(node_key(checker.node_id), replace(checker, last_attest_epoch=payload.epoch + 1))
    for report in payload.reports:
        tally: UptimeTally | None = state.get(UPTIME + report.target)
        if tally is None or tally.epoch != payload.epoch:
            k = len(checkers_of(state, report.target, k_param))
            tally = UptimeTally(payload.epoch, k, (), ())
        if report.up:
            tally = replace(tally, up=(*tally.up, checker.node_id))
        else:
            tally = replace(tally, down=(*tally.down, checker.node_id))
        state.put(UPTIME + report.target, tally)
        target = nodes.get_node(state, report.target)
        if (
            not report.up
            and down_at_once(len(tally.down), tally.checkers)
            and target is not None
            and nodes.is_active(target)
        ):
            nodes.set_status(ctx, target, NodeStatus.DOWN, "down")
            ctx.emit(EventKind.NODE_DOWN, report.target, len(tally.down), tally.checkers)


# The proof a node's /health carries: which node answered. A checker counts a target up
# only on its node id and a signature by its node key over this epoch's nonce (`health_nonces`), so
# an endpoint borrowed from another node (an honest stranger's, a checker's own) proves
# nothing. Its own domain tag: never a valid tx, vote or other signed message.
TAG_HEALTH: Final = b"fluxchain/health/v1"
# An epoch's first blocks, in which a checker still accepts a proof of the previous epoch:
# it probes right after committing the epoch's first block, and a target one block behind
# (honest, committing it a moment later) still answers with the previous epoch's proof.
HEALTH_GRACE_BLOCKS: Final = 3


def health_digest(chain_id: str, node_id: bytes, epoch: int, nonce: bytes) -> bytes:
    """What a node signs for its /health proof of `epoch` (`nonce`: `health_nonces`)."""
    return tagged_hash(TAG_HEALTH, chain_id, node_id + epoch.to_bytes(8, "big") + nonce)


def proof_nonces(meta: Meta) -> dict[int, bytes]:
    """{epoch: nonce} of the /health proofs there are now: this epoch's first, and from
    epoch 1 the previous one's (a node signs both, `NodeService.health_proofs`).

    An epoch's nonce is the `next_seed` its first block set: the mix at the end of the
    epoch before, which nobody knows until that epoch's last block, so no proof can be
    signed ahead. The previous epoch's nonce is the current `epoch_seed` (epochs.py:
    seeds look ahead one)."""
    nonces = {meta.epoch: meta.next_seed}
    if meta.epoch > 0:
        nonces[meta.epoch - 1] = meta.epoch_seed
    return nonces


def health_nonces(state: State, params: Params) -> dict[int, bytes]:
    """{epoch: nonce} a checker accepts a /health proof for, by the committed `state`
    (`proof_nonces`): the current epoch's, and in its first HEALTH_GRACE_BLOCKS blocks the
    previous one's too. A node that stopped in epoch E-1 leaves no answer for E past those
    blocks (within them its E-1 proof, replayable by anyone, counts)."""
    meta: Meta = state.get(META)
    nonces = proof_nonces(meta)
    if meta.height - meta.epoch * params.epoch_length >= HEALTH_GRACE_BLOCKS:
        nonces.pop(meta.epoch - 1, None)
    return nonces


def health_proof_valid(
    proof: object, chain_id: str, node_id: bytes, node_key: bytes, nonces: Mapping[int, bytes]
) -> bool:
    """Whether `proof` (a /health answer's "proof", untrusted JSON) is `node_id`'s, signed
    by `node_key` for one of the epochs of `nonces`."""
    if not isinstance(proof, dict):
        return False
    epoch, claimed, signature = proof.get("epoch"), proof.get("node_id"), proof.get("signature")
    if type(epoch) is not int or epoch not in nonces or claimed != node_id.hex():
        return False
    if not isinstance(signature, str) or len(signature) != 2 * SIGNATURE_SIZE:
        return False
    try:
        raw = bytes.fromhex(signature)
    except ValueError:
        return False
    return verify(node_key, health_digest(chain_id, node_id, epoch, nonces[epoch]), raw)
