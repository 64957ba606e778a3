"""A relayed proposal goes to a few peers, not to every one (issue 22).

On the WAN testnet's full mesh every node relayed every proposal to its 17 other peers,
which had it from the proposer already: each block crossed every link, up to the block
budget each time. The proposer still sends it to every peer; a relay goes to
`Limits.relay_fanout` of them, and consensus gossip repairs a miss."""

from __future__ import annotations

import logging

import pytest

from p2p.errors import HandshakeError, PeerReason
from p2p.messages import Kind
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async

NODES = 8
FANOUT = 2


def test_a_relayed_proposal_crosses_a_full_mesh_a_few_times_not_once_per_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="fluxchain.p2p")

    async def scenario() -> None:
        async with cluster() as nodes:
            mesh = [
                await nodes.add(limits=fast_limits(relay_fanout={Kind.PROPOSAL: FANOUT}))
                for _ in range(NODES)
            ]
            for i, dialer in enumerate(mesh):
                for listener in mesh[i + 1 :]:
                    try:
                        await dialer.network.connect(listener.address)
                    except HandshakeError as exc:  # peer exchange linked them first
                        assert exc.reason is PeerReason.DUPLICATE_PEER
            await wait_until_async(
                lambda: all(len(n.peer_ids()) == NODES - 1 for n in mesh), what="a full mesh"
            )
            proposer, others = mesh[0], mesh[1:]
            caplog.clear()
            assert proposer.network.broadcast(Kind.PROPOSAL, b"proposal-1") == NODES - 1
            await wait_until_async(
                lambda: all(b"proposal-1" in n.host.payloads(Kind.PROPOSAL) for n in others),
                what="the proposal at every node",
            )
            # Frames of one link arrive in order: once a TX each relayer flooded after
            # the proposal is everywhere, every copy of the proposal is in.
            for relayer in others:
                relayer.network.broadcast(Kind.TX, b"marker-" + relayer.id.encode())
            await wait_until_async(
                lambda: all(
                    len(n.host.payloads(Kind.TX)) == sum(r is not n for r in others) for n in mesh
                ),
                what="every marker everywhere",
            )
            copies = sum(
                "event=gossip_duplicate" in r.getMessage() and "kind=PROPOSAL" in r.getMessage()
                for r in caplog.records
            ) + len(others)
            # The proposer's copy to each, plus at most FANOUT relayed by each receiver
            # (flooding: up to NODES - 2 each, 49 here).
            assert copies <= len(others) * (1 + FANOUT), f"{copies} copies of the proposal"
            for node in others:
                assert node.host.payloads(Kind.PROPOSAL).count(b"proposal-1") == 1

    run(scenario, timeout=30.0)


def test_a_relayed_vote_crosses_a_full_mesh_a_few_times_not_once_per_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Votes too (issue 22, wan22i): with the production fan-out, a vote its signer sent
    to every peer is relayed by each receiver to `relay_fanout[VOTE]` peers, not to all
    the others (an idle WAN testnet node spent most of its frames on those copies)."""
    caplog.set_level(logging.DEBUG, logger="fluxchain.p2p")
    fanout = 4  # the production fan-out of a relayed vote (`default_relay_fanout`)
    nodes_count = fanout + 4  # more peers than the fan-out, so that it shows

    async def scenario() -> None:
        async with cluster() as nodes:
            mesh = [await nodes.add(limits=fast_limits()) for _ in range(nodes_count)]
            for i, dialer in enumerate(mesh):
                for listener in mesh[i + 1 :]:
                    try:
                        await dialer.network.connect(listener.address)
                    except HandshakeError as exc:  # peer exchange linked them first
                        assert exc.reason is PeerReason.DUPLICATE_PEER
            await wait_until_async(
                lambda: all(len(n.peer_ids()) == nodes_count - 1 for n in mesh),
                what="a full mesh",
            )
            signer, others = mesh[0], mesh[1:]
            caplog.clear()
            assert signer.network.broadcast(Kind.VOTE, b"vote-1") == nodes_count - 1
            await wait_until_async(
                lambda: all(b"vote-1" in n.host.payloads(Kind.VOTE) for n in others),
                what="the vote at every node",
            )
            for relayer in others:
                relayer.network.broadcast(Kind.TX, b"marker-" + relayer.id.encode())
            await wait_until_async(
                lambda: all(
                    len(n.host.payloads(Kind.TX)) == sum(r is not n for r in others) for n in mesh
                ),
                what="every marker everywhere",
            )
            copies = sum(
                "event=gossip_duplicate" in r.getMessage() and "kind=VOTE" in r.getMessage()
                for r in caplog.records
            ) + len(others)
            # The signer's copy to each, plus at most `fanout` relayed by each receiver
            # (flooding: up to nodes_count - 2 each).
            assert copies <= len(others) * (1 + fanout), f"{copies} copies of the vote"
            for node in others:
                assert node.host.payloads(Kind.VOTE).count(b"vote-1") == 1

    run(scenario, timeout=30.0)
