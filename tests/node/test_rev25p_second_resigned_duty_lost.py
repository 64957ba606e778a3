"""rev25p 3: the p2p25 1 fix takes back from the extra-txs store one duty a sender a block
(`NodeService._take_kept_duties`: the one at the sender's next free nonce), but a node
signs again every duty behind the gap its report left (`_sign_again_behind`, "in their
order"), and a peer refuses each of them `duty_pending` while the gapped copies hold
their slots.

The path: node N's evidence report R is pending at nonce n, its uptime attestation D at
n + 1 and its NODE_CONFIRM C at n + 2, all gossiped to the next proposer P. A rival
report takes R's slot at N, which signs D again as D' at n and C as C' at n + 1: P
refuses both `duty_pending` and keeps both in its extra-txs store. N commits the block
first and sends both again, before P's recheck: refused again. P's recheck drops R, D
and C, and takes back D' only; C' stays in the store, unpooled.

What happens now: P's next block holds N's attestation but not its confirmation (N sends
it again only after REGOSSIP_BLOCKS blocks; a confirmation due by a window's end misses
it). What should happen: P takes back every kept duty that the freed nonces make
includable, in nonce order, so that its block holds both.
"""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.tx import Benchmark, NodeConfirm, Tx, TxKind
from fluxchain.node.duties import VERSION, confirm_due
from tests.support.duties import (
    EPOCH_LENGTH,
    REPORTER,
    next_proposer_and_node,
    open_duty_chain,
    p_proposes,
    report_then_attest,
    rival_reaches_n,
)

BENCH = Benchmark(
    cores=2,
    threads=4,
    ram_mb=4_096,
    disk_gb=50,
    disk_write_mbps=200,
    cpu_score=1_000,
    bandwidth_mbit=100,
)


def test_every_duty_signed_again_behind_the_gap_reaches_the_next_block(tmp_path: Path) -> None:
    chain = open_duty_chain(tmp_path / "home")
    try:
        p, n_service, b = next_proposer_and_node(chain)
        p_service, refusals = p.service, p.refusals
        chain_id = b.chain_id
        report, attest, epoch = report_then_attest(n_service, b, EPOCH_LENGTH - 4)
        node = confirm_due(chain.state, chain.params, REPORTER.public_key, chain.height)
        assert node is not None, "the scene needs N's confirmation due"
        confirm = Tx.create(
            REPORTER,
            chain_id,
            n_service.next_nonce(REPORTER.public_key),
            0,
            NodeConfirm(node.node_id, BENCH, VERSION),
        )
        n_service.submit(confirm.raw)
        for tx in (report, attest, confirm):
            assert tx.id in p_service.mempool, (tx.kind.name, refusals.get(tx.id))
        before = node.last_confirm_height

        kinds = (TxKind.UPTIME_ATTEST, TxKind.NODE_CONFIRM)
        rival, resigned = rival_reaches_n(n_service, b, p, report, kinds)
        again = {t.kind: t for t in resigned}

        block = b.commit([rival])
        n_service.on_committed(block, ())  # N first: its resend reaches P before P's recheck
        p_service.on_committed(block, ())
        pooled = {kind.name: tx.id in p_service.mempool for kind, tx in again.items()}

        block, recorded = p_proposes(b, p, n_service)
        print(
            f"height={block.height} pooled at P after its recheck={pooled} "
            f"last_attest_epoch={recorded.last_attest_epoch} (epoch {epoch}) "
            f"last_confirm_height={recorded.last_confirm_height} (was {before})"
        )
        assert recorded.last_attest_epoch == epoch + 1
        assert recorded.last_confirm_height > before, (
            "P's block has N's attestation but not its confirmation: P took back one "
            f"kept duty of N's at its recheck, and the re-signed confirmation stayed in its "
            f"extra-txs store (pooled after the recheck: {pooled})"
        )
    finally:
        chain.close()
