"""p2p24 1: at an epoch's first height the next set is unknown while the height is
decided, so the engine buffers the next height's votes of keys outside the current set
(strangers' share). Once the driver commits that height the set is known: what the buffer
holds of keys outside it must go then (`NextSetKnown`), not wait for the replay at
`NewHeight`, holding places the commit wait's honest votes need."""

from __future__ import annotations

import asyncio

from consensus.events import CommitBlock, VoteReceived
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, NoGossip, node_hot_key


def test_the_commit_of_an_epochs_last_height_screens_the_next_heights_buffer(
    chain: Chain,
) -> None:
    async def scenario() -> None:
        builder = Builder(chain)
        last = chain.params.epoch_length  # its block chooses the next set
        while chain.height < last - 1:
            builder.commit()
        driver = Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip())
        try:
            driver._new_height()
            engine = driver.engine
            assert engine.height == last and engine.next_validators is None
            chain_id = chain.params.chain_id
            stranger = Vote.create(
                SigningKey(sha256(b"p2p24 stranger")), chain_id, VoteType.PREVOTE, last + 1, 0, NIL
            )
            member = Vote.create(builder.signers[0], chain_id, VoteType.PREVOTE, last + 1, 0, NIL)
            for vote in (stranger, member):
                driver._feed(VoteReceived(vote))
            assert engine.buffered()[1] == [stranger, member]

            block, commit = builder.block([])
            assert driver._execute(block.encode(), block.hash()) is not None
            driver._commit(CommitBlock(block.height, block.hash(), block.encode(), commit))
            assert chain.height == last
            following = chain.validators()
            assert following.power_of(member.validator) > 0
            assert following.power_of(stranger.validator) == 0
            print(f"buffered after the commit={len(engine.buffered()[1])}")
            assert engine.buffered()[1] == [member], (
                "a vote of a key outside the next set, known since the commit, still holds "
                "a place in the next height's buffer"
            )
            assert engine.next_validators == following
        finally:
            await driver.stop()

    asyncio.run(scenario())
