"""rev24p C: with the strangers' share full of one source's throw-away votes, every other
source under its part (PEER_STRANGER_VOTES) still gets its votes in, the flooder keeping
its part, and the driver's record of who holds the places stays within the share."""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.engine import MAX_BUFFERED_STRANGER_VOTES
from fluxchain.core.encoding import pack
from fluxchain.node.driver import PEER_STRANGER_VOTES
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import EPOCH_START, devnet_at_epoch_start
from tests.integration.test_p2p24_stranger_share import _stranger_votes
from tests.support.wait import wait_until_async

FLOODER = "02" + "7e" * 32
OTHERS = MAX_BUFFERED_STRANGER_VOTES // PEER_STRANGER_VOTES - 1


def test_each_source_under_its_part_gets_in_past_a_full_share(tmp_path: Path) -> None:
    devnet = devnet_at_epoch_start(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    junk = _stranger_votes(MAX_BUFFERED_STRANGER_VOTES, chain_id, b"fix24p flood")
    others = {
        "02" + bytes([0x80 + i]).hex() * 32: _stranger_votes(
            PEER_STRANGER_VOTES, chain_id, b"fix24p source %d" % i
        )
        for i in range(OTHERS)
    }

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(
                lambda: node.driver.engine.height == EPOCH_START, what="an epoch's start"
            )
            engine = node.driver.engine
            assert engine.next_validators is None
            for vote in junk:
                await node.on_gossip(FLOODER, Kind.VOTE, pack(vote.to_fields()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            assert len(engine.buffered()[1]) == MAX_BUFFERED_STRANGER_VOTES  # free: all its
            for peer_id, votes in others.items():
                for vote in votes:
                    await node.on_gossip(peer_id, Kind.VOTE, pack(vote.to_fields()))
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue")
            buffered = set(engine.buffered()[1])
            held = {peer_id: sum(v in buffered for v in votes) for peer_id, votes in others.items()}
            from_junk = sum(v in buffered for v in junk)
            print(f"buffered={len(buffered)} flooder={from_junk} others={sorted(held.values())}")
            assert all(count == PEER_STRANGER_VOTES for count in held.values()), held
            assert from_junk == PEER_STRANGER_VOTES
            # The driver's record of the places is the engine's, within the share.
            recorded = node.driver._stranger_source
            assert len(recorded) == len(buffered) == MAX_BUFFERED_STRANGER_VOTES
            assert set(recorded) == buffered
        finally:
            await node.stop()

    asyncio.run(scenario())
