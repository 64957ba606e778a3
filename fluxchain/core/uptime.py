"""Uptime: who checks whom each epoch, their attestations, and marking nodes down.

At the start of each epoch the confirmed nodes are shuffled by the epoch seed into a ring;
the checkers of the node at position i are the next `k = min(checkers_per_node, n - 1)`
nodes of the ring. Each checker probes its k targets and sends one UPTIME_ATTEST per
epoch. A target reported down by `k // 2 + 1` of its checkers is DOWN at once, in the
block that carries the deciding report; placement moves its instances in that block.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from fluxchain.core import nodes
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

# The positions of the current ring, derived from the Ring record. Kept by identity: the
# record object stays in the state until the next epoch replaces it.
_positions: list[tuple[Ring, dict[bytes, int]]] = []
_POSITIONS_KEPT: Final = 4


def checker_count(ring: Ring, params_k: int) -> int:
    return max(0, min(params_k, len(ring.nodes) - 1))


def quorum(k: int) -> int:
    """Down reports needed to mark a node down: a strict majority of its checkers."""
    return k // 2 + 1


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


def targets_of(state: State, checker_id: bytes, params_k: int) -> list[bytes]:
    """The nodes `checker_id` must probe this epoch (empty if it is not in the ring)."""
    ring = get_ring(state)
    i = _position(ring, checker_id)
    if i is None:
        return []
    n = len(ring.nodes)
    return [ring.nodes[(i - d) % n] for d in range(1, checker_count(ring, params_k) + 1)]


def checkers_of(state: State, target_id: bytes, params_k: int) -> list[bytes]:
    """The nodes that probe `target_id` this epoch."""
    ring = get_ring(state)
    i = _position(ring, target_id)
    if i is None:
        return []
    n = len(ring.nodes)
    return [ring.nodes[(i + d) % n] for d in range(1, checker_count(ring, params_k) + 1)]


def start_epoch(ctx: BlockContext, epoch: int, seed: bytes) -> None:
    """Shuffle the confirmed nodes into this epoch's ring."""
    confirmed = [
        node.node_id for _, node in ctx.state.items(NODE) if node.status is NodeStatus.CONFIRMED
    ]
    confirmed.sort(key=lambda node_id: sha256(seed + node_id))
    ctx.state.put(RING, Ring(epoch, tuple(confirmed)))


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
    assigned = set(targets_of(state, checker.node_id, k_param))
    if not assigned:
        raise TxError(Reason.NOT_A_CHECKER, "this node has no targets in this epoch")
    for report in payload.reports:
        if report.target not in assigned:
            raise TxError(
                Reason.NOT_A_CHECKER, f"{report.target.hex()} is not a target of this node"
            )
    return checker


def process_uptime_attest(ctx: BlockContext, tx: Tx) -> None:
    payload: UptimeAttest = tx.payload
    state, k_param = ctx.state, ctx.params.checkers_per_node
    checker = check_uptime_attest(ctx, tx)
    ring = get_ring(state)
    state.put(node_key(checker.node_id), replace(checker, last_attest_epoch=payload.epoch + 1))
    needed = quorum(checker_count(ring, k_param))
    for report in payload.reports:
        tally: UptimeTally | None = state.get(UPTIME + report.target)
        if tally is None or tally.epoch != payload.epoch:
            tally = UptimeTally(payload.epoch, 0, 0)
        if report.up:
            tally = replace(tally, up=tally.up + 1)
        else:
            tally = replace(tally, down=tally.down + 1)
        state.put(UPTIME + report.target, tally)
        target = nodes.get_node(state, report.target)
        if (
            not report.up
            and tally.down == needed
            and target is not None
            and nodes.is_active(target)
        ):
            nodes.set_status(ctx, target, NodeStatus.DOWN, "down")
            ctx.emit(EventKind.NODE_DOWN, report.target, tally.down, checker_count(ring, k_param))
