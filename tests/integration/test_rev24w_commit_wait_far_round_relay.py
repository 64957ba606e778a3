"""Review rev24w: in the commit wait, a validator's far-round proposals of the next height
are still relayed by every honest node.

fix24w stops the relay of a proposal the engine would refuse (a round past the engine's
next, no vote of it) only when the proposal is of the engine's own height:
`Node._take_proposal` asks `Engine.proposal_fate` under `proposal.height == engine.height`.
Once a node has committed height H and waits out the rest of the block interval (the
commit wait, `Driver._commit`), the chain is at H and the engine still at H: a proposal of
H + 1 is "current" (`chain.height + 1`), signed by its round's proposer, and relayed
without any round judgement. At `NewHeight` the engine refuses each of them (round 0, no
vote of those rounds): they were never usable, yet every honest node flooded them on.

So the relay half of rev23a 1 stays open for the part of each height spent in the commit
wait (most of the block interval on a fast network): a byzantine validator, the proposer
of every n-th round of H + 1, re-proposes one block (up to max_block_bytes) for rounds
r, r + n, r + 2n, ... and each, a new signature, reaches every node.

The same gap lets the next height's proposer equivocate through every honest node: the
engine's next-height buffer keeps one proposal per (round, signer) and ignores the rest,
but each was relayed first.

Now: every such proposal is relayed (`on_gossip` answers True). Should be: none is; a
proposal of the next height is relayed only if the engine starting that height would keep
it (round 0 or 1, or a round some vote backs; the first block of its round), as for the
engine's own height.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.encoding import pack
from fluxchain.core.votes import Vote, VoteType
from fluxchain.genesis_builder import devnet_params
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import first_block, proposer_reveal
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

FAR = 20  # proposals of height 2, each of a round far beyond the one it will start at
EXTRA = 6  # the next height's proposer's blocks after its first
PEER = "02" + "7c" * 32

Scenario = Callable[[Node, Block], Awaitable[None]]


def _in_the_commit_wait(tmp_path: Path, scenario: Scenario) -> None:
    """Run `scenario` on a node of a 4-validator devnet that has committed height 1 and
    waits out its block interval (the engine still at height 1), with a block of
    (height 2, round 0) built on its chain and set aside."""
    # A long block interval: the commit wait lasts the whole test (no timing involved).
    params = replace(devnet_params(), block_time_ms=600_000)
    devnet = Devnet(tmp_path / "net", params=params)
    node = Node(Home(devnet.homes[0]))
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    signer = {k.public_key: k for k in keys}
    first = first_block(tmp_path / "first", devnet.genesis)
    chain_id = devnet.genesis.chain_id

    async def run() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            engine = node.driver.engine
            validators = node.chain.validators()
            # Height 1 decided by the three other validators' votes on round 0's block.
            chosen = proposer(validators, 1, 0)
            assert chosen != keys[0].public_key  # the devnet's rotation: another's round
            real = Proposal.create(signer[chosen], chain_id, 1, 0, -1, first.hash())
            await node.on_gossip(PEER, Kind.PROPOSAL, encode_proposal(real, first.encode()))
            block_hash = first.hash()
            for key in keys[1:]:
                for type_ in (VoteType.PREVOTE, VoteType.PRECOMMIT):
                    vote = Vote.create(key, chain_id, type_, 1, 0, block_hash)
                    await node.on_gossip(PEER, Kind.VOTE, pack(vote.to_fields()))
            await wait_until_async(lambda: node.chain.height == 1, what="height 1 committed")
            assert engine.height == 1, "in the commit wait: the next height has not started"
            await scenario(node, _block_2(node, 0, devnet.genesis.genesis_time_ms + 2000))
        finally:
            await node.stop()

    asyncio.run(run())


def _block_2(node: Node, round_: int, now_ms: int) -> Block:
    """A valid block of (height 2, `round_`) on the node's chain, built and set aside."""
    chain = node.chain
    block, execution, _ = chain.build_block(
        now_ms=now_ms,
        round_=round_,
        last_commit=chain.get_commit(1),
        candidates=[],
        reveal=proposer_reveal(chain, round_),
    )
    chain.abort(execution)
    return block


def test_far_round_proposals_of_the_next_height_are_not_relayed_in_the_commit_wait(
    tmp_path: Path,
) -> None:
    byzantine = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))  # not the node's key

    async def scenario(node: Node, block: Block) -> None:
        # The byzantine validator re-proposes height 2's round-0 block (pol_round 0) for
        # its far rounds.
        chain_id = node.genesis.chain_id
        following = node.chain.validators()
        assert following.power_of(byzantine.public_key) > 0
        rounds = [
            r
            for r in range(1_000, 1_000 + 50 * FAR)
            if proposer(following, 2, r) == byzantine.public_key
        ][:FAR]
        assert len(rounds) == FAR
        relayed = 0
        for round_ in rounds:
            far = Proposal.create(byzantine, chain_id, 2, round_, 0, block.hash())
            relayed += await node.on_gossip(
                PEER, Kind.PROPOSAL, encode_proposal(far, block.encode())
            )
        await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        print(
            f"far={FAR} first_round={rounds[0]} chain_height={node.chain.height} "
            f"engine_height={node.driver.engine.height} relayed={relayed} "
            f"block_bytes={len(block.encode())}"
        )
        assert relayed == 0, (
            f"{relayed} of {FAR} proposals of height 2, rounds {rounds[0]}.. (which the "
            f"engine refuses when height 2 starts at round 0), relayed in the commit wait"
        )

    _in_the_commit_wait(tmp_path, scenario)


def test_the_next_proposers_extra_blocks_are_not_relayed_in_the_commit_wait(
    tmp_path: Path,
) -> None:
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]

    async def scenario(node: Node, _: Block) -> None:
        chain_id = node.genesis.chain_id
        following = node.chain.validators()
        # Round 0 or 1 of height 2 (both kept when it starts), not the node's own.
        round_ = next(r for r in (0, 1) if proposer(following, 2, r) != keys[0].public_key)
        byzantine = next(k for k in keys if k.public_key == proposer(following, 2, round_))
        base = node.genesis.genesis_time_ms + 2000
        blocks = [_block_2(node, round_, base + n) for n in range(EXTRA + 1)]
        assert len({b.hash() for b in blocks}) == EXTRA + 1
        relayed: list[bool] = []
        for n, block in enumerate(blocks):
            p = Proposal.create(byzantine, chain_id, 2, round_, -1, block.hash())
            peer = "02" + f"{0x70 + n:02x}" * 32
            relayed.append(
                await node.on_gossip(peer, Kind.PROPOSAL, encode_proposal(p, block.encode()))
            )
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        buffered = [p.block_hash for p in node.driver.engine.buffered()[0]]
        print(f"round={round_} relayed={relayed} buffered={len(buffered)}")
        assert buffered == [blocks[0].hash()], "the next height's buffer keeps the first"
        assert relayed == [True] + [False] * EXTRA, (
            f"{sum(relayed[1:])} of the next proposer's {EXTRA} extra blocks of round "
            f"{round_}, which the engine ignores, relayed in the commit wait"
        )

    _in_the_commit_wait(tmp_path, scenario)
