"""rev24w3: in its commit wait a node does not relay the next height's honest proposal of
the round after the one its validators have moved on to.

Attack (liveness; no adversary needed, only a lagging node): node A has committed height
1 and waits out its block interval, while the other validators have started height 2 and
moved on to a round r > 1 (two of four voted in round r: more than a third of the power,
so A will skip to round r when height 2 starts). The honest proposer of round r + 1 sends
its proposal. `Engine.keeps_next` names only round 0, 1 and the rounds a buffered vote
names, so A answers "do not relay" (`on_gossip` returns False), though its engine buffers
the proposal and keeps it when height 2 starts (it skips to round r; r + 1 is the next
round): the test starts height 2 (the commit wait's end) and checks that it does. Once
kept, a later copy is a held copy, never relayed either: A, a relay hub on a partial
mesh, holds back the honest proposal from the peers it serves.

Now: relayed is False. Should be: True, as for any proposal the node's engine keeps.
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

PEER = "02" + "7d" * 32


def test_the_next_heights_honest_proposal_after_a_skip_is_relayed_in_the_commit_wait(
    tmp_path: Path,
) -> None:
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]

    async def scenario(node: Node, _: Block) -> None:
        chain_id = node.genesis.chain_id
        following = node.chain.validators()
        # A round whose next round's proposer is another validator (not the node).
        skip = next(r for r in range(2, 20) if proposer(following, 2, r + 1) != keys[0].public_key)
        voters = keys[1:3]  # two of four: more than a third of the power
        for key in voters:
            vote = Vote.create(key, chain_id, VoteType.PREVOTE, 2, skip, NIL)
            assert await node.on_gossip(PEER, Kind.VOTE, pack(vote.to_fields()))
        await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        round_ = skip + 1
        author = next(k for k in keys if k.public_key == proposer(following, 2, round_))
        block = _block_2(node, round_, node.genesis.genesis_time_ms + 2000)
        honest = Proposal.create(author, chain_id, 2, round_, -1, block.hash())
        relayed = await node.on_gossip(PEER, Kind.PROPOSAL, encode_proposal(honest, block.encode()))
        await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        buffered = [p.block_hash for p in node.driver.engine.buffered()[0]]
        print(f"skip={skip} round={round_} relayed={relayed} buffered={len(buffered)}")
        assert buffered == [block.hash()], "the engine buffers the honest proposal"
        engine = node.driver.engine
        node.driver.submit(_NEXT_HEIGHT)  # the commit wait's end: height 2 starts
        await wait_until_async(lambda: engine.height == 2, what="height 2 started")
        await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
        assert engine.proposal(round_, block.hash()) is not None, "height 2 keeps it"
        assert relayed, (
            f"the honest proposal of height 2 round {round_}, which the engine keeps when "
            f"height 2 starts (its buffered votes skip it to round {skip}), not relayed"
        )

    _in_the_commit_wait(tmp_path, scenario)
