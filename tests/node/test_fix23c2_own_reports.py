"""fix23c2: the edges of rev23c's fixes. The kept offences live on disk exactly as in
memory (bounded alike, a settled or pushed-out one leaves both, a damaged record is
dropped at load), and the evidence slot goes to the report a block can include now: a
report stuck behind its sender's txs takes it from none, whatever its height.

The attacks themselves are tests/node/test_rev23c_own_reports.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Evidence, Transfer, Tx, decode_tx
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.mempool import Mempool
from fluxchain.node.own_reports import OWN_REPORTS, PER_OFFENDER, OwnReports
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain


def _evidence(chain_id: str, offender: SigningKey, height: int) -> Evidence:
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return Evidence(*evidence_pair(a, c))


def test_the_kept_offences_on_disk_follow_the_ones_in_memory(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        chain_id = chain.params.chain_id
        reporter, offender = node_hot_key(2), node_hot_key(1)
        reports = OwnReports(db=chain.db)
        offences = [_evidence(chain_id, offender, h) for h in range(PER_OFFENDER + 1, 0, -1)]
        for evidence in offences:  # the latest first: each earlier one is kept
            assert reports.keep(reporter, evidence, Tx.create(reporter, chain_id, 0, 0, evidence))
        stored = list(chain.db.meta_items(OWN_REPORTS))
        assert len(stored) == len(reports) == PER_OFFENDER  # the latest went from both

        reports.settle(offences[-1])  # height 1
        chain.db.put_meta(OWN_REPORTS + b"junk", b"\x00not a tx")
        loaded = OwnReports(db=chain.db)
        loaded.load(lambda raw: decode_tx(raw, chain.params))
        heights = [r.evidence.vote_a.height for r in loaded.of(offender.public_key)]
        assert heights == list(range(2, PER_OFFENDER + 1))
        assert all(r.key is None for r in loaded.of(offender.public_key))  # no key on disk
        assert len(list(chain.db.meta_items(OWN_REPORTS))) == PER_OFFENDER - 1  # junk gone
    finally:
        chain.close()


def test_a_stuck_report_takes_the_slot_of_no_includable_one(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())
        b = Builder(chain)
        b.commit()
        b.commit()
        b.commit()
        chain_id = b.chain_id
        offender = node_hot_key(1)
        later, earlier = (_evidence(chain_id, offender, h) for h in (chain.height, 1))
        honest = Tx.create(node_hot_key(2), chain_id, b.chain_nonce(node_hot_key(2)), 0, later)
        service.submit(honest.raw)  # includable in the next block
        # The offender's report of an earlier offence, parked behind a cheap tx of its sender.
        sender = funded_key()
        n = b.chain_nonce(sender)
        sink = address_of(b"\x02" * 33)
        cheap = Tx.create(sender, chain_id, n, chain.params.min_fee, Transfer(sink, 1_000_000))
        service.submit(cheap.raw)
        stuck = Tx.create(sender, chain_id, n + 1, 0, earlier)
        with pytest.raises(TxError) as refused:
            service.submit(stuck.raw)
        assert refused.value.reason is Reason.DUTY_PENDING
        assert honest.id in service.mempool
        # Includable now, the earlier offence's report takes the slot, as before.
        first = Tx.create(node_hot_key(3), chain_id, b.chain_nonce(node_hot_key(3)), 0, earlier)
        service.submit(first.raw)
        assert first.id in service.mempool and honest.id not in service.mempool
    finally:
        chain.close()
