"""p2p24 3: a tx of this node's own that leaves the pool between blocks gaps the duties it
sent after it; they were signed again only at the next block's recheck
(`NodeService._sign_again_behind`), so the next block could not hold them (behind the
gap), and one due by the epoch's last block missed its epoch for good.

The path: the node's evidence report is pending at its hot key's nonce n, its uptime
attestation at n + 1; another node's report of the same offender's earlier offence
arrives and takes the evidence slot (`mempool._replaces`), and the node's report leaves
the pool with nonce n unspent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.tx import Evidence, Tx, TxKind, UptimeAttest, UptimeReport
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


def test_a_duty_behind_an_own_report_pushed_out_between_blocks_makes_the_epochs_last_block(
    tmp_path: Path,
) -> None:
    params = replace(devnet_params(), unbonding_period=30, epoch_length=EPOCH_LENGTH)
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)
    chain = open_chain(tmp_path / "home", genesis)
    try:
        service = NodeService(chain, Mempool())  # node N's
        b = Builder(chain)
        while chain.height < EPOCH_LENGTH - 2:
            b.commit()
        # The next block, height EPOCH_LENGTH - 1, is epoch 0's last.
        chain_id = b.chain_id
        offender, reporter, other = node_hot_key(1), node_hot_key(2), node_hot_key(3)
        service.report_offence(reporter, _evidence(chain_id, offender, 3))
        report = service.own_reports.get(offender.public_key)
        assert report is not None and report.tx is not None and report.tx.id in service.mempool
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
        assert attest.nonce == report.tx.nonce + 1

        # Another node's report of the offender's earlier offence takes the slot.
        rival = Tx.create(
            other, chain_id, b.chain_nonce(other), 0, _evidence(chain_id, offender, 2)
        )
        service.submit(rival.raw, from_peer=True)
        assert report.tx.id not in service.mempool

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
