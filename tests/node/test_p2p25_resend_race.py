"""p2p25 1: an own duty signed again between blocks reaches a peer that still holds the
gapped copy only after that peer's recheck drops it; the node sends it again at the next
block (`NodeService._send_again`), but that send can reach the peer before the peer's
own recheck of the same block, and be refused `duty_pending` a second time. Nothing sent
it again for REGOSSIP_BLOCKS more blocks: the next proposer's block had none.

The path: node N's evidence report R is pending at its hot key's nonce n, its uptime
attestation D at n + 1, both gossiped to the next proposer P. Another node's report of
the offender's earlier offence reaches N (not P) and takes R's slot there, and the block
before P's records it. N signs D again as D' at nonce n and sends it: P refuses it (it
holds R and D). N commits the block first and sends D' again: P, not yet at its recheck,
refuses it again. Then P's recheck drops R (the offence is settled) and D (gapped).

What should happen: P takes D' once the gapped copy leaves, whatever the arrival order,
so its block holds N's attestation. The restart case is the same at P: N restarted
between the two blocks has an empty pool, so its duties sign the attestation afresh at
nonce n and send it, before P's recheck or after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.tx import TxKind
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.duties import (
    EPOCH_LENGTH,
    REPORTER,
    attest_next,
    next_proposer_and_node,
    open_duty_chain,
    p_proposes,
    report_then_attest,
    rival_reaches_n,
)


@pytest.mark.parametrize("restart", [False, True], ids=["resend", "restart"])
def test_a_duty_signed_again_reaches_a_peer_whose_recheck_runs_after_the_resend(
    tmp_path: Path, restart: bool
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        p, n_service, b = next_proposer_and_node(chain)
        p_service, refusals = p.service, p.refusals
        report, attest, epoch = report_then_attest(n_service, b, EPOCH_LENGTH - 4)
        assert report.id in p_service.mempool and attest.id in p_service.mempool

        # The rival report reaches N only (and the next block's proposer, another node).
        rival, (resigned,) = rival_reaches_n(n_service, b, p, report, (TxKind.UPTIME_ATTEST,))
        assert report.id not in n_service.mempool

        block = b.commit([rival])
        if restart:
            # N restarts before the block: a fresh pool; its duties sign the attestation
            # again at its account nonce, sent before P's recheck.
            n_service = NodeService(chain, Mempool(), gossip=p.receive)
            resigned, _ = attest_next(n_service, chain, REPORTER)
            assert resigned.nonce == report.nonce
        else:
            n_service.on_committed(block, ())  # N first: its resend reaches P before P's recheck
        assert report.id in p_service.mempool  # P has not rechecked yet
        p_service.on_committed(block, ())
        assert report.id not in p_service.mempool  # its offence is settled

        block, recorded = p_proposes(b, p, n_service)
        print(
            f"epoch={epoch} height={block.height} last_attest_epoch={recorded.last_attest_epoch} "
            f"refusals at P={[(k.hex()[:8], v) for k, v in refusals.items()]}"
        )
        assert recorded.last_attest_epoch == epoch + 1, (
            "P's block has no attestation of N's: N's re-signed copy reached P before P's "
            f"recheck dropped the gapped one and was refused ({refusals.get(resigned.id)}), "
            "and P never took it after"
        )
    finally:
        chain.close()
