"""Seed mode (`fluxchain run --seed-mode`, CometBFT's): a seed answers every node's peer
exchange with the addresses it learnt from the nodes before, and hangs up. It keeps no
peer, so it holds none of their slots and sees no gossip."""

from __future__ import annotations

from p2p.messages import Kind
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async


def test_nodes_find_each_other_through_a_seed_that_keeps_no_peer() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            seed = await nodes.add(limits=fast_limits(seed_mode=True))
            first = await nodes.add(persistent=[seed.address])
            await wait_until_async(
                lambda: (seed.id, "seed_mode") in first.host.disconnected,
                what="the seed answering the first node and hanging up",
            )
            second = await nodes.add(persistent=[seed.address])
            # The seed kept the first node's address and hands it to the second.
            await wait_until_async(
                lambda: first.id in second.peer_ids(),
                what="the second node reaching the first through the seed",
            )
            assert (seed.id, "seed_mode") in second.host.disconnected
            assert seed.peer_ids() == set() and seed.host.connected == []
            second.network.broadcast(Kind.TX, b"a tx the seed must never see")
            await wait_until_async(
                lambda: bool(first.host.payloads()), what="the tx reaching the first node"
            )
            assert seed.host.gossip == [] and seed.peer_ids() == set()

    run(scenario)
