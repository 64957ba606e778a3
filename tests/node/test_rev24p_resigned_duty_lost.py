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

from dataclasses import replace
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.tx import Evidence, Tx, UptimeAttest, UptimeReport
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.node.duties import attest_due
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, node_hot_key, open_chain

EPOCH_LENGTH = 9


def _evidence(chain_id: str, offender: SigningKey, height: int) -> Evidence:
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return Evidence(*evidence_pair(a, c))


def test_an_attestation_behind_an_own_report_that_another_block_includes_is_not_lost(
    tmp_path: Path,
) -> None:
    params = replace(devnet_params(), unbonding_period=30, epoch_length=EPOCH_LENGTH)
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)
    chain = open_chain(tmp_path / "home", genesis)
    try:
        service = NodeService(chain, Mempool())  # node N's
        b = Builder(chain)
        while chain.height < EPOCH_LENGTH - 3:
            b.commit()
        chain_id = b.chain_id
        offender, reporter, other = node_hot_key(1), node_hot_key(2), node_hot_key(3)
        service.report_offence(reporter, _evidence(chain_id, offender, 3))
        report = service.own_reports.get(offender.public_key)
        assert report is not None and report.tx is not None and report.tx.id in service.mempool
        sent_report = report.tx  # R, as gossiped: other pools hold it
        due = attest_due(chain.state, chain.params, reporter.public_key)
        assert due is not None
        node, epoch, targets = due
        verdicts = tuple(UptimeReport(t, True, 10) for t in sorted(targets))
        attest = Tx.create(
            reporter,
            chain_id,
            service.next_nonce(reporter.public_key),
            0,
            UptimeAttest(node.node_id, epoch, verdicts),
        )
        service.submit(attest.raw)
        assert attest.nonce == sent_report.nonce + 1

        # Another node's report of the offender's earlier offence takes the slot in N's
        # pool (not yet in the next proposer's).
        rival = Tx.create(
            other, chain_id, b.chain_nonce(other), 0, _evidence(chain_id, offender, 2)
        )
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
