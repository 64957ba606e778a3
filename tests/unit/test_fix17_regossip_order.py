"""A dropped local tx submitted again does not hold back the re-gossip of the local txs
behind it (fix17 4, issue 22).

The local txs are re-gossiped oldest first, and a block looks only at the front of that
schedule (perf16). A tx dropped from the pool and submitted again kept its old place in
the schedule with its new height: the local txs behind it, due earlier, waited for it, up
to REGOSSIP_BLOCKS more blocks. What a user sees: their tx, lost on its way to a proposer,
is sent again blocks later than the node promises."""

from __future__ import annotations

from pathlib import Path

from fluxchain.node.service import REGOSSIP_BLOCKS, NodeService
from tests.support.chain import Builder, funded_key, open_chain


def test_fix17_a_local_tx_submitted_again_does_not_delay_the_ones_behind_it(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        sent: list[bytes] = []
        service = NodeService(chain, gossip=lambda tx: sent.append(tx.id))
        b = Builder(chain)
        dropped = b.transfer(funded_key(0), b"\x01" * 20)
        waiting = b.transfer(funded_key(1), b"\x02" * 20)
        service.submit(dropped.raw)
        service.submit(waiting.raw)
        service.mempool.remove(dropped.id)  # evicted, say: its user submits it again
        service.on_committed(b.commit([]), ())
        service.submit(dropped.raw)
        sent.clear()
        for _ in range(REGOSSIP_BLOCKS - 1):  # `waiting` falls due at the last of them
            service.on_committed(b.commit([]), ())
        assert sent == [waiting.id], (
            f"after {REGOSSIP_BLOCKS} blocks pending, the local tx behind the one submitted "
            f"again was re-gossiped {sent.count(waiting.id)} times"
        )
        service.on_committed(b.commit([]), ())  # the one submitted again falls due
        assert sent == [waiting.id, dropped.id]
    finally:
        chain.close()
