"""Review rev24w: a node that catches up by votes keeps the proposal of the round it
joins, but no longer relays it.

fix24w judges the relay of a proposal in `Node._take_proposal` by
`Engine.proposal_fate` on the engine's stepped state, while the votes the node has just
admitted still wait in the driver's queue (`Driver.admit` queues them; `queued_votes`).
A node two rounds behind receives, in one burst, f + 1 prevotes of round R (enough to
skip to R: `Engine.try_skip_to`) and then R's proposal from its proposer: at the relay
check the engine is still at its old round with no vote of R, the fate is REFUSE, and the
proposal is withheld; the driver then steps the votes, skips to R, and keeps and logs the
very proposal. The honest proposal of the round the node now decides is not flooded on:
its peers must wait for consensus gossip's re-send (`resend_after`), past which their
propose timeout may have prevoted nil, a lost round. `Driver.admit` counts queued votes
for exactly this reason (issue 17 #4: "a burst of votes is judged as the engine will see
it"); the proposal's judgement does not, and docs/security.md's row for rev23a 1 says
"a far round's backed by a vote of that round are still logged, kept and relayed".

Now: kept and logged, but `on_gossip` answers False (not relayed). Should be: relayed,
as it would be had the driver stepped the votes a moment earlier.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.events import ProposalReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.encoding import pack
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import open_chain, proposer_reveal
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

PEER = "02" + "7d" * 32


def test_the_proposal_of_the_round_a_burst_of_votes_skips_to_is_relayed(
    tmp_path: Path,
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    signer = {k.public_key: k for k in keys}
    validators = devnet.genesis.validator_set()
    chain_id = devnet.genesis.chain_id
    builder = open_chain(tmp_path / "builder", devnet.genesis)

    def fresh_block(round_: int) -> Block:
        """A valid fresh block of (height 1, `round_`)."""
        block, execution, _ = builder.build_block(
            now_ms=devnet.genesis.genesis_time_ms + 1000,
            round_=round_,
            last_commit=None,
            candidates=[],
            reveal=proposer_reveal(builder, round_),
        )
        builder.abort(execution)
        return block

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            engine = node.driver.engine
            # Past the engine's next round (its timeouts may have moved it meanwhile),
            # proposed by another validator; nothing below yields to the driver before
            # the proposal is judged.
            round_ = next(
                r
                for r in range(engine.round + 3, engine.round + 30)
                if proposer(validators, 1, r) != keys[0].public_key
            )
            author = signer[proposer(validators, 1, round_)]
            block = fresh_block(round_)
            assert engine.round < round_ - 1
            # f + 1 of the power (2 of 4 equal validators) prevoted the block in round_.
            voters = [next(k for k in keys[1:] if k is not author), author]
            for key in voters:
                vote = Vote.create(key, chain_id, VoteType.PREVOTE, 1, round_, block.hash())
                assert await node.on_gossip(PEER, Kind.VOTE, pack(vote.to_fields()))
            proposal = Proposal.create(author, chain_id, 1, round_, -1, block.hash())
            relayed = await node.on_gossip(
                PEER, Kind.PROPOSAL, encode_proposal(proposal, block.encode())
            )
            await wait_until_async(
                lambda: engine.proposal(round_, block.hash()) is not None,
                what="the proposal of the round the votes skip to, kept",
            )
            wal = node.driver.wal
            assert wal is not None
            logged = [
                item.proposal
                for item in wal.replay(1)
                if isinstance(item, ProposalReceived) and item.proposal.round == round_
            ]
            print(f"round={round_} now={engine.round} relayed={relayed} logged={len(logged)}")
            assert engine.round >= round_, "the votes moved the engine to their round"
            assert logged == [proposal]
            assert relayed, (
                f"the proposal of round {round_}, which the node keeps and decides on, was "
                f"not relayed: judged before the queued votes of its round were stepped"
            )
        finally:
            await node.stop()

    try:
        asyncio.run(scenario())
    finally:
        builder.close()
