"""Red team red23c: an equivocator shields itself with its own report, then spends it.

The mempool keeps one pending EVIDENCE per offender (`Mempool._add_duty`: one duty per
(kind, node)); a second report of an offence of the same height is refused
`duty_pending`, and the driver then gives up on it (`Driver._report` logs "evidence not
submitted"; the engine reports each offender once per height, and votes of a past height
are never counted again). A validator V that equivocates at the height being decided
first gossips its own report of that equivocation, signed by an account S it controls at
S's next nonce n: every honest node admits it (it is real evidence), so every honest
node's own report is refused. Evidence of the height being decided can only go into the
block after it. V picks a height whose block it proposes (the rotation is public:
`proposer(set, height, round)`; the block after works as well), and its block carries a
paid tx of S at nonce n: a valid block. Every mempool then drops the parked report (its nonce is
spent), no honest report is left anywhere, and V is never slashed nor jailed. V need
not propose at all: a paid tx of S at nonce n outbids the parked report in every mempool
(replace-by-fee frees a duty's slot), with the same end (second test). A control run
without the parked report jails V in both scenarios.

The test fails today: the honest node's report is refused, and after the shield is
spent and three more honest blocks, V is still a validator in good standing. Where the
fix belongs: the node must not forget a report refused because another report of the
same offender is pending (keep it as the slot's standby in the mempool, or resubmit the
node's own reports after each commit until the offence is recorded or too old).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from consensus.events import ReportEvidence
from consensus.evidence import DuplicateVoteEvidence
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.records import NodeStatus
from fluxchain.core.tx import Evidence, Transfer, Tx, TxKind
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import (
    VALIDATORS,
    Builder,
    NoGossip,
    funded_key,
    node_hot_key,
    open_chain,
)


def park_shield_and_refuse_honest_report(
    b: Builder,
    service: NodeService,
    chain: Chain,
    evidence: DuplicateVoteEvidence,
    reporter: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> tuple[SigningKey, int, Tx]:
    """The offender's own report of `evidence`, from an account S it controls at S's next
    nonce n, pooled; then an honest validator's engine reports the same (its driver's own
    path): refused `duty_pending`. Return S, n and the pooled shield."""
    chain_id = chain.params.chain_id
    shield_sender = funded_key()
    n = b.chain_nonce(shield_sender)
    shield = Tx.create(shield_sender, chain_id, n, 0, Evidence(evidence.vote_a, evidence.vote_b))
    service.submit(shield.raw)
    honest = Driver(chain, service, reporter, None, NoGossip())

    async def report() -> None:
        honest._report(ReportEvidence(evidence))

    with caplog.at_level(logging.INFO, logger="fluxchain.consensus"):
        asyncio.run(report())
    assert "evidence not submitted: duty_pending" in caplog.text
    return shield_sender, n, shield


def test_an_equivocator_cannot_spend_its_own_report_to_go_unpunished(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain, Mempool())
    try:
        b = Builder(chain)
        b.commit()
        b.commit()
        chain_id = chain.params.chain_id
        deciding = chain.height + 1
        # V equivocates at a height whose block it proposes (round 0).
        next_proposer = proposer(chain.validators(), deciding, 0)
        keys = [node_hot_key(i) for i in range(VALIDATORS)]
        offender = next(k for k in keys if k.public_key == next_proposer)
        reporter = next(k for k in keys if k.public_key != next_proposer)
        a = Vote.create(offender, chain_id, VoteType.PREVOTE, deciding, 0, b"\x01" * 32)
        c = Vote.create(offender, chain_id, VoteType.PREVOTE, deciding, 0, b"\x02" * 32)
        evidence = DuplicateVoteEvidence.of(a, c)

        # 1. V's own report, from an account S it controls, at S's next nonce n; 2. an
        #    honest validator's engine holds both votes and reports them: refused.
        shield_sender, n, shield = park_shield_and_refuse_honest_report(
            b, service, chain, evidence, reporter, caplog
        )
        assert shield.id in service.mempool

        # 3. V's block of that height: S's nonce n spent by a paid transfer.
        spend = Tx.create(
            shield_sender, chain_id, n, 10_000, Transfer(address_of(b"\x02" * 33), 1_000_000)
        )
        b.nonces[shield_sender.public_key] = n + 1
        block = b.commit([spend])
        assert spend.raw in block.txs and block.header.proposer == offender.public_key
        service.on_committed(block, ())
        assert shield.id not in service.mempool  # spent: dropped everywhere

        # 4. Honest proposers build from the pool for a few blocks.
        for _ in range(3):
            block = b.commit(service.candidates())
            service.on_committed(block, ())
        pending = [tx for tx in service.candidates() if tx.kind is TxKind.EVIDENCE]
        node = get_node_by_key(chain.state, offender.public_key)
        assert node is not None and node.status is NodeStatus.JAILED, (
            f"validator {offender.public_key.hex()[:12]} equivocated at height {deciding}, "
            "an honest node saw it and reported it, and three blocks after its own parked "
            f"report was spent it is still {node.status.name if node else 'gone'} "
            f"({len(pending)} evidence txs pending): the honest report was refused "
            "duty_pending and forgotten"
        )
    finally:
        chain.close()


def test_an_equivocator_cannot_outbid_its_own_report_to_go_unpunished(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same shield without proposing anything: once the honest reports were refused,
    V replaces its parked report with a paid tx of S at the same nonce (replace-by-fee;
    "a paid tx replacing a duty frees the duty's slot", node/mempool.py), which every
    mempool takes. The slot is free again, but nobody reports any more."""
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain, Mempool())
    try:
        b = Builder(chain)
        b.commit()
        b.commit()
        chain_id = chain.params.chain_id
        deciding = chain.height + 1
        offender, reporter = node_hot_key(1), node_hot_key(2)
        a = Vote.create(offender, chain_id, VoteType.PREVOTE, deciding, 0, b"\x01" * 32)
        c = Vote.create(offender, chain_id, VoteType.PREVOTE, deciding, 0, b"\x02" * 32)
        evidence = DuplicateVoteEvidence.of(a, c)
        shield_sender, n, shield = park_shield_and_refuse_honest_report(
            b, service, chain, evidence, reporter, caplog
        )

        outbid = Tx.create(
            shield_sender, chain_id, n, 10_000, Transfer(address_of(b"\x02" * 33), 1_000_000)
        )
        service.submit(outbid.raw)
        assert shield.id not in service.mempool and outbid.id in service.mempool

        for _ in range(4):
            block = b.commit(service.candidates())
            service.on_committed(block, ())
        node = get_node_by_key(chain.state, offender.public_key)
        assert node is not None and node.status is NodeStatus.JAILED, (
            f"validator {offender.public_key.hex()[:12]} equivocated at height {deciding} "
            "and an honest node reported it; its own parked report, outbid by a paid tx "
            f"of the same sender and nonce, is gone, and after four blocks it is still "
            f"{node.status.name if node else 'gone'}: the honest report was refused "
            "duty_pending and forgotten"
        )
    finally:
        chain.close()
