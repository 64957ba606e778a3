"""Consensus gossip on real nodes: vote relay checks, and catching up on missed votes.

Issue 17 #4: votes signed by keys outside the validator set were relayed to every peer
and appended to the consensus WAL before the engine refused them. Issue 25 #2: a
validator that missed votes had no way to get them again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from consensus.events import VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from p2p.peerbook import node_ban_key
from tests.integration.harness import Devnet
from tests.p2p.harness import node_raw_peer
from tests.support.chain import open_chain, proposer_reveal
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

JUNK_VOTES = 1_000
ALL = [0, 1, 2, 3]


def test_votes_from_non_validators_are_neither_relayed_nor_logged(tmp_path: Path) -> None:
    """1,000 signed votes from throwaway keys: none relayed, none in the WAL, sender banned."""
    devnet = Devnet(tmp_path)
    node = Node(Home(devnet.homes[0]))

    async def scenario() -> None:
        await node.start()
        try:
            async with node_raw_peer(node) as attacker:
                chain_id = node.genesis.chain_id
                height = node.chain.height + 1
                junk = [
                    Vote.create(SigningKey.generate(), chain_id, VoteType.PREVOTE, height, 0, NIL)
                    for _ in range(JUNK_VOTES)
                ]
                relayed = 0
                for vote in junk:
                    payload = pack(vote.to_fields())
                    relayed += await node.on_gossip(attacker.id, Kind.VOTE, payload)
                assert relayed == 0
                junk_keys = {vote.validator for vote in junk}
                wal = node.driver.wal
                assert wal is not None
                logged = [
                    item
                    for item in wal.replay(height)
                    if isinstance(item, VoteReceived) and item.vote.validator in junk_keys
                ]
                assert logged == []
                assert node.network.book.is_banned(node_ban_key(attacker.key.public_key))
        finally:
            await node.stop()

    asyncio.run(scenario())


def test_proposals_are_relayed_only_from_the_rounds_proposer(tmp_path: Path) -> None:
    """A validator's signed proposal for a round it does not propose is not relayed (the
    engine refuses it anyway); the round's proposer's is."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    # A round far ahead, so that the node's own engine is not in it yet; backed by a vote
    # of it, or the engine would refuse it, and it is not relayed either (rev23a 1).
    round_ = 50
    # A valid block of (height 1, round_), built on a separate copy of the chain.
    builder = open_chain(tmp_path / "builder", devnet.genesis)
    try:
        block, execution, _ = builder.build_block(
            now_ms=devnet.genesis.genesis_time_ms + 1000,
            round_=round_,
            last_commit=None,
            candidates=[],
            reveal=proposer_reveal(builder, round_),
        )
        builder.abort(execution)
    finally:
        builder.close()
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in ALL]
    chain_id = devnet.genesis.chain_id

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            chosen = proposer(node.chain.validators(), 1, round_)
            right = next(k for k in keys if k.public_key == chosen)
            wrong = next(k for k in keys if k.public_key != chosen)
            backing = Vote.create(right, chain_id, VoteType.PREVOTE, 1, round_, block.hash())
            assert await node.on_gossip("02" + "12" * 32, Kind.VOTE, pack(backing.to_fields()))

            def payload(key: SigningKey) -> bytes:
                proposal = Proposal.create(key, chain_id, 1, round_, -1, block.hash())
                return encode_proposal(proposal, block.encode())

            peer = "02" + "11" * 32
            assert await node.on_gossip(peer, Kind.PROPOSAL, payload(wrong)) is False
            assert await node.on_gossip(peer, Kind.PROPOSAL, payload(right)) is True
        finally:
            await node.stop()

    asyncio.run(scenario())


def test_validators_that_missed_votes_catch_up_through_consensus_gossip(tmp_path: Path) -> None:
    """Two of four validators are cut off for 10 s (SIGUSR1): no quorum, the chain stops,
    and each side's votes of that height never reach the other. Reconnected, their peers'
    consensus gossip sends each what it lacks, and the chain moves on with all four in
    agreement."""
    devnet = Devnet(tmp_path)
    devnet.start_all()
    try:
        devnet.wait_height(ALL, 2, timeout=60)
        for victim in (2, 3):
            devnet.signal(victim, signal.SIGUSR1)
        time.sleep(10)  # the drill lasts ten seconds (fluxchain.node.node.ISOLATE_S)
        # No quorum while two of four are cut off: the chain stood still at this height.
        stalled = max(devnet.height(i) for i in ALL)
        devnet.wait_height(ALL, stalled + 2, timeout=60)
        devnet.assert_agree(ALL, stalled + 2)
        # The height the cut-off validators missed votes of was repaired by consensus gossip.
        repaired = f"height={stalled + 1} "
        logs = [(home / "node.log").read_text(errors="replace") for home in devnet.homes]
        assert any(
            "consensus gossip sent" in line and repaired in line
            for log in logs
            for line in log.splitlines()
        ), devnet.describe()
    finally:
        devnet.close()
