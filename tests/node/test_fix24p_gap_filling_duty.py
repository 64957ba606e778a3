"""rev24p A: a pool holding a node's duty behind the nonce gap its report left takes the
duty that node signs again at the gap in its place (`mempool._fills_gap`), so that the
next proposer's block holds it whichever of the rival report and the new duty reached
it first; before, it was refused `duty_pending` until the proposer's recheck dropped
the gapped copy, a block later, and the node sent it again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
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


def test_a_pool_takes_a_duty_signed_again_at_the_gap_in_place_of_the_gapped_one(
    tmp_path: Path,
) -> None:
    params = replace(devnet_params(), unbonding_period=30, epoch_length=EPOCH_LENGTH)
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)
    chain = open_chain(tmp_path / "home", genesis)
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
        offender, reporter, other = node_hot_key(1), node_hot_key(2), node_hot_key(3)
        report = n_service.report_offence(reporter, _evidence(chain_id, offender, 3))
        due = attest_due(chain.state, chain.params, reporter.public_key)
        assert due is not None
        node, epoch, targets = due
        verdicts = tuple(UptimeReport(t, True, 10) for t in sorted(targets))
        attest = Tx.create(
            reporter,
            chain_id,
            n_service.next_nonce(reporter.public_key),
            0,
            UptimeAttest(node.node_id, epoch, verdicts),
        )
        n_service.submit(attest.raw)
        assert report.id in p_service.mempool and attest.id in p_service.mempool

        # Another node's report of the offender's earlier offence reaches P first, then N.
        rival = Tx.create(
            other, chain_id, b.chain_nonce(other), 0, _evidence(chain_id, offender, 2)
        )
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
