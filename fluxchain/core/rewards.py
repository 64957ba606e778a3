"""Block rewards: the subsidy, its split, and the tier payment queues.

Each block mints `params.subsidy_at(height)` at most:
- each tier's share (`tier_reward_at`) goes to the node at the head of that tier's payment
  queue, which then moves to the back; a tier with no confirmed node mints nothing;
- the rest of the subsidy, plus every fee paid in the block, goes to the proposer's owner.

A queue holds confirmed nodes in the order they joined or were last paid. A node that
stops being confirmed keeps a stale entry (its `queue_ticket` no longer matches), which
the queue skips and drops when it reaches the head: removal costs nothing.

A node that owes a forfeit (a `FORFEIT` record: uptime.py penalises a checker contradicted on
an "up" or silent so) is passed over once when it reaches the head: it goes to the back
unpaid, and the next node is paid. It loses one whole payout wherever it stood in the
queue when the penalty came, so no position makes a penalty free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from fluxchain.core import deque
from fluxchain.core.accounts import credit
from fluxchain.core.context import BlockContext
from fluxchain.core.events import EventKind, PayReason
from fluxchain.core.params import Tier
from fluxchain.core.records import META, Meta, Node, NodeStatus, Ref, node_key
from fluxchain.core.state import State

FORFEIT: Final = b"x"  # + node id: the node's next payout is forfeited (a bare marker)

TABLES: Final[dict[bytes, Callable[[Any], Any]]] = {FORFEIT: Ref.from_fields}


def owe_forfeit(state: State, node_id: bytes) -> bool:
    """Mark `node_id` to be passed over at its next turn; False if it already owes one
    (forfeits do not add up: one per node until it is paid over)."""
    if state.get(FORFEIT + node_id) is not None:
        return False
    state.put(FORFEIT + node_id, Ref(b""))
    return True


def queue_name(tier: Tier) -> bytes:
    return b"pay/" + bytes((int(tier),))


def enqueue(state: State, node: Node) -> int:
    """Put a node at the back of its tier's queue; return its ticket."""
    return deque.push(state, queue_name(node.tier), node.node_id)


def _next_payee(ctx: BlockContext, tier: Tier) -> Node | None:
    """Pop the tier's queue to its first live entry; a node owing a forfeit goes to the
    back unpaid on the way (each forfeit is paid over once, so the loop ends)."""
    state = ctx.state
    while (item := deque.pop(state, queue_name(tier))) is not None:
        ticket, node_id = item
        node: Node | None = state.get(node_key(node_id))
        if node is None or node.status is not NodeStatus.CONFIRMED or node.queue_ticket != ticket:
            continue
        if state.get(FORFEIT + node_id) is None:
            return node
        state.delete(FORFEIT + node_id)
        state.put(node_key(node_id), replace(node, queue_ticket=enqueue(state, node)))
        ctx.emit(EventKind.PAYOUT_FORFEITED, node_id)
    return None


def process_rewards(ctx: BlockContext, proposer_address: bytes) -> None:
    """Pay the tier queue heads and the proposer; count what was minted."""
    state, params, height = ctx.state, ctx.params, ctx.height
    subsidy = params.subsidy_at(height)
    minted = 0
    for tier in Tier:
        reward = params.tier_reward_at(tier, height)
        node = _next_payee(ctx, tier) if reward else None
        if node is None:
            continue
        ticket = enqueue(state, node)
        state.put(
            node_key(node.node_id),
            replace(node, queue_ticket=ticket, paid_total=node.paid_total + reward),
        )
        credit(state, node.owner, reward)
        minted += reward
        ctx.emit(EventKind.PAID, node.owner, reward, int(PayReason.TIER), node.node_id)
    proposer_share = subsidy - sum(params.tier_reward_at(t, height) for t in Tier)
    if proposer_share + ctx.fees:
        credit(state, proposer_address, proposer_share + ctx.fees)
        ctx.emit(
            EventKind.PAID,
            proposer_address,
            proposer_share + ctx.fees,
            int(PayReason.PROPOSER),
            b"",
        )
    minted += proposer_share
    meta: Meta = state.get(META)
    # What the block's txs burnt (base fees, account deposits, relocations) left the
    # supply: counted here once, like the minting.
    state.put(
        META,
        replace(meta, height=height, minted=meta.minted + minted, burned=meta.burned + ctx.burned),
    )
