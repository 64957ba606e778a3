"""rev24p: the duty p2p24 signs again at once reaches no other pool, so it gets into a
block later than before p2p24 unless this node proposes, and can miss its epoch.

The path (p2p24 3's own): node N's evidence report R is pending at its hot key's nonce n,
its uptime attestation D at n + 1, both gossiped: the next proposer P holds them too.
Another node's report of the offender's earlier offence reaches both pools between blocks
and takes R's evidence slot in each (`mempool._replaces`). N takes D out at once, signs
its payload again as D' at nonce n, and gossips D'.

What happens now: P still holds D (behind the gap R left: not includable, and P does not
sign N's txs again), so D' is refused there `duty_pending` (one pending duty per (kind,
node); only evidence replaces pending evidence). P's next block has no attestation of
N's (as before). At that block's recheck P drops D, but N no longer signs anything again
(D' is valid at its account nonce) and re-gossips D' only REGOSSIP_BLOCKS (3) blocks after
it sent it: P's block after that has no attestation of N's either. With that block the
epoch's last, N's attestation misses its epoch. On main 409be38 N signed D again at the
first block's recheck, P took it, and its next block held it. p2p24's own test passes only
because N builds the block from its own pool.

What should happen (docs/security.md, the p2p24 3 row, which defends "an uptime
attestation due by the epoch's last block"): N's attestation gets into a block at least
as soon as it did before p2p24, whoever proposes.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.tx import TxKind
from tests.support.duties import (
    EPOCH_LENGTH,
    REPORTER,
    next_proposer_and_node,
    open_duty_chain,
    p_proposes,
    report_then_attest,
    rival_report,
)


def test_an_attestation_signed_again_at_once_still_makes_another_proposers_epoch_end(
    tmp_path: Path,
) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        # Two pools over the same committed chain: the next proposer P's, and node N's,
        # whose own txs (a client's push, a re-gossip) reach P.
        p, n_service, b = next_proposer_and_node(chain)
        p_service, refusals = p.service, p.refusals
        # Two blocks left in epoch 0: heights EPOCH_LENGTH - 2 and EPOCH_LENGTH - 1.
        report, attest, epoch = report_then_attest(n_service, b, EPOCH_LENGTH - 3)
        assert report.id in p_service.mempool and attest.id in p_service.mempool

        # Another node's report of the offender's earlier offence reaches both pools.
        rival = rival_report(b)
        n_service.submit(rival.raw, from_peer=True)
        p_service.submit(rival.raw, from_peer=True)
        assert report.id not in n_service.mempool and report.id not in p_service.mempool

        address = address_of(REPORTER.public_key)
        for height in (EPOCH_LENGTH - 2, EPOCH_LENGTH - 1):
            block, recorded = p_proposes(b, p, n_service)
            assert block.height == height
        n_attests = [
            (t.nonce, refusals.get(t.id, ["admitted"]))
            for t in n_service.mempool.of_sender(address)
            if t.kind is TxKind.UPTIME_ATTEST
        ]
        print(
            f"epoch={epoch} last_attest_epoch={recorded.last_attest_epoch} "
            f"N's pending attestations (nonce, at P)={n_attests}"
        )
        assert recorded.last_attest_epoch == epoch + 1, (
            f"node N's uptime attestation of epoch {epoch} missed its epoch: signed again "
            f"at once, it was refused by the proposer's pool ({n_attests}), which still "
            "held the copy behind the gap, and nothing sent it again before the epoch ended"
        )
    finally:
        chain.close()
