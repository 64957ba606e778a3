"""fix23c: the offences this node's engine saw are reported again until the chain records
them (`fluxchain.node.own_reports`), bounded, and forgotten once settled.

The attack (an offender parks its own report, then spends or outbids it) is
tests/node/test_red23c_evidence_shield.py; these check the rule's edges.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.records import NodeStatus
from fluxchain.core.tx import Evidence, Transfer, Tx, TxKind
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.mempool import Mempool
from fluxchain.node.own_reports import OFFENDERS_KEPT, PER_OFFENDER, OwnReports
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain


def _evidence(chain_id: str, offender: SigningKey, height: int) -> Evidence:
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return Evidence(*evidence_pair(a, c))


def _started(tmp_path: Path) -> tuple[Chain, NodeService, Builder]:
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain, Mempool())
    b = Builder(chain)
    b.commit()
    b.commit()
    return chain, service, b


def _park(service: NodeService, b: Builder, evidence: Evidence) -> Tx:
    """The offender's own report of `evidence`, from an account it controls."""
    shield = Tx.create(funded_key(), b.chain_id, b.chain_nonce(funded_key()), 0, evidence)
    service.submit(shield.raw)
    return shield


def test_a_reported_offence_is_forgotten_once_the_chain_records_it(tmp_path: Path) -> None:
    chain, service, b = _started(tmp_path)
    try:
        offender, reporter = node_hot_key(1), node_hot_key(2)
        evidence = _evidence(b.chain_id, offender, chain.height)
        report = service.report_offence(reporter, evidence)
        assert report.id in service.mempool and len(service.own_reports) == 1
        block = b.commit(list(service.candidates()))
        assert report.raw in block.txs
        service.on_committed(block, ())
        node = get_node_by_key(chain.state, offender.public_key)
        assert node is not None and node.status is NodeStatus.JAILED
        assert len(service.own_reports) == 0, "a recorded offence is still reported"
        assert not [tx for tx in service.candidates() if tx.kind is TxKind.EVIDENCE]
    finally:
        chain.close()


def test_a_reported_offence_is_forgotten_once_too_old(tmp_path: Path) -> None:
    """Blocks that never include a report (the offender's friends propose them): the
    node keeps offering its report while the evidence may still be recorded, then stops."""
    chain, service, b = _started(tmp_path)
    try:
        offender, reporter = node_hot_key(1), node_hot_key(2)
        evidence = _evidence(b.chain_id, offender, chain.height)
        shield = _park(service, b, evidence)
        with pytest.raises(TxError) as refused:
            service.report_offence(reporter, evidence)
        assert refused.value.reason is Reason.DUTY_PENDING
        max_age = chain.params.evidence_max_age
        # The block after the one committed here may still record it (`check_evidence`).
        while chain.height + 2 - evidence.vote_a.height <= max_age:
            service.on_committed(b.commit(), ())
            kept = service.own_reports.get(offender.public_key)
            assert kept is not None, f"forgotten at height {chain.height}, still young enough"
            assert shield.id in service.mempool
        service.on_committed(b.commit(), ())
        assert shield.id not in service.mempool  # too old for the next block: evicted
        assert len(service.own_reports) == 0, "an offence too old to record is still kept"
    finally:
        chain.close()


def test_an_outbid_shield_gives_its_slot_to_the_nodes_report_at_once(tmp_path: Path) -> None:
    """No block in between: the paid tx that outbids the offender's parked report lets
    this node's report in before any proposer builds from the pool."""
    chain, service, b = _started(tmp_path)
    try:
        offender, reporter = node_hot_key(1), node_hot_key(2)
        evidence = _evidence(b.chain_id, offender, chain.height)
        shield = _park(service, b, evidence)
        with pytest.raises(TxError):
            service.report_offence(reporter, evidence)
        outbid = Tx.create(
            funded_key(), b.chain_id, shield.nonce, 10_000, Transfer(address_of(b"\x02" * 33), 1)
        )
        service.submit(outbid.raw)
        pending = [tx for tx in service.candidates() if tx.kind is TxKind.EVIDENCE]
        assert [tx.sender_address for tx in pending] == [address_of(reporter.public_key)]
    finally:
        chain.close()


def test_only_the_engines_reports_are_kept_a_few_per_offender_and_bounded(tmp_path: Path) -> None:
    chain, service, b = _started(tmp_path)
    try:
        # A peer's (or client's) evidence is pooled, never kept for reporting again.
        peer_report = Tx.create(
            funded_key(), b.chain_id, 0, 0, _evidence(b.chain_id, node_hot_key(1), chain.height)
        )
        service.submit(peer_report.raw, from_peer=True, peer="p")
        assert peer_report.id in service.mempool and len(service.own_reports) == 0
    finally:
        chain.close()

    reporter = node_hot_key(2)
    reports = OwnReports()
    offenders = [SigningKey(i.to_bytes(32, "big")) for i in range(1, OFFENDERS_KEPT + 2)]
    for offender in offenders:
        evidence = _evidence("c", offender, 5)
        reports.keep(reporter, evidence, Tx.create(reporter, "c", 0, 0, evidence))
    assert len(reports) == OFFENDERS_KEPT
    assert reports.get(offenders[-1].public_key) is None  # full: reported once, not kept
    # A few offences per offender, its earliest: a slashing covers only the votes below the
    # height of the block that records it, so a later offence may still need its report.
    first = offenders[0]
    heights = [9, 3, 7]  # beside its offence at 5 above
    for height in heights:
        evidence = _evidence("c", first, height)
        assert reports.keep(reporter, evidence, Tx.create(reporter, "c", 0, 0, evidence))
    assert [r.evidence.vote_a.height for r in reports.of(first.public_key)] == [3, 5, 7, 9]
    latest = _evidence("c", first, 10)
    assert not reports.keep(reporter, latest, Tx.create(reporter, "c", 0, 0, latest))
    earliest = _evidence("c", first, 1)
    assert reports.keep(reporter, earliest, Tx.create(reporter, "c", 0, 0, earliest))
    assert [r.evidence.vote_a.height for r in reports.of(first.public_key)] == [1, 3, 5, 7]
    assert len(reports.of(first.public_key)) == PER_OFFENDER
    kept = reports.get(first.public_key)
    assert kept is not None and kept.evidence == earliest
    assert len(reports.offenders()) == OFFENDERS_KEPT
    reports.settle(latest)  # not kept: nothing goes
    assert len(reports.of(first.public_key)) == PER_OFFENDER
    for report in reports.of(first.public_key):
        reports.settle(report.evidence)
    assert reports.get(first.public_key) is None
