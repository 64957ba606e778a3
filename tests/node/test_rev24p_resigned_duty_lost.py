"""rev24p: the at-once re-sign (p2p24 3) signs a second tx at a nonce the network still
holds, and the duty is lost when the first one wins.

The path: node N's evidence report R is pending at its hot key's nonce n, its uptime
attestation D at n + 1. Between blocks another node's report of the offender's earlier
offence takes the evidence slot in N's pool (`mempool._replaces`), so R leaves N's pool;
p2p24 then takes D out at once and signs its payload again as D' at nonce n.

But R left only N's pool: it was gossiped, and the next block's proposer, which got R
before the rival report (and D not yet, or D first and refused for its nonce), includes
R at nonce n. That spends n: D' is dropped as spent, and D, withdrawn from N's pool, is
no longer anywhere N would offer it. `Duties` sends one attestation an epoch, so the
epoch's attestation is lost.

What happens now: after the block with R, N holds no attestation: the epoch's last block
records none. What should happen (and did on main 409be38, where D waited at n + 1 for
the next block's recheck): a nonce is free only once the chain says so; N's attestation
is still offered and the epoch's last block records it.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.nodes import get_node_by_key
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.chain import Builder
from tests.support.duties import (
    EPOCH_LENGTH,
    REPORTER,
    open_duty_chain,
    report_then_attest,
    rival_report,
)


def test_an_attestation_behind_an_own_report_that_another_block_includes_is_not_lost(
    tmp_path: Path,
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())  # node N's
        b = Builder(chain)
        # R, as gossiped: other pools hold it
        sent_report, attest, epoch = report_then_attest(service, b, EPOCH_LENGTH - 3)
        reporter = REPORTER

        # Another node's report of the offender's earlier offence takes the slot in N's
        # pool (not yet in the next proposer's).
        rival = rival_report(b)
        service.submit(rival.raw, from_peer=True)
        assert sent_report.id not in service.mempool

        # The next proposer got R first, and neither the rival report nor the attestation
        # in time: its block holds R at nonce n.
        block = b.commit([sent_report])
        assert block.height == EPOCH_LENGTH - 2
        service.on_committed(block, ())

        # The epoch's last block, built from N's pool.
        candidates = service.candidates()
        mine = [(t.kind.name, t.nonce) for t in candidates if t.sender == reporter.public_key]
        block = b.commit(candidates)
        assert block.height == EPOCH_LENGTH - 1
        service.on_committed(block, ())
        recorded = get_node_by_key(chain.state, reporter.public_key)
        assert recorded is not None
        print(
            f"epoch={epoch} report nonce={sent_report.nonce} attest nonce={attest.nonce} "
            f"N's candidates for the epoch's last block={mine} "
            f"attest status={service.tx_status(attest.id)}"
        )
        assert recorded.last_attest_epoch == epoch + 1, (
            f"node N's uptime attestation of epoch {epoch} was lost: signed again at the "
            f"nonce {sent_report.nonce} its gossiped report still held, that report was "
            "included, and the attestation at the next nonce had been withdrawn"
        )
    finally:
        chain.close()
