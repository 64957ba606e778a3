"""Tx bodies fetched by id still take the room kept for consensus frames (review rev16b 2).

Attack (none needed: a busy honest network, or a peer announcing its own txs so that we
ask for them, rev13a): fix16b keeps a quarter of a link's byte budget for consensus
frames by holding back only TX, TXS, TX_IDS and GET_TXS. But most tx bytes of relay by
id travel as TX_BODIES answers, which the sender's outgoing mirror does not count at all
and which the receiver spends from the very byte budget its peer's proposals and votes
spend (`TxFetcher._charge`); the receiver asks while its budget holds a whole answer,
so one answer can take all of it. The sender, seeing its mirror full, sends its
COMPACT_PROPOSAL; the receiver finds its budget spent, drops the proposal and scores
the honest sender as rate-limited. What a user sees: the proposal arrives a resend time
(1.5 s) later, and honest peers collect RATE_LIMITED points. Fix direction: ask for tx
bodies only while the budget keeps the consensus reserve after a whole answer (the
`bulk_share` applied to `_send_requests`' room), and count answers sent in the
sender's mirror."""

from __future__ import annotations

import pytest

from p2p.messages import Kind
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import _limits, fetched_by_id
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

BURST = 256 * 1024  # the byte budget each side applies to the other
TXS = [bytes([i]) * (24 * 1024) for i in range(9)]  # 216 KiB: one answer, 84 % of it
COMPACT = b"c" * (BURST // 5)  # within the quarter fix16b says is kept for consensus


def test_rev16b_a_compact_proposal_after_a_tx_bodies_answer_is_not_dropped() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            limits = _limits(bytes_per_second=16 * 1024.0, bytes_burst=float(BURST))
            # The txs were relayed to the proposer by another peer; the validator fetches
            # them by id.
            proposer, validator = await fetched_by_id(nodes, TXS, limits)
            sent = proposer.network.broadcast(Kind.COMPACT_PROPOSAL, COMPACT)
            assert sent == 1, "the proposer's own budget refused the proposal"
            try:
                await wait_until_async(
                    lambda: COMPACT in validator.host.payloads(Kind.COMPACT_PROPOSAL),
                    what="the compact proposal at the validator",
                    timeout=2.0,
                )
            except (TimeoutError, AssertionError) as exc:
                score = validator.peer(proposer.id)
                raise AssertionError(
                    "the compact proposal the proposer sent was dropped by the validator: "
                    "its byte budget for the proposer was spent by the TX_BODIES answer "
                    f"(proposer's score there: {score.score if score else None})"
                ) from exc

    run(scenario)
