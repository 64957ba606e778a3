"""A relayed proposal or vote goes to a few peers, not to every one (issue 22).

On the WAN testnet's full mesh every node relayed every proposal to its 17 other peers,
which had it from the proposer already: each block crossed every link, up to the block
budget each time. The proposer still sends it to every peer; a relay goes to
`Limits.relay_fanout` of them, and consensus gossip repairs a miss."""

from __future__ import annotations

import logging

import pytest

from p2p.limits import Limits, default_relay_fanout
from p2p.messages import Kind
from tests.p2p.harness import Cluster, cluster, fast_limits, link, run
from tests.support.wait import wait_until_async

NODES = 8
FANOUT = 2


async def _copies_across_a_full_mesh(
    nodes: Cluster,
    count: int,
    limits: Limits,
    kind: Kind,
    payload: bytes,
    caplog: pytest.LogCaptureFixture,
) -> int:
    """How many copies of `payload` the other nodes of a full mesh of `count` received
    when the first broadcast it (each of them delivered it to its host exactly once)."""
    mesh = [await nodes.add(limits=limits) for _ in range(count)]
    for i, dialer in enumerate(mesh):
        for listener in mesh[i + 1 :]:
            await link(dialer, listener)  # or peer exchange linked them first
    await wait_until_async(
        lambda: all(len(n.peer_ids()) == count - 1 for n in mesh), what="a full mesh"
    )
    source, others = mesh[0], mesh[1:]
    caplog.clear()
    assert source.network.broadcast(kind, payload) == count - 1
    await wait_until_async(
        lambda: all(payload in n.host.payloads(kind) for n in others),
        what="the payload at every node",
    )
    # Frames of one link arrive in order: once a TX each relayer flooded after the
    # payload is everywhere, every copy of the payload is in.
    for relayer in others:
        relayer.network.broadcast(Kind.TX, b"marker-" + relayer.id.encode())
    await wait_until_async(
        lambda: all(len(n.host.payloads(Kind.TX)) == sum(r is not n for r in others) for n in mesh),
        what="every marker everywhere",
    )
    for node in others:
        assert node.host.payloads(kind).count(payload) == 1
    duplicates = sum(
        "event=gossip_duplicate" in r.getMessage() and f"kind={kind.name}" in r.getMessage()
        for r in caplog.records
    )
    return duplicates + len(others)


def test_a_relayed_proposal_crosses_a_full_mesh_a_few_times_not_once_per_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="fluxchain.p2p")

    async def scenario() -> None:
        async with cluster() as nodes:
            limits = fast_limits(relay_fanout={Kind.PROPOSAL: FANOUT})
            copies = await _copies_across_a_full_mesh(
                nodes, NODES, limits, Kind.PROPOSAL, b"proposal-1", caplog
            )
            # The proposer's copy to each, plus at most FANOUT relayed by each receiver
            # (flooding: up to NODES - 2 each, 49 here).
            assert copies <= (NODES - 1) * (1 + FANOUT), f"{copies} copies of the proposal"

    run(scenario, timeout=30.0)


def test_a_relayed_vote_crosses_a_full_mesh_a_few_times_not_once_per_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Votes too (issue 22, wan22i): with the production fan-out, a vote its signer sent
    to every peer is relayed by each receiver to `relay_fanout[VOTE]` peers, not to all
    the others (an idle WAN testnet node spent most of its frames on those copies)."""
    caplog.set_level(logging.DEBUG, logger="fluxchain.p2p")
    fanout = default_relay_fanout()[Kind.VOTE]
    nodes_count = fanout + 4  # more peers than the fan-out, so that it shows

    async def scenario() -> None:
        async with cluster() as nodes:
            copies = await _copies_across_a_full_mesh(
                nodes, nodes_count, fast_limits(), Kind.VOTE, b"vote-1", caplog
            )
            # The signer's copy to each, plus at most `fanout` relayed by each receiver
            # (flooding: up to nodes_count - 2 each).
            assert copies <= (nodes_count - 1) * (1 + fanout), f"{copies} copies of the vote"

    run(scenario, timeout=30.0)
