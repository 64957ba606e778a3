"""Fee-free txs against committed state: what a node checks before it pools or relays one.

NODE_CONFIRM, UPTIME_ATTEST, EVIDENCE, APP_SECRETS_SEAL and _REJECT pay no fee, so nothing but
these checks stops a flood of them. They are the stateful checks of the kinds' own handlers
(`check_*` in nodes.py, uptime.py and secrets.py, which the handlers call before they
write), run read-only on the committed state as if for the next block: admission and
execution cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fluxchain.core import nodes, secrets, uptime
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import HASH_SIZE
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.execute import apply
from fluxchain.core.params import Params
from fluxchain.core.placement.ranking import (
    IndexOverlay,
    NodeIndex,
    build_node_index,
    node_index,
)
from fluxchain.core.placement.records import NODE_LOAD
from fluxchain.core.records import Node
from fluxchain.core.state import State
from fluxchain.core.tx import FEE_FREE, Tx, TxKind

DUTY_CHECKS: Final[dict[TxKind, Callable[[BlockContext, Tx], Node]]] = {
    TxKind.NODE_CONFIRM: nodes.check_node_confirm,
    TxKind.UPTIME_ATTEST: uptime.check_uptime_attest,
    TxKind.EVIDENCE: nodes.check_evidence,
    TxKind.APP_SECRETS_SEAL: secrets.check_app_secrets_seal,
    TxKind.APP_SECRETS_REJECT: secrets.check_app_secrets_reject,
}
assert set(DUTY_CHECKS) == FEE_FREE, "every fee-free kind needs its admission check"


def check_fee_free(state: State, params: Params, next_height: int, tx: Tx) -> bytes:
    """Raise TxError unless fee-free `tx` would pass its handler's checks in block
    `next_height` on `state`; return the id of the node it is a duty of (the confirmed or
    attesting node, or the offender that evidence accuses).

    Evidence is only for heights that have happened: its votes' height is at most the
    height being decided (`next_height`), or no block could ever include it, and it
    would hold its offender's duty slot for nothing. Evidence of the height being
    decided is judged as if for the block after it: it can only be included there, and
    must not be refused for being on time.
    """
    height = next_height
    if tx.kind is TxKind.EVIDENCE:
        offence_height = tx.payload.vote_a.height
        # check: the offence is of a height that has happened, at the latest the one
        # being decided; a later one is a forgery or a replay of a future no one saw
        if offence_height > next_height:
            raise TxError(
                Reason.BAD_EVIDENCE,
                f"evidence at height {offence_height} is beyond the height being decided"
                f" {next_height}",
            )
        height = max(height, offence_height + 1)
    # Read-only: the checks never write, so no proposer, entropy or event list is needed.
    ctx = BlockContext(state, params, height, b"", bytes(HASH_SIZE))
    return DUTY_CHECKS[tx.kind](ctx, tx).node_id


def check_paid(
    state: State, params: Params, next_height: int, tx: Tx, index: NodeIndex | None = None
) -> None:
    """Raise the executor's TxError unless paid `tx` (its sender's next nonce on `state`)
    would apply in block `next_height` on `state`: its whole handler, fee and nonce
    included, dry-run on a view of the committed records whose writes are thrown away
    (rev18c 2).

    `index`, the node index of those very records (`committed_node_index`), is read
    through a copy-on-write overlay instead of a build from every load record (rev18e 2);
    without it the view builds its own. Never the index of a state with pending writes:
    it lists nodes the committed records lack, and placement asserts on them (rev18f 1)."""
    view = state.committed_view()
    if index is not None:
        view.attach(NODE_LOAD, IndexOverlay(index))
    ctx = BlockContext(view, params, next_height, b"", bytes(HASH_SIZE))
    apply(ctx, tx)


def committed_node_index(state: State) -> NodeIndex:
    """The node index of `state`'s committed records: the one `state` keeps while it has
    no pending writes, else one built from the committed records (every load record)."""
    if not state.has_pending():
        return node_index(state)
    return build_node_index(state.committed_view())
