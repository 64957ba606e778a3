"""Review of issue 17: an equivocator occupies its own EVIDENCE duty slot with evidence
of a far-future 'offence', so the real evidence is refused `duty_pending` everywhere.

Admission judges evidence "as if for the block after the votes' height"
(`admission.check_fee_free`: height = max(next, vote.height + 1)) and `validators_at`
answers the latest set for any future height, so evidence dated 10^9 passes admission and
every re-check, yet no block can hold it (`bad_evidence`: not in the past). The mempool
keeps one pending evidence per offender, so the honest report of the real equivocation
is refused and never lands: no slash, no jail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.records import NodeStatus
from fluxchain.core.tx import Evidence, Tx
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.chainkit import Builder, funded_key, node_hot_key, open_chain


def _evidence(b: Builder, reporter: SigningKey, offender: SigningKey, height: int) -> Tx:
    chain_id = b.chain.params.chain_id
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return b.tx(reporter, Evidence(*evidence_pair(a, c)), fee=0)


def test_far_future_self_evidence_shields_an_equivocator_from_slashing(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain, Mempool())
    try:
        b = Builder(chain)
        b.commit()
        b.commit()
        offender = node_hot_key(1)
        # The offender (any key of its own will do) pre-empts its slot with a fake
        # equivocation dated far in the future, which it signed itself.
        shield = _evidence(b, SigningKey(b"\x77" * 32), offender, 10**9)
        service.submit(shield.raw)
        # ... then really equivocates at height 2; an honest node reports it.
        real = _evidence(b, funded_key(), offender, 2)
        try:
            service.submit(real.raw)
        except TxError as exc:
            pytest.fail(f"the real evidence is refused: {exc.reason}")  # duty_pending on main
        for _ in range(3):
            block = b.commit(list(service.mempool.candidates(service.account_of)))
            service.on_committed(block, ())
        node = get_node_by_key(chain.state, offender.public_key)
        assert node is not None and node.status is NodeStatus.JAILED
    finally:
        chain.close()


def test_far_future_evidence_is_refused_at_admission(tmp_path: Path) -> None:
    """The shield itself: evidence that no block can hold passes admission and stays."""
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain, Mempool())
    try:
        b = Builder(chain)
        b.commit()
        shield = _evidence(b, SigningKey(b"\x77" * 32), node_hot_key(1), 10**9)
        with pytest.raises(TxError) as err:
            service.submit(shield.raw)
        assert err.value.reason is Reason.BAD_EVIDENCE
    finally:
        chain.close()
