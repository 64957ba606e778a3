"""Review rev23a: a validator's proposals the engine drops or refuses must not fill the WAL.

`Node._check_proposer` refuses a proposal of the height being decided only if its round's
proposer did not sign it, and `Engine.admits_proposal` (what `Driver._feed` asks before
`ConsensusWal.record`) checks the height, the decision, pol_round and the signer, but not
the round: a proposal of a round far beyond the engine's (`p.round > self.round + 1` with
no vote of that round) passes both, is logged with its whole block, and only then is
`Refused` by `Engine.on_proposal` (the network forgets it; its sender is not punished).

Rotation is `(height + round) % sum(weights)`, so one validator is the proposer of every
n-th round, without end: a single byzantine validator re-proposes one valid block of round
0 (pol_round 0) for rounds r, r + n, r + 2n, ... and each is a new WAL record of up to
max_block_bytes, within one height, at the rate a peer may send PROPOSALs. `_take_proposal`
also relays each (signed by the round's proposer), so every honest node logs them too.
An equivocating proposer's extra blocks of its own round were the same hole inside the
round window (fixed by fix23a2; the far rounds by fix24w).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.events import ProposalReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.encoding import pack
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import first_block, open_chain, proposer_reveal
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

EXTRA = 10  # an equivocating proposer's blocks after its first
FAR = 40  # proposals, each of a round far beyond the engine's
PEER = "02" + "5e" * 32


def test_an_equivocating_proposers_extra_blocks_the_engine_drops_are_not_logged(
    tmp_path: Path,
) -> None:
    """The same hole inside the round window: the round's proposer signs one block after
    another for its round. `Engine.on_proposal` keeps the first and drops the rest (no
    vote points at them), but `admits_proposal` passes each (right height, right signer),
    so each is logged whole, and relayed, before the drop: a bound on rounds alone would
    not close the WAL."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    validators = devnet.genesis.validator_set()
    # Round 0 or 1 of height 1 (both within the engine's window), not the node's own.
    round_ = next(r for r in (0, 1) if proposer(validators, 1, r) != keys[0].public_key)
    byzantine = next(k for k in keys if k.public_key == proposer(validators, 1, round_))
    builder = open_chain(tmp_path / "builder", devnet.genesis)
    blocks = []
    try:  # distinct valid blocks of (height 1, round_): one timestamp each
        for n in range(EXTRA + 1):
            block, execution, _ = builder.build_block(
                now_ms=devnet.genesis.genesis_time_ms + 1000 + n,
                round_=round_,
                last_commit=None,
                candidates=[],
                reveal=proposer_reveal(builder, round_),
            )
            builder.abort(execution)
            blocks.append(block)
    finally:
        builder.close()
    chain_id = devnet.genesis.chain_id

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            engine = node.driver.engine
            relayed = 0
            for block in blocks:
                p = Proposal.create(byzantine, chain_id, 1, round_, -1, block.hash())
                relayed += await node.on_gossip(
                    PEER, Kind.PROPOSAL, encode_proposal(p, block.encode())
                )
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            dropped = {b.hash() for b in blocks if engine.proposal(round_, b.hash()) is None}
            wal = node.driver.wal
            assert wal is not None
            logged = [
                item.proposal
                for item in wal.replay(1)
                if isinstance(item, ProposalReceived) and item.proposal.block_hash in dropped
            ]
            print(
                f"blocks={len(blocks)} round={round_} dropped={len(dropped)} "
                f"logged={len(logged)} relayed={relayed} wal_bytes={wal.size}"
            )
            assert len(dropped) == EXTRA  # the first is kept, the rest dropped
            assert logged == [], (
                f"{len(logged)} of the equivocating proposer's {EXTRA} extra blocks, which "
                f"the engine dropped, are in the WAL ({wal.size} bytes)"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())


def test_a_validators_far_round_proposals_the_engine_refuses_are_not_logged(
    tmp_path: Path,
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block = first_block(tmp_path / "builder", devnet.genesis)
    chain_id = devnet.genesis.chain_id
    # A byzantine validator: one of the genesis set, not the node under test.
    byzantine = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            validators = node.chain.validators()
            assert validators.power_of(byzantine.public_key) > 0
            start = node.driver.engine.round + 1_000
            rounds = [
                r
                for r in range(start, start + 50 * FAR)
                if proposer(validators, 1, r) == byzantine.public_key
            ][:FAR]
            assert len(rounds) == FAR
            relayed = 0
            for round_ in rounds:
                far = Proposal.create(byzantine, chain_id, 1, round_, 0, block.hash())
                relayed += await node.on_gossip(
                    PEER, Kind.PROPOSAL, encode_proposal(far, block.encode())
                )
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            engine = node.driver.engine
            kept = [r for r in rounds if engine.proposal(r, block.hash()) is not None]
            wal = node.driver.wal
            assert wal is not None
            logged = [
                item.proposal.round
                for item in wal.replay(1)
                if isinstance(item, ProposalReceived) and item.proposal.round in rounds
            ]
            print(
                f"far={FAR} first_round={rounds[0]} engine_round={engine.round} kept={len(kept)} "
                f"logged={len(logged)} relayed={relayed} wal_bytes={wal.size} "
                f"block_bytes={len(block.encode())}"
            )
            assert kept == [], "the engine refuses rounds this far ahead with no vote of them"
            assert logged == [], (
                f"{len(logged)} of {FAR} far-round proposals the engine refused are in the "
                f"WAL ({wal.size} bytes): one validator grows it without bound in one height"
            )
            assert relayed == 0, f"{relayed} of {FAR} refused far-round proposals relayed"
        finally:
            await node.stop()

    asyncio.run(scenario())


def test_the_windows_edge_is_logged_and_relayed(tmp_path: Path) -> None:
    """What the engine must keep still reaches the WAL and the network: the next round's
    proposal, which an honest proposer one timeout ahead sends early (lost, it would cost
    that round), and a far round's once a vote of that round shows it is under way (the
    very message of the attack above, backed by a validator's prevote)."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    chain_id = devnet.genesis.chain_id
    first = first_block(tmp_path / "first", devnet.genesis)
    builder = open_chain(tmp_path / "builder", devnet.genesis)
    try:  # a valid block of (height 1, round 1): a fresh proposal of the next round
        early, execution, _ = builder.build_block(
            now_ms=devnet.genesis.genesis_time_ms + 1000,
            round_=1,
            last_commit=None,
            candidates=[],
            reveal=proposer_reveal(builder, 1),
        )
        builder.abort(execution)
    finally:
        builder.close()

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            engine = node.driver.engine
            validators = node.chain.validators()
            assert engine.round == 0
            signer = {k.public_key: k for k in keys}

            def logged() -> list[tuple[int, bytes]]:
                wal = node.driver.wal
                assert wal is not None
                return [
                    (item.proposal.round, item.proposal.block_hash)
                    for item in wal.replay(1)
                    if isinstance(item, ProposalReceived)
                ]

            # The next round's, fresh, from its proposer (not the node itself).
            next_key = signer[proposer(validators, 1, 1)]
            assert next_key.public_key != keys[0].public_key
            nxt = Proposal.create(next_key, chain_id, 1, 1, -1, early.hash())
            assert await node.on_gossip(PEER, Kind.PROPOSAL, encode_proposal(nxt, early.encode()))
            await wait_until_async(
                lambda: engine.proposal(1, early.hash()) is not None,
                what="the next round's proposal kept",
            )
            assert (1, early.hash()) in logged()

            # A far round's re-proposal of round 0's block, after a prevote of that round.
            far = next(
                r
                for r in range(engine.round + 1_000, engine.round + 1_100)
                if proposer(validators, 1, r) != keys[0].public_key
            )
            voter = next(k for k in keys[1:] if k.public_key != proposer(validators, 1, far))
            vote = Vote.create(voter, chain_id, VoteType.PREVOTE, 1, far, first.hash())
            await node.on_gossip(PEER, Kind.VOTE, pack(vote.to_fields()))
            await wait_until_async(lambda: engine.votes.has_round(far), what="the far vote")
            assert engine.round == 0  # one vote moves no round: the proposal stays far
            reproposal = Proposal.create(
                signer[proposer(validators, 1, far)], chain_id, 1, far, 0, first.hash()
            )
            relayed = await node.on_gossip(
                PEER, Kind.PROPOSAL, encode_proposal(reproposal, first.encode())
            )
            await wait_until_async(
                lambda: engine.proposal(far, first.hash()) is not None,
                what="the far round's proposal, backed by a vote of its round, kept",
            )
            assert relayed
            assert (far, first.hash()) in logged()
        finally:
            await node.stop()

    asyncio.run(scenario())
