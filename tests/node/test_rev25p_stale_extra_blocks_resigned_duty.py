"""rev25p 1: the p2p25 1 fix (`NodeService._take_kept_duties`) takes back from the
extra-txs store whatever fee-free tx of the sender sits at its next nonce, and that store
keeps one tx a (sender, nonce), the first in (a fee-free tx never outbids another). A
settled report of the node's own at that nonce gets there first on its own.

The path (no attacker needed; a byzantine peer replaying the old report does the same):
node N reports validator X's equivocation as R_a at its hot key's nonce n; another
node's report of the same offence is recorded first, so every pool's recheck drops R_a
(settled) with nonce n unspent, and the next proposer P's `_gone` keeps R_a in its
extra-txs store at (N, n) (a settled report is not `ALREADY_KNOWN`, so "clears later").
Then the p2p25 1 scene: N reports OFFENDER as R at nonce n, attests as D at n + 1; a
rival report takes R's slot at N, which signs D again as D' at n; P refuses D'
`duty_pending` (it holds R and D) and its store does not keep D' (R_a holds (N, n));
N's resend reaches P before P's recheck. P's recheck then drops R and D and takes back
R_a (refused again, kept again), not D'.

What happens now: P's next block has no attestation of N's (the race p2p25 1 closed is
open again after any settled report of the node's at that nonce). What should happen: P
takes D' once the gapped copy leaves, and its block holds N's attestation.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.tx import Tx, TxKind
from tests.support.chain import node_hot_key
from tests.support.duties import (
    EPOCH_LENGTH,
    OTHER,
    REPORTER,
    next_proposer_and_node,
    offence,
    open_duty_chain,
    p_proposes,
    report_then_attest,
    rival_reaches_n,
)

X = node_hot_key(0)  # another validator whose earlier equivocation N reported


def test_a_settled_own_report_in_the_extra_store_shadows_the_duty_signed_again(
    tmp_path: Path,
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        p, n_service, b = next_proposer_and_node(chain)
        p_service, refusals = p.service, p.refusals
        while chain.height < EPOCH_LENGTH - 5:
            b.commit()
        chain_id = b.chain_id

        # N's report of X, then another node's report of the same offence is recorded.
        report_a = n_service.report_offence(REPORTER, offence(chain_id, X, 3))
        assert report_a.id in p_service.mempool
        other_a = Tx.create(OTHER, chain_id, b.chain_nonce(OTHER), 0, offence(chain_id, X, 3))
        block = b.commit([other_a])
        n_service.on_committed(block, ())
        p_service.on_committed(block, ())
        assert report_a.id not in p_service.mempool and report_a.id not in n_service.mempool
        assert chain.height == EPOCH_LENGTH - 4

        # The p2p25 1 scene, as tests/node/test_p2p25_resend_race.py plays it.
        report, attest, epoch = report_then_attest(n_service, b, EPOCH_LENGTH - 4)
        assert report.nonce == report_a.nonce  # the settled report's nonce, never spent
        assert report.id in p_service.mempool and attest.id in p_service.mempool
        rival, (resigned,) = rival_reaches_n(n_service, b, p, report, (TxKind.UPTIME_ATTEST,))
        print(
            f"P's extra-txs store: D' kept={p_service.extra.get(resigned.id) is not None} "
            f"R_a kept={p_service.extra.get(report_a.id) is not None}"
        )

        block = b.commit([rival])
        n_service.on_committed(block, ())  # N first: its resend reaches P before P's recheck
        p_service.on_committed(block, ())
        assert report.id not in p_service.mempool

        block, recorded = p_proposes(b, p, n_service)
        print(
            f"epoch={epoch} height={block.height} last_attest_epoch={recorded.last_attest_epoch} "
            f"refusals at P={[(k.hex()[:8], v) for k, v in refusals.items()]}"
        )
        assert recorded.last_attest_epoch == epoch + 1, (
            "P's block has no attestation of N's: P's extra-txs store held N's settled "
            "report R_a at the nonce of the re-signed attestation D', so D' was not kept "
            "and P's recheck took back R_a instead"
        )
    finally:
        chain.close()
