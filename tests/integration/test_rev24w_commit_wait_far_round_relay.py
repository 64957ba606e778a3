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

Now: every such proposal is relayed (`on_gossip` answers True). Should be: none is; a
proposal of the next height is relayed only if the engine starting that height would keep
it (round 0 or 1, or a round some vote backs), as for the engine's own height.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
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
PEER = "02" + "7c" * 32


def test_far_round_proposals_of_the_next_height_are_not_relayed_in_the_commit_wait(
    tmp_path: Path,
) -> None:
    # A long block interval: the commit wait lasts the whole test (no timing involved).
    params = replace(devnet_params(), block_time_ms=600_000)
    devnet = Devnet(tmp_path / "net", params=params)
    node = Node(Home(devnet.homes[0]))
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    signer = {k.public_key: k for k in keys}
    first = first_block(tmp_path / "first", devnet.genesis)
    chain_id = devnet.genesis.chain_id
    byzantine = keys[1]  # a validator, not the node under test

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            engine = node.driver.engine
            validators = node.chain.validators()
            # Height 1 decided by the three other validators' votes on round 0's block.
            chosen = proposer(validators, 1, 0)
            if chosen == keys[0].public_key:
                await wait_until_async(
                    lambda: bool(engine._proposals.get(0)), what="the node's own proposal"
                )
                block_hash = next(iter(engine._proposals[0]))
            else:
                real = Proposal.create(signer[chosen], chain_id, 1, 0, -1, first.hash())
                await node.on_gossip(PEER, Kind.PROPOSAL, encode_proposal(real, first.encode()))
                block_hash = first.hash()
            for key in keys[1:]:
                for type_ in (VoteType.PREVOTE, VoteType.PRECOMMIT):
                    vote = Vote.create(key, chain_id, type_, 1, 0, block_hash)
                    await node.on_gossip(PEER, Kind.VOTE, pack(vote.to_fields()))
            await wait_until_async(lambda: node.chain.height == 1, what="height 1 committed")
            assert engine.height == 1, "in the commit wait: the next height has not started"

            # A valid block of (height 2, round 0), which the byzantine validator
            # re-proposes (pol_round 0) for its far rounds; built, then set aside.
            chain = node.chain
            block, execution, _ = chain.build_block(
                now_ms=devnet.genesis.genesis_time_ms + 2000,
                round_=0,
                last_commit=chain.get_commit(1),
                candidates=[],
                reveal=proposer_reveal(chain, 0),
            )
            chain.abort(execution)
            following = chain.validators()
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
                f"engine_height={engine.height} relayed={relayed} "
                f"block_bytes={len(block.encode())}"
            )
            assert relayed == 0, (
                f"{relayed} of {FAR} proposals of height 2, rounds {rounds[0]}.. (which the "
                f"engine refuses when height 2 starts at round 0), relayed in the commit wait"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
