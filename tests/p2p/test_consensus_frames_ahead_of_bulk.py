"""A proposal never loses its link's room to a bulk TXS frame (fix16b 3).

A proposer flushes the txs it admitted in the last TXS_GOSSIP_WAIT_S (a TXS frame of up
to ~1 MiB) just before its COMPACT_PROPOSAL, on every link. Both took from the same byte
budget and send queue: on a link near its limit the TXS frame took the last room and the
proposal was the frame dropped, sent again by consensus gossip only a resend time
(1.5 s) later. Bulk tx frames now use only `Limits.bulk_share` of the budget and of the
queue: the rest is kept for consensus frames."""

from __future__ import annotations

from p2p.messages import Kind, MiB
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async

TXS_BYTES = MiB  # the most a TXS flush carries (MAX_TXS_FRAME_BYTES)
COMPACT_BYTES = 64 * 1024  # the compact proposal of a block of ~2,000 txs


def test_a_compact_proposal_sent_right_after_a_txs_flush_on_a_nearly_spent_link_arrives() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            # The proposer's byte budget toward its peer holds the TXS frame and a little
            # more, not the proposal as well, and does not refill within the test.
            tight = fast_limits(bytes_per_second=1.0, bytes_burst=TXS_BYTES + COMPACT_BYTES // 2)
            proposer = await nodes.add(limits=tight)
            validator = await nodes.add()
            await proposer.network.connect(validator.address)
            await wait_until_async(lambda: validator.id in proposer.peer_ids(), what="the link up")
            compact = b"c" * COMPACT_BYTES
            proposer.network.broadcast(Kind.TXS, b"t" * TXS_BYTES)
            assert proposer.network.broadcast(Kind.COMPACT_PROPOSAL, compact) == 1, (
                "the compact proposal was dropped: the TXS flush took the link's room"
            )
            await wait_until_async(
                lambda: compact in validator.host.payloads(Kind.COMPACT_PROPOSAL),
                what="the compact proposal at the validator",
            )

    run(scenario)
