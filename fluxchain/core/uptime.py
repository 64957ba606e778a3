"""Uptime: who checks whom each epoch, their attestations, marking nodes down, and the
reporters that the outcome contradicts.

At the start of each epoch the confirmed nodes that have a rank key are shuffled by the
epoch seed and their rank keys into a ring.
The checkers of a target are the first `k = checkers_per_node` nodes after it in the ring
that belong to distinct operators (owner addresses), none of them the target's own: an
operator with many nodes counts once per target. The walk looks at most `WALK_FACTOR * k`
nodes, so a node checks at most that many targets. Each checker probes its targets and
sends one UPTIME_ATTEST per epoch with an up or down verdict for each.

A target is DOWN once down reports come from more than 2/3 of its checkers (reports not
sent count as neither), in the block that carries the deciding report; placement moves its
instances in that block. A minority of the checker pool holds such a quorum with negligible
probability (docs/state.md has the arithmetic). At the next epoch start the reports the
outcome contradicts are penalised: up reports about a node that was marked down, down
reports about a node still confirmed; the reporter goes to the back of its tier's payment
queue (docs/economics.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from fluxchain.core import nodes, rewards
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import sha256
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.records import (
    META,
    NODE,
    RING,
    UPTIME,
    Meta,
    Node,
    NodeStatus,
    Ring,
    UptimeTally,
    node_key,
)
from fluxchain.core.state import State
from fluxchain.core.tx import Tx, UptimeAttest

# How far past a target the checker walk looks, in multiples of k: it bounds the targets
# of one checker (an attestation carries at most tx.MAX_REPORTS) when one operator's
# nodes sit next to each other in the ring.
WALK_FACTOR: Final = 2

# The positions of the current ring, derived from the Ring record. Kept by identity: the
# record object stays in the state until the next epoch replaces it.
_positions: list[tuple[Ring, dict[bytes, int]]] = []
_POSITIONS_KEPT: Final = 4


def quorum_reached(down: int, checkers: int) -> bool:
    """Down reports mark a node down only from more than 2/3 of its checkers: a minority
    of the checker pool cannot reach this, and honest up reports (or silence) block it."""
    return checkers > 0 and 3 * down > 2 * checkers


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


def checkers_of(state: State, target_id: bytes, params_k: int) -> list[bytes]:
    """The nodes that probe `target_id` this epoch: the first `params_k` nodes after it in
    the ring with distinct operators other than its own, within `WALK_FACTOR * params_k`."""
    ring = get_ring(state)
    i = _position(ring, target_id)
    if i is None:
        return []
    n = len(ring.nodes)
    seen = {_operator(state, target_id)}
    checkers: list[bytes] = []
    for d in range(1, min(n, WALK_FACTOR * params_k + 1)):
        if len(checkers) == params_k:
            break
        candidate = ring.nodes[(i + d) % n]
        operator = _operator(state, candidate)
        if operator not in seen:
            seen.add(operator)
            checkers.append(candidate)
    return checkers


def targets_of(state: State, checker_id: bytes, params_k: int) -> list[bytes]:
    """The nodes `checker_id` must probe this epoch (empty if it is not in the ring): the
    inverse of `checkers_of`, over the `WALK_FACTOR * params_k` nodes before it."""
    ring = get_ring(state)
    i = _position(ring, checker_id)
    if i is None:
        return []
    n = len(ring.nodes)
    targets = []
    for d in range(1, min(n, WALK_FACTOR * params_k + 1)):
        target = ring.nodes[(i - d) % n]
        if checker_id in checkers_of(state, target, params_k):
            targets.append(target)
    return targets


def _penalise_contradicted(ctx: BlockContext, epoch: int) -> None:
    """Send every reporter of the ended epoch whose report the outcome contradicts to the
    back of its tier's payment queue, and drop the epoch's tallies."""
    state = ctx.state
    tallies = [(key, tally) for key, tally in state.items(UPTIME)]
    for key, tally in tallies:
        state.delete(key)
        if tally.epoch != epoch:
            continue
        target_id = key[len(UPTIME) :]
        target = nodes.get_node(state, target_id)
        if quorum_reached(len(tally.down), tally.checkers):
            wrong, said_up = tally.up, True  # it was marked down: "up" was false
        elif target is not None and nodes.is_active(target):
            wrong, said_up = tally.down, False  # it kept confirming: "down" was false
        else:
            continue  # gone for another reason (expired, unbonding): nothing to judge
        for reporter_id in wrong:
            reporter = nodes.get_node(state, reporter_id)
            if reporter is None or not nodes.is_active(reporter):
                continue  # no queue place to lose
            ticket = rewards.enqueue(state, reporter)
            state.put(node_key(reporter_id), replace(reporter, queue_ticket=ticket))
            ctx.emit(EventKind.REPORT_CONTRADICTED, reporter_id, target_id, int(said_up))


def start_epoch(ctx: BlockContext, epoch: int, seed: bytes) -> None:
    """Judge the ended epoch's reports, then shuffle the confirmed nodes into this
    epoch's ring."""
    _penalise_contradicted(ctx, epoch - 1)
    # By rank key, not node id: a node id is fixed by its register tx and can be ground;
    # a rank key comes from a mix nobody knew then. A node without one yet sits out.
    confirmed = [
        (sha256(seed + node.rank_key), node.node_id)
        for _, node in ctx.state.items(NODE)
        if node.status is NodeStatus.CONFIRMED and node.rank_key
    ]
    confirmed.sort()
    ctx.state.put(RING, Ring(epoch, tuple(node_id for _, node_id in confirmed)))


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
    if not nodes.is_active(checker):
        raise TxError(Reason.NODE_WRONG_STATE, "only confirmed nodes check others")
    # check: it reports on the current epoch, once
    meta: Meta = state.get(META)
    ring = get_ring(state)
    if payload.epoch != ring.epoch or payload.epoch != meta.epoch:
        raise TxError(Reason.WRONG_EPOCH, f"epoch {payload.epoch}, current is {meta.epoch}")
    if checker.last_attest_epoch == payload.epoch + 1:
        raise TxError(Reason.ALREADY_ATTESTED, "this node already attested in this epoch")
    # check: every target is one the ring assigned to it
    if not payload.reports and not targets_of(state, checker.node_id, k_param):
        raise TxError(Reason.NOT_A_CHECKER, "this node has no targets in this epoch")
    for report in payload.reports:
        if checker.node_id not in checkers_of(state, report.target, k_param):
            raise TxError(
                Reason.NOT_A_CHECKER, f"{report.target.hex()} is not a target of this node"
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
            and quorum_reached(len(tally.down), tally.checkers)
            and target is not None
            and nodes.is_active(target)
        ):
            nodes.set_status(ctx, target, NodeStatus.DOWN, "down")
            ctx.emit(EventKind.NODE_DOWN, report.target, len(tally.down), tally.checkers)
