"""Review of issue 17: an equivocator occupies its own EVIDENCE duty slot with evidence
of a far-future 'offence', so the real evidence is refused `duty_pending` everywhere.

Admission judges evidence "as if for the block after the votes' height"
(`admission.check_fee_free`: height = max(next, vote.height + 1)) and `validators_at`
answers the latest set for any future height, so evidence dated 10^9 passes admission and
every re-check, yet no block can hold it (`bad_evidence`: not in the past). The mempool
keeps one pending evidence per offender, so the honest report of the real equivocation
is refused and never lands: no slash, no jail.

Fixed: admission refuses evidence beyond the height being decided, `validators_at`
refuses heights the state does not know yet, and evidence of an earlier offence takes
the offender's slot from pending evidence of a later one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from fluxchain.core import history
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.records import NodeStatus
from fluxchain.core.tx import Evidence, Tx
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain


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
        with contextlib.suppress(TxError):  # refused now: bad_evidence (asserted below)
            service.submit(shield.raw)
        # ... then really equivocates at height 2; an honest node reports it.
        real = _evidence(b, funded_key(), offender, 2)
        try:
            service.submit(real.raw)
        except TxError as exc:
            pytest.fail(f"the real evidence is refused: {exc.reason}")  # duty_pending on main
        for _ in range(3):
            block = b.commit(service.candidates())
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
        # Execution's own check cannot be fooled either: no set is known for that height.
        assert history.validators_at(chain.state, 10**9) is None
        assert history.validators_at(chain.state, chain.height + 1) is not None
    finally:
        chain.close()


def test_evidence_parked_for_the_height_being_decided_yields_to_an_earlier_offence(
    tmp_path: Path,
) -> None:
    """The offender's own report of an offence at the height being decided (only the block
    after it can hold that) does not keep out the report of its earlier equivocation."""
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain, Mempool())
    try:
        b = Builder(chain)
        b.commit()
        b.commit()
        b.commit()
        offender = node_hot_key(1)
        deciding = chain.height + 1
        parked = _evidence(b, SigningKey(b"\x77" * 32), offender, deciding)
        service.submit(parked.raw)  # a real offence: admitted
        real = _evidence(b, funded_key(), offender, 2)
        service.submit(real.raw)  # earlier: takes the slot
        assert real.id in service.mempool and parked.id not in service.mempool
        # The parked one cannot take it back: a later offence does not replace.
        with pytest.raises(TxError) as err:
            service.submit(parked.raw)
        assert err.value.reason is Reason.DUTY_PENDING
        block = b.commit(service.candidates())
        service.on_committed(block, ())
        assert real.raw in block.txs
        node = get_node_by_key(chain.state, offender.public_key)
        assert node is not None and node.status is NodeStatus.JAILED
    finally:
        chain.close()
