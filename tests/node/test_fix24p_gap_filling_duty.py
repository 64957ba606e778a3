"""rev24p A: a pool holding a node's duty behind the nonce gap its report left takes the
duty that node signs again at the gap in its place (`mempool._fills_gap`), so that the
next proposer's block holds it whichever of the rival report and the new duty reached
it first; before, it was refused `duty_pending` until the proposer's recheck dropped
the gapped copy, a block later, and the node sent it again."""

from __future__ import annotations

from pathlib import Path

from tests.support.duties import (
    EPOCH_LENGTH,
    next_proposer_and_node,
    open_duty_chain,
    p_proposes,
    report_then_attest,
    rival_report,
)


def test_a_pool_takes_a_duty_signed_again_at_the_gap_in_place_of_the_gapped_one(
    tmp_path: Path,
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        p, n_service, b = next_proposer_and_node(chain)  # the next proposer P, node N
        p_service, refusals = p.service, p.refusals
        # The next block, height EPOCH_LENGTH - 1, is epoch 0's last.
        report, attest, epoch = report_then_attest(n_service, b, EPOCH_LENGTH - 2)
        assert report.id in p_service.mempool and attest.id in p_service.mempool

        # Another node's report of the offender's earlier offence reaches P first, then N.
        rival = rival_report(b)
        p_service.submit(rival.raw, from_peer=True)
        n_service.submit(rival.raw, from_peer=True)
        assert report.id not in p_service.mempool

        block, recorded = p_proposes(b, p, n_service)
        assert block.height == EPOCH_LENGTH - 1
        print(f"epoch={epoch} refused at P={list(refusals.values())}")
        assert recorded.last_attest_epoch == epoch + 1, (
            f"node N's attestation of epoch {epoch}, signed again at the gap its report "
            f"left, was not in P's block: P refused it ({list(refusals.values())}) for the "
            "gapped copy it held"
        )
        assert attest.id not in p_service.mempool  # the gapped copy made way
    finally:
        chain.close()
