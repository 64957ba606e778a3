"""rev24p A: a pool holding a node's duty behind the nonce gap its report left takes the
duty that node signs again at the gap in its place (`mempool._fills_gap`), so that the
next proposer's block holds it whichever of the rival report and the new duty reached
it first; before, it was refused `duty_pending` until the proposer's recheck dropped
the gapped copy, a block later, and the node sent it again."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.errors import TxError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.tx import Tx
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.chain import Builder
from tests.support.duties import (
    EPOCH_LENGTH,
    OFFENDER,
    REPORTER,
    attest_next,
    offence,
    open_duty_chain,
    rival_report,
)


def test_a_pool_takes_a_duty_signed_again_at_the_gap_in_place_of_the_gapped_one(
    tmp_path: Path,
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        p_service = NodeService(chain, Mempool())  # the next proposer P's pool
        refusals: dict[bytes, str] = {}

        def to_p(tx: Tx) -> None:
            try:
                p_service.submit(tx.raw, from_peer=True)
            except TxError as exc:
                refusals[tx.id] = str(exc.reason)

        n_service = NodeService(chain, Mempool(), gossip=to_p)  # node N's
        b = Builder(chain)
        while chain.height < EPOCH_LENGTH - 2:
            b.commit()
        # The next block, height EPOCH_LENGTH - 1, is epoch 0's last.
        chain_id = b.chain_id
        offender, reporter = OFFENDER, REPORTER
        report = n_service.report_offence(reporter, offence(chain_id, offender, 3))
        attest, epoch = attest_next(n_service, chain, reporter)
        assert report.id in p_service.mempool and attest.id in p_service.mempool

        # Another node's report of the offender's earlier offence reaches P first, then N.
        rival = rival_report(b)
        p_service.submit(rival.raw, from_peer=True)
        n_service.submit(rival.raw, from_peer=True)
        assert report.id not in p_service.mempool

        block = b.commit(p_service.candidates())
        assert block.height == EPOCH_LENGTH - 1
        p_service.on_committed(block, ())
        n_service.on_committed(block, ())
        recorded = get_node_by_key(chain.state, reporter.public_key)
        assert recorded is not None
        print(f"epoch={epoch} refused at P={list(refusals.values())}")
        assert recorded.last_attest_epoch == epoch + 1, (
            f"node N's attestation of epoch {epoch}, signed again at the gap its report "
            f"left, was not in P's block: P refused it ({list(refusals.values())}) for the "
            "gapped copy it held"
        )
        assert attest.id not in p_service.mempool  # the gapped copy made way
    finally:
        chain.close()
