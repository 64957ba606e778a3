"""rev18a: a pooled tx a proposer drops is still held, not parked (held18 gap).

Busy network: a pooled transfer whose fee the sender's balance covers but whose amount
it does not (the mempool checks the fee only) is dropped by this node's proposer
(`NodeService.note_dropped`: out of the pool, reason recorded) but stays in `checked`, so
`Node.has_tx` answers held and every later announcement of it, after the sender is funded,
is ignored: the very issue-22 case held18 parks for the mempool's refusals. What a user
sees: this validator never proposes the tx again. Fix direction: `note_dropped` (and the
mempool's `recheck` evictions) park the tx when its reason can clear, else forget it.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.errors import Reason, TxError
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, open_chain


def test_rev18a_a_tx_a_proposer_dropped_for_funds_is_parked_not_held(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        tx = Builder(chain).transfer(funded_key(), b"\x0e" * 20)
        service.submit(tx.raw)
        service.note_dropped(tx, TxError(Reason.INSUFFICIENT_FUNDS, "amount not covered"))
        assert tx.id not in service.mempool
        admission = service.admission
        assert admission.is_parked(tx.id) or tx.id not in admission.checked, (
            "a dropped tx is still held: its announcements are never offered to the pool"
        )
    finally:
        chain.close()
