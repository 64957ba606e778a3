"""rev24p: the duty p2p24 signs again at once reaches no other pool, so the epoch's last
block makes room for it only if this node proposes it.

The path (p2p24 3's own): node N's evidence report R is pending at its hot key's nonce n,
its uptime attestation D at n + 1, both gossiped: validator P holds them too. Another
node's report of the offender's earlier offence reaches both pools between blocks and
takes R's evidence slot in each (`mempool._replaces`). N takes D out at once and signs its
payload again as D' at nonce n, and gossips D'.

What happens now: P still holds D (behind the gap R left: not includable, and P does not
sign N's txs again), so D' is refused there `duty_pending` (one pending duty per (kind,
node); only evidence replaces pending evidence). P proposes the epoch's last block from
its pool: no attestation of N's goes in, and N's attestation of the epoch is lost, as
before p2p24. p2p24's test passes only because N builds that block from its own pool.

What should happen (docs/security.md, the p2p24 3 row: "an uptime attestation due by the
epoch's last block missed its epoch" is what the change defends): the duty N signs again
at the freed nonce can go into the next block whoever proposes it, e.g. a duty at its
sender's account nonce replaces the same node's pending one stuck behind a gap, as an
includable report replaces a stuck one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import TxError
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


def test_an_attestation_signed_again_at_once_gets_into_another_proposers_block(
    tmp_path: Path,
) -> None:
    params = replace(devnet_params(), unbonding_period=30, epoch_length=EPOCH_LENGTH)
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)
    chain = open_chain(tmp_path / "home", genesis)
    try:
        # Two pools over the same committed chain: node N's and the next proposer P's.
        n_service = NodeService(chain, Mempool())
        p_service = NodeService(chain, Mempool())
        b = Builder(chain)
        while chain.height < EPOCH_LENGTH - 2:
            b.commit()
        # The next block, height EPOCH_LENGTH - 1, is epoch 0's last.
        chain_id = b.chain_id
        offender, reporter, other = node_hot_key(1), node_hot_key(2), node_hot_key(3)
        report = n_service.report_offence(reporter, _evidence(chain_id, offender, 3))
        p_service.submit(report.raw, from_peer=True)
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
        p_service.submit(attest.raw, from_peer=True)
        assert attest.nonce == report.nonce + 1

        # Another node's report of the offender's earlier offence reaches both pools.
        rival = Tx.create(
            other, chain_id, b.chain_nonce(other), 0, _evidence(chain_id, offender, 2)
        )
        n_service.submit(rival.raw, from_peer=True)
        p_service.submit(rival.raw, from_peer=True)
        assert report.id not in n_service.mempool and report.id not in p_service.mempool

        # N signed its attestation again at once (p2p24 3) and gossips it to P.
        again = [
            t
            for t in n_service.mempool.of_sender(address_of(reporter.public_key))
            if t.kind is TxKind.UPTIME_ATTEST
        ]
        assert len(again) == 1 and again[0].nonce == report.nonce, again
        try:
            p_service.submit(again[0].raw, from_peer=True)
            refusal = "admitted"
        except TxError as exc:
            refusal = str(exc.reason)

        candidates = p_service.candidates()
        mine = [(t.kind.name, t.nonce) for t in candidates if t.sender == reporter.public_key]
        print(
            f"epoch={epoch} attest signed again at nonce {again[0].nonce}: at P {refusal}; "
            f"P's candidates of N's key={mine}"
        )
        block = b.commit(candidates)
        assert block.height == EPOCH_LENGTH - 1
        n_service.on_committed(block, ())
        p_service.on_committed(block, ())
        recorded = get_node_by_key(chain.state, reporter.public_key)
        assert recorded is not None
        assert recorded.last_attest_epoch == epoch + 1, (
            f"node N's uptime attestation of epoch {epoch}, signed again at once at the freed "
            f"nonce, was refused by the proposer's pool ({refusal}), which still held the "
            "copy behind the gap: the epoch's last block could not hold it"
        )
    finally:
        chain.close()
