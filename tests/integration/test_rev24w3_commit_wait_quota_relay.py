"""rev24w3: in its commit wait a node relays a validator's far-round proposal of the next
height that it then refuses when that height starts.

Attack (a byzantine validator V): while honest nodes wait out height 1's block interval,
V gossips one prevote of height 2 in each of four rounds beyond round 1 that it proposes;
each node buffers all four (`Engine._admits_next` keeps a validator's votes in up to four
rounds) and relays them. V then proposes a block for the fourth round: `keeps_next` sees
a buffered vote of that round and every node relays the proposal, block and all. When
height 2 starts at round 0, its vote set takes only three future rounds of V: the fourth
round's vote is refused, and so the proposal (a round past the next, no vote of it).
Now: relayed (`on_gossip` True), then refused. Should be: not relayed, as any proposal
the next height refuses (review rev24w 1).
"""

from __future__ import annotations

from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import _NEXT_HEIGHT, encode_proposal
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.test_rev24w_commit_wait_far_round_relay import _block_2, _in_the_commit_wait
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

PEER = "02" + "7e" * 32


def test_a_fourth_far_round_proposal_of_the_next_height_is_not_relayed(
    tmp_path: Path,
) -> None:
    byzantine = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))  # not the node's key

    async def scenario(node: Node, _: Block) -> None:
        chain_id = node.genesis.chain_id
        following = node.chain.validators()
        rounds = [r for r in range(2, 80) if proposer(following, 2, r) == byzantine.public_key]
        rounds = rounds[:4]
        assert len(rounds) == 4
        for round_ in rounds:
            vote = Vote.create(byzantine, chain_id, VoteType.PREVOTE, 2, round_, NIL)
            assert await node.on_gossip(PEER, Kind.VOTE, pack(vote.to_fields()))
        await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        last = rounds[-1]
        block = _block_2(node, last, node.genesis.genesis_time_ms + 2000)
        far = Proposal.create(byzantine, chain_id, 2, last, -1, block.hash())
        relayed = await node.on_gossip(PEER, Kind.PROPOSAL, encode_proposal(far, block.encode()))
        await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        engine = node.driver.engine
        node.driver.submit(_NEXT_HEIGHT)  # the commit wait's end: height 2 starts
        await wait_until_async(lambda: engine.height == 2, what="height 2 started")
        await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        kept = engine.proposal(last, block.hash()) is not None
        print(f"rounds={rounds} relayed={relayed} kept_at_height_2={kept}")
        assert not kept, "height 2 refuses the fourth far round's proposal"
        assert not relayed, (
            f"V's proposal of height 2 round {last} (block {len(block.encode())} bytes), "
            "which height 2 refuses, relayed in the commit wait"
        )

    _in_the_commit_wait(tmp_path, scenario)
