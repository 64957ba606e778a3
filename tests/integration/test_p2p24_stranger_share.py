"""p2p24 1: where the next validator set is unknown (an epoch's first height), the votes of
the next height by keys outside the current set share MAX_BUFFERED_STRANGER_VOTES places.
One peer's throw-away keys must not take them all: the next epoch's new validators, whose
votes other peers relay, are strangers too, and were refused until `NewHeight`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.engine import MAX_BUFFERED_STRANGER_VOTES
from consensus.voteset import MAX_FUTURE_ROUNDS_PER_VALIDATOR
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import PEER_STRANGER_VOTES
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import EPOCH_START, devnet_at_epoch_start
from tests.support.wait import wait_until_async

PEER_JUNK, PEER_AHEAD = ("02" + "7a" * 32, "02" + "7b" * 32)


def _stranger_votes(count: int, chain_id: str, tag: bytes) -> list[Vote]:
    """`count` votes of the height after `EPOCH_START` by fresh keys, each as many rounds
    as its quota takes."""
    votes: list[Vote] = []
    n = 0
    while len(votes) < count:
        key = SigningKey(sha256(tag + b" %d" % n))
        n += 1
        votes.extend(
            Vote.create(key, chain_id, type_, EPOCH_START + 1, round_, NIL)
            for round_ in range(MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1)
            for type_ in (VoteType.PREVOTE, VoteType.PRECOMMIT)
        )
    return votes[:count]


def test_one_peers_throwaway_keys_leave_room_for_the_strangers_other_peers_relay(
    tmp_path: Path,
) -> None:
    devnet = devnet_at_epoch_start(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    junk = _stranger_votes(MAX_BUFFERED_STRANGER_VOTES, chain_id, b"p2p24 junk key")
    # A validator joining at the epoch: outside the current set, its vote relayed by an
    # honest peer a height ahead.
    newcomer = SigningKey(sha256(b"p2p24 new validator"))
    relayed = Vote.create(
        newcomer, chain_id, VoteType.PREVOTE, EPOCH_START + 1, 0, sha256(b"block 2")
    )

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(
                lambda: node.driver.engine.height == EPOCH_START, what="an epoch's start"
            )
            engine = node.driver.engine
            assert engine.next_validators is None
            assert node.chain.validators().power_of(newcomer.public_key) == 0
            for vote in junk:
                await node.on_gossip(PEER_JUNK, Kind.VOTE, pack(vote.to_fields()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            await node.on_gossip(PEER_AHEAD, Kind.VOTE, pack(relayed.to_fields()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            buffered = engine.buffered()[1]
            from_junk = sum(v in junk for v in buffered)
            print(f"junk sent={len(junk)} buffered={len(buffered)} of it={from_junk}")
            assert relayed in buffered, (
                f"the relayed vote of a key outside the current set was refused: one peer's "
                f"{from_junk} throw-away votes hold the places of keys outside the set"
            )
            assert from_junk == PEER_STRANGER_VOTES
        finally:
            await node.stop()

    asyncio.run(scenario())
