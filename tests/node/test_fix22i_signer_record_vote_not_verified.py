"""Review rev22w, the signer record's part: the last vote a restart feeds back from the
signer record was read from disk, its signature unchecked, like the WAL's records. The
driver must not count it as a verified precommit: a block whose parent commit carries a
forged signature in its place is refused, and never stored."""

from __future__ import annotations

import asyncio

import pytest

from consensus.events import CommitBlock, VoteReceived
from consensus.messages import Step
from consensus.signer import MemorySignerStore, SignerGuard, SignerState
from fluxchain.core.errors import BlockError
from fluxchain.core.votes import Commit, Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, NoGossip


def test_a_forged_last_vote_in_the_signer_record_never_passes_as_a_parent_commit_signature(
    chain: Chain,
) -> None:
    async def scenario() -> None:
        chain_id = chain.params.chain_id
        builder = Builder(chain)
        builder.commit()  # height 1
        block, commit = builder.block([])  # height 2 and its honest commit
        own = builder.signers[0]  # this node's key
        elsewhere = Vote.create(own, chain_id, VoteType.PRECOMMIT, 2, 0, b"\x01" * 32)
        # The record says our last vote was a precommit of the block at height 2, with a
        # signature over another block (a damaged or planted record).
        store = MemorySignerStore()
        store.state = SignerState(
            chain_id,
            own.public_key,
            height=2,
            round=0,
            step=int(Step.PRECOMMIT),
            signature=elsewhere.signature,
            block_hash=block.hash(),
        )
        guard = SignerGuard(own, chain_id, store)
        forged = guard.last_vote()
        assert forged is not None and not forged.verify(chain_id)

        driver = Driver(chain, NodeService(chain), own, guard, NoGossip())
        driver._new_height()  # the restart at height 2 feeds the record's last vote back
        for key, signature in commit.signatures:  # the honest precommits, from gossip
            driver._feed(VoteReceived(Vote(VoteType.PRECOMMIT, 2, 0, block.hash(), key, signature)))
        assert driver._execute(block.encode(), block.hash()) is not None
        driver._commit(CommitBlock(block.height, block.hash(), block.encode(), commit))
        assert chain.height == 2

        bad_parent = Commit(
            2,
            0,
            block.hash(),
            tuple(
                (key, forged.signature if key == own.public_key else signature)
                for key, signature in commit.signatures
            ),
        )
        with pytest.raises(BlockError):
            bad_parent.verify(chain_id, chain.validators(), 2, block.hash())
        builder.last_commit = bad_parent
        driver._new_height()
        following, following_commit = builder.block([])
        accepted = driver._execute(following.encode(), following.hash())
        if accepted is not None:
            driver._commit(
                CommitBlock(
                    following.height, following.hash(), following.encode(), following_commit
                )
            )
        await driver.stop()
        assert chain.height == 2, "a block whose parent commit does not verify was stored"
        assert accepted is None, "the proposal check took a parent commit with a forged signature"

    asyncio.run(scenario())
