"""p2p24 3: a tx of this node's own that leaves the pool between blocks gaps the duties it
sent after it; they were signed again only at the next block's recheck
(`NodeService._sign_again_behind`), so the next block could not hold them (behind the
gap), and one due by the epoch's last block missed its epoch for good.

The path: the node's evidence report is pending at its hot key's nonce n, its uptime
attestation at n + 1; another node's report of the same offender's earlier offence
arrives and takes the evidence slot (`mempool._replaces`), and the node's report leaves
the pool with nonce n unspent."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.tx import TxKind
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


def test_a_duty_behind_an_own_report_pushed_out_between_blocks_makes_the_epochs_last_block(
    tmp_path: Path,
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())  # node N's
        b = Builder(chain)
        # The next block, height EPOCH_LENGTH - 1, is epoch 0's last.
        report, attest, epoch = report_then_attest(service, b, EPOCH_LENGTH - 2)
        reporter = REPORTER

        # Another node's report of the offender's earlier offence takes the slot.
        rival = rival_report(b)
        service.submit(rival.raw, from_peer=True)
        assert report.id not in service.mempool

        candidates = service.candidates()
        attests = [
            t
            for t in candidates
            if t.kind is TxKind.UPTIME_ATTEST and t.sender == reporter.public_key
        ]
        print(
            f"height={chain.height} epoch={epoch} attest nonce={attest.nonce} "
            f"candidates of N's key={[(t.kind.name, t.nonce) for t in attests]}"
        )
        block = b.commit(candidates)
        assert block.height == EPOCH_LENGTH - 1
        service.on_committed(block, ())
        recorded = get_node_by_key(chain.state, reporter.public_key)
        assert recorded is not None
        assert recorded.last_attest_epoch == epoch + 1, (
            f"node N's uptime attestation of epoch {epoch} was left behind the nonce its "
            "report freed when another node's report took the slot; the epoch's last block "
            f"could not hold it ({service.tx_status(attest.id)}), signed again only after it"
        )
    finally:
        chain.close()
