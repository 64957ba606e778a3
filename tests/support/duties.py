"""One scene for the tests of a node's own duties behind its own evidence report: a chain
a few blocks before an epoch's end, the node's report pending at its hot key's nonce n,
its uptime attestation at n + 1, and another node's report of the same offender's earlier
offence, which takes the evidence slot of any pool it reaches (`mempool._replaces`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.records import Node
from fluxchain.core.tx import Evidence, Tx, TxKind, UptimeAttest, UptimeReport
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.node.duties import attest_due
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import VALIDATORS, Builder, node_hot_key, open_chain

# Long enough that an attestation can still be included after a gap (with 5 the epoch
# ended first, gap or not).
EPOCH_LENGTH = 9
OFFENDER, REPORTER, OTHER = node_hot_key(1), node_hot_key(2), node_hot_key(3)


def open_duty_chain(path: Path) -> Chain:
    """A devnet chain with `EPOCH_LENGTH`-block epochs, at its genesis."""
    params = replace(devnet_params(), unbonding_period=30, epoch_length=EPOCH_LENGTH)
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)
    return open_chain(path, genesis)


def offence(chain_id: str, offender: SigningKey, height: int) -> Evidence:
    """`offender`'s two prevotes for different blocks at (`height`, round 0)."""
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return Evidence(*evidence_pair(a, c))


def attest_next(service: NodeService, chain: Chain, reporter: SigningKey) -> tuple[Tx, int]:
    """`reporter`'s uptime attestation of the epoch it is due (every target up), signed
    at its next nonce in `service`'s pool and submitted there; with that epoch."""
    due = attest_due(chain.state, chain.params, reporter.public_key)
    assert due is not None
    node, epoch, targets = due
    verdicts = tuple(UptimeReport(t, True, 10) for t in sorted(targets))
    attest = Tx.create(
        reporter,
        chain.params.chain_id,
        service.next_nonce(reporter.public_key),
        0,
        UptimeAttest(node.node_id, epoch, verdicts),
    )
    service.submit(attest.raw)
    return attest, epoch


def rival_report(builder: Builder) -> Tx:
    """`OTHER`'s report of `OFFENDER`'s earlier offence (height 2), at its chain nonce."""
    chain_id = builder.chain_id
    return Tx.create(OTHER, chain_id, builder.chain_nonce(OTHER), 0, offence(chain_id, OFFENDER, 2))


@dataclass
class NextProposer:
    """Another node P whose pool N's gossip reaches at once; P's refusals, by tx id, in
    the order they came (a duty refused twice shows the race its test is about)."""

    service: NodeService
    refusals: dict[bytes, list[str]] = field(default_factory=dict)

    def receive(self, tx: Tx) -> None:
        try:
            self.service.submit(tx.raw, from_peer=True)
        except TxError as exc:
            self.refusals.setdefault(tx.id, []).append(str(exc.reason))


def next_proposer_and_node(chain: Chain) -> tuple[NextProposer, NodeService, Builder]:
    """The next proposer P and node N, whose gossip reaches P at once, each with its own
    pool over `chain`; and the Builder of `chain`'s blocks."""
    p = NextProposer(NodeService(chain, Mempool()))
    return p, NodeService(chain, Mempool(), gossip=p.receive), Builder(chain)


def report_then_attest(service: NodeService, b: Builder, height: int) -> tuple[Tx, Tx, int]:
    """Empty blocks up to `height`; then N (`service`) reports `OFFENDER`'s offence at
    height 3 at its hot key's nonce n (pooled, and kept in its own reports) and sends its
    uptime attestation at n + 1: the report, the attestation and its epoch."""
    while b.chain.height < height:
        b.commit()
    report = service.report_offence(REPORTER, offence(b.chain_id, OFFENDER, 3))
    kept = service.own_reports.get(OFFENDER.public_key)  # offered again until recorded
    assert kept is not None and kept.tx == report and report.id in service.mempool
    attest, epoch = attest_next(service, b.chain, REPORTER)
    assert attest.nonce == report.nonce + 1
    return report, attest, epoch


def rival_reaches_n(
    n_service: NodeService, b: Builder, p: NextProposer, report: Tx, kinds: tuple[TxKind, ...]
) -> tuple[Tx, list[Tx]]:
    """The rival report reaches N only: N's duties of `kinds` behind its report are signed
    again from the report's nonce on, in that order, and P refuses each `duty_pending` (it
    still holds the first copies). The rival report and N's duties signed again."""
    rival = rival_report(b)
    n_service.submit(rival.raw, from_peer=True)
    again = sorted(
        (t for t in n_service.mempool.of_sender(report.sender_address) if t.kind in kinds),
        key=lambda t: t.nonce,
    )
    assert [(t.kind, t.nonce) for t in again] == [
        (kind, report.nonce + i) for i, kind in enumerate(kinds)
    ]
    for tx in again:
        assert p.refusals.get(tx.id) == ["duty_pending"], (tx.kind.name, p.refusals)
    return rival, again


def p_proposes(b: Builder, p: NextProposer, *others: NodeService) -> tuple[Block, Node]:
    """P builds the next block from its pool; P, then `others`, see it committed. The block
    and N's node record after it."""
    block = b.commit(p.service.candidates())
    p.service.on_committed(block, ())
    for service in others:
        service.on_committed(block, ())
    recorded = get_node_by_key(b.chain.state, REPORTER.public_key)
    assert recorded is not None
    return block, recorded
