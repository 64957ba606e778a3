"""One scene for the tests of a node's own duties behind its own evidence report: a chain
a few blocks before an epoch's end, the node's report pending at its hot key's nonce n,
its uptime attestation at n + 1, and another node's report of the same offender's earlier
offence, which takes the evidence slot of any pool it reaches (`mempool._replaces`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
from fluxchain.core.tx import Evidence, Tx, UptimeAttest, UptimeReport
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.node.duties import attest_due
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
