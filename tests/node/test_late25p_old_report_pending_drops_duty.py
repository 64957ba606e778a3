"""late25p 1: an old report a peer relays again is kept `pending` in the extra-txs store
(EVIDENCE is fee-free, refused `duty_pending`) and so replaced the re-signed duty kept at
its (sender, nonce); the recheck took the report back, the pool refused it and the duty
was lost.

The path: node N's report R is pending at nonce n at the next proposer P, its uptime
attestation D at n + 1. A rival report W takes R's slot at N, which signs D again as D'
at n: P refuses D' `duty_pending` (D holds its slot) and keeps it to take back. W reaches
P and replaces R there; a peer that kept R relays it to P again: W holds its slot, so P
refuses R `duty_pending` too. P commits W's block and rechecks it (before N's resend).

What should happen: P takes back D' at n, and its next block records N's attestation. A
report is offered again by its own node (`_offer_own_reports`), never taken back from the
store.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.tx import TxKind
from tests.support.duties import (
    EPOCH_LENGTH,
    next_proposer_and_node,
    open_duty_chain,
    p_proposes,
    report_then_attest,
    rival_reaches_n,
)


def test_an_old_report_relayed_again_does_not_drop_the_resigned_duty(tmp_path: Path) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        p, n_service, b = next_proposer_and_node(chain)
        p_service, refusals = p.service, p.refusals
        report, attest, epoch = report_then_attest(n_service, b, EPOCH_LENGTH - 4)
        for tx in (report, attest):
            assert tx.id in p_service.mempool, (tx.kind.name, refusals.get(tx.id))

        rival, (again,) = rival_reaches_n(n_service, b, p, report, (TxKind.UPTIME_ATTEST,))

        p_service.submit(rival.raw, from_peer=True)
        assert rival.id in p_service.mempool and report.id not in p_service.mempool
        p.receive(report)  # a peer that kept R relays it again
        assert refusals.get(report.id) == ["duty_pending"], refusals

        block = b.commit([rival])
        p_service.on_committed(block, ())  # P's recheck first: no resend of N's helps
        pooled = again.id in p_service.mempool

        block, recorded = p_proposes(b, p)
        print(
            f"height={block.height} D' pooled at P after its recheck={pooled} "
            f"last_attest_epoch={recorded.last_attest_epoch} (epoch {epoch})"
        )
        assert recorded.last_attest_epoch == epoch + 1, (
            "P's block lacks N's re-signed attestation: the old report relayed again was "
            f"kept pending at (N, {report.nonce}) and replaced it (pooled: {pooled})"
        )
    finally:
        chain.close()
