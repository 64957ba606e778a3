"""Review rev22w, the signer record's part: the last vote a restart feeds back from the
signer record was read from disk, its signature unchecked, like the WAL's records. The
driver must not count it as a verified precommit: a block whose parent commit carries a
forged signature in its place is refused, and never stored."""

from __future__ import annotations

import asyncio

from consensus.messages import Step
from consensus.signer import MemorySignerStore, SignerGuard, SignerState
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.node.test_rev22w_precommits_from_the_wal import assert_forged_parent_commit_refused
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
        await assert_forged_parent_commit_refused(driver, builder, block, commit, forged)

    asyncio.run(scenario())
