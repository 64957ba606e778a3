"""Review rev23c: an equivocator still escapes the re-offered report (fix23c,
`fluxchain.node.own_reports`) without spending or outbidding its parked report.

1. A restart of the reporting node forgets the offence (`OwnReports` lives in memory,
   the mempool too): the offender spends its shield after the restart, and the node
   whose engine saw the equivocation never reports it again while it is young enough.
2. The shield never leaves: the offender parks its report behind a paid tx of its own
   at the lowest fee (a duty takes the sender's next free nonce, after its pooled
   run, so the report waits for that tx). Blocks full of better-paying txs never reach
   the cheap tx, the pool never evicts it (it is not its sender's tail: the report is,
   and duties are never evicted for paid txs), and the honest report is refused
   `duty_pending` at every re-offer until the evidence is too old.
3. The re-offer costs the node its uptime attestation: when the shield's nonce is spent,
   every reporting node re-offers its report after that block, at its hot key's next
   nonce, and its duties of that block queue behind it. The next block records one
   node's report; every other node's is evicted `duplicate_evidence`, and the duty
   behind it is evicted as following a gap (`rejected`), never sent again for the epoch
   (`Duties` marks it sent). Before fix23c those nodes had no report pending then.
4. One offence kept per offender, the earliest, "its slashing tombstones the key, which
   covers every later vote" (own_reports.py): the chain's rule covers only votes BELOW
   the height of the block that records the slashing (`check_evidence`). An offender
   that equivocates again at that very height is reported once, refused `duty_pending`
   (its earlier offence's report holds the slot), not kept, and never reported again,
   though a report of it stays valid and would slash it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.nodes import get_node_by_key, offence_id
from fluxchain.core.records import EVIDENCE, NodeStatus
from fluxchain.core.tx import Evidence, Transfer, Tx, TxKind
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.node.mempool import Mempool
from fluxchain.node.own_reports import SETTLED
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key, open_chain
from tests.support.duties import attest_next, open_duty_chain

_SINK = address_of(b"\x02" * 33)
_AMOUNT = 1_000_000  # above the deposit a transfer creating an account moves


def _evidence(chain_id: str, offender: SigningKey, height: int) -> Evidence:
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return Evidence(*evidence_pair(a, c))


def _status(service: NodeService, offender: SigningKey) -> NodeStatus | None:
    node = get_node_by_key(service.chain.state, offender.public_key)
    return None if node is None else node.status


def test_an_offence_seen_before_a_restart_is_still_reported_after_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chain = open_chain(home)
    try:
        service = NodeService(chain, Mempool())
        b = Builder(chain)
        b.commit()
        b.commit()
        offender, reporter = node_hot_key(1), node_hot_key(2)
        evidence = _evidence(b.chain_id, offender, chain.height)
        shield_sender = funded_key()
        shield = Tx.create(shield_sender, b.chain_id, b.chain_nonce(shield_sender), 0, evidence)
        service.submit(shield.raw)
        with pytest.raises(TxError) as refused:
            service.report_offence(reporter, evidence)
        assert refused.value.reason is Reason.DUTY_PENDING
        assert service.own_reports.get(offender.public_key) is not None
        last_commit, time_ms = b.last_commit, b.time_ms
    finally:
        chain.close()

    # The reporting node restarts (an upgrade, a crash); the offender then spends its
    # shield's nonce in a block (it was still parked in the other pools meanwhile).
    chain = open_chain(home)
    try:
        service = NodeService(chain, Mempool())
        b = Builder(chain, last_commit=last_commit, time_ms=time_ms)
        spend = Tx.create(shield_sender, b.chain_id, shield.nonce, 10_000, Transfer(_SINK, _AMOUNT))
        block = b.commit([spend])
        assert spend.raw in block.txs
        service.on_committed(block, ())
        for _ in range(3):  # honest proposers build from the pool
            service.on_committed(b.commit(service.candidates()), ())
        assert chain.height - evidence.vote_a.height < chain.params.evidence_max_age
        pending = [tx for tx in service.candidates() if tx.kind is TxKind.EVIDENCE]
        status = _status(service, offender)
        assert status is NodeStatus.JAILED, (
            f"the node saw validator {offender.public_key.hex()[:12]} equivocate at height "
            f"{evidence.vote_a.height} and kept the offence, restarted, and four blocks "
            f"later (evidence still young) the offender is {status and status.name} with "
            f"{len(pending)} evidence txs pending: the restart forgot the offence "
            "(own_reports in memory)"
        )
    finally:
        chain.close()


def test_a_shield_parked_behind_a_cheap_tx_of_its_sender_does_not_outlast_the_evidence(
    tmp_path: Path,
) -> None:
    # Blocks of 4 txs stand in for a busy chain (max_block_txs 10,000 on mainnet shapes):
    # what matters is only that better-paying txs fill each block.
    params = replace(devnet_params(), unbonding_period=30, max_block_txs=4)
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)
    chain = open_chain(tmp_path / "home", genesis)
    try:
        service = NodeService(chain, Mempool())
        b = Builder(chain)
        b.commit()
        b.commit()
        chain_id = b.chain_id
        offender, reporter = node_hot_key(1), node_hot_key(2)
        evidence = _evidence(chain_id, offender, chain.height)
        shield_sender = funded_key()
        n = b.chain_nonce(shield_sender)
        cheap = Tx.create(shield_sender, chain_id, n, params.min_fee, Transfer(_SINK, _AMOUNT))
        service.submit(cheap.raw)
        shield = Tx.create(shield_sender, chain_id, n + 1, 0, evidence)
        service.submit(shield.raw)  # the sender's next free nonce: a valid duty
        # The node's report, includable now, takes the slot from the stuck shield (fix23c2;
        # before it, refused `duty_pending`): the loop below checks what a user sees.
        service.report_offence(reporter, evidence)

        # Funded accounts the offender does not control (validator 0's owner, dev accounts).
        fillers = [funded_key(i) for i in (0, VALIDATORS + 1, VALIDATORS + 2, VALIDATORS + 3)]
        blocks = 0
        # Until the block after the last one that may still record the offence.
        while chain.height + 1 - evidence.vote_a.height <= params.evidence_max_age:
            for key in fillers:  # the busy chain: txs paying 10x the cheap one's fee
                nonce = service.next_nonce(key.public_key)
                service.submit(
                    Tx.create(
                        key, chain_id, nonce, 10 * params.min_fee, Transfer(_SINK, _AMOUNT)
                    ).raw
                )
            block = b.commit(service.candidates())
            assert len(block.txs) == params.max_block_txs and not b.rejected  # full
            service.on_committed(block, ())
            blocks += 1
            if _status(service, offender) is NodeStatus.JAILED:
                break
        status = _status(service, offender)
        assert status is NodeStatus.JAILED, (
            f"validator {offender.public_key.hex()[:12]} equivocated at height "
            f"{evidence.vote_a.height}; this node saw it and re-offered its report for "
            f"{blocks} blocks, refused duty_pending behind the offender's own report parked "
            f"after a min-fee tx of its sender (pending: {cheap.id in service.mempool}, "
            f"{shield.id in service.mempool}); the evidence is now too old and the "
            f"offender is {status and status.name}"
        )
    finally:
        chain.close()


def test_a_re_offered_report_that_another_nodes_report_beats_costs_no_attestation(
    tmp_path: Path,
) -> None:
    # An epoch long enough that the blocks below can still record its attestation (the
    # devnet's 5-block epoch ends at the first of them).
    chain = open_duty_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())  # node N's
        b = Builder(chain)
        b.commit()
        b.commit()
        chain_id = b.chain_id
        offender, reporter, other = node_hot_key(1), node_hot_key(2), node_hot_key(3)
        evidence = _evidence(chain_id, offender, chain.height)
        shield_sender = funded_key()
        shield = Tx.create(shield_sender, chain_id, b.chain_nonce(shield_sender), 0, evidence)
        service.submit(shield.raw)
        with pytest.raises(TxError):
            service.report_offence(reporter, evidence)  # kept, refused duty_pending

        # The offender spends its shield's nonce; N re-offers its report after the block.
        spend = Tx.create(shield_sender, chain_id, shield.nonce, 10_000, Transfer(_SINK, _AMOUNT))
        service.on_committed(b.commit([spend]), ())
        kept = service.own_reports.get(offender.public_key)
        assert kept is not None and kept.tx is not None and kept.tx.id in service.mempool

        # N's duties of that block (`Duties._attest`, at the hot key's next nonce).
        attest, epoch = attest_next(service, chain, reporter)

        # The next proposer's pool held another reporter's re-offered report (its own).
        rival = Tx.create(other, chain_id, b.chain_nonce(other), 0, evidence)
        block = b.commit([rival])
        assert rival.raw in block.txs
        service.on_committed(block, ())
        for _ in range(3):  # honest proposers build from N's pool
            service.on_committed(b.commit(service.candidates()), ())

        recorded = get_node_by_key(chain.state, reporter.public_key)
        assert recorded is not None
        assert recorded.last_attest_epoch == epoch + 1 or attest.id in service.mempool, (
            f"node N's uptime attestation of epoch {epoch} was queued behind its re-offered "
            "evidence report; another node's report of the same offence was recorded, N's "
            "was evicted, and the attestation with it: "
            f"{service.tx_status(attest.id)} (Duties never sends it again this epoch)"
        )
    finally:
        chain.close()


def test_an_offence_at_the_height_that_records_an_earlier_one_is_reported_until_recorded(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())
        b = Builder(chain)
        b.commit()
        b.commit()
        chain_id = b.chain_id
        offender, reporter = node_hot_key(1), node_hot_key(2)
        earlier = _evidence(chain_id, offender, chain.height)
        service.report_offence(reporter, earlier)  # pooled: the next block records it
        # The offender equivocates again on the block being decided, the one that
        # records its earlier offence (still a validator until the epoch ends).
        deciding = chain.height + 1
        again = _evidence(chain_id, offender, deciding)
        with pytest.raises(TxError) as refused:
            service.report_offence(reporter, again)
        assert refused.value.reason is Reason.DUTY_PENDING

        block = b.commit(service.candidates())
        assert block.header.height == deciding
        service.on_committed(block, ())
        assert chain.state.get(EVIDENCE + offence_id(earlier)) is not None  # slashed once
        for _ in range(3):  # honest proposers build from the pool
            service.on_committed(b.commit(service.candidates()), ())

        # Either the chain records the second offence, or no report of it can apply any
        # more (a tombstone covering the recording block's own height would do): the node
        # must not forget an offence the chain still punishes.
        recorded = chain.state.get(EVIDENCE + offence_id(again)) is not None
        still = ""
        if not recorded:  # a report of it, to this node's pool (a peer's)
            probe = Tx.create(funded_key(), chain_id, b.chain_nonce(funded_key()), 0, again)
            try:
                service.submit(probe.raw)
                still = "admitted"
            except TxError as exc:
                still = "" if exc.reason in SETTLED else f"refused {exc.reason}"
        assert recorded or not still, (
            f"validator {offender.public_key.hex()[:12]} equivocated at {earlier.vote_a.height}"
            f" and again at {deciding}, the height whose block recorded the first offence; "
            f"this node saw both, and three blocks later the second is not recorded and "
            f"not kept ({len(service.own_reports)} kept offences), yet a report of it is "
            f"{still}: punishable, and forgotten"
        )
    finally:
        chain.close()
