"""Review rev22w of de72b9c: a precommit the driver keeps as verified must have been verified.

The driver notes each precommit it feeds the engine as a verified signature before the
engine steps it (`Driver._note_precommit`), on the ground that "every vote reaches the
engine verified". The inputs a restart replays from the consensus WAL (and the signer
record's last vote) are read back from disk and fed without any check: the engine's vote
set verifies them and drops a bad one, but the driver has kept its triple by then, and the
next block's parent commit is then taken with that signature unverified. Before de72b9c
such a parent commit was refused (`Commit.verify`); the WAL has no checksum, and safety
was never to rest on it (docs/consensus.md, section 1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.events import CommitBlock, VoteReceived
from fluxchain.core.block import Block
from fluxchain.core.errors import BlockError
from fluxchain.core.votes import Commit, Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.node.wal import ConsensusWal
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, NoGossip, node_hot_key


def test_a_forged_precommit_replayed_from_the_wal_never_passes_as_a_parent_commit_signature(
    chain: Chain, tmp_path: Path
) -> None:
    async def scenario() -> None:
        chain_id = chain.params.chain_id
        builder = Builder(chain)
        builder.commit()  # height 1
        block, commit = builder.block([])  # height 2 and its honest commit
        victim = builder.signers[0]
        signatures = dict(commit.signatures)
        # The victim's signature over another block: well-formed, but not over this vote.
        elsewhere = Vote.create(victim, chain_id, VoteType.PRECOMMIT, 2, 0, b"\x01" * 32)
        forged = Vote(
            VoteType.PRECOMMIT, 2, 0, block.hash(), victim.public_key, elsewhere.signature
        )
        assert not forged.verify(chain_id)
        assert forged.signature != signatures[victim.public_key]

        # The node's WAL at height 2 holds the forged precommit (a damaged or planted log).
        path = tmp_path / "consensus.wal"
        wal = ConsensusWal(path)
        wal.start_height(2)
        wal.record(VoteReceived(forged))
        wal.flush()
        wal.close()

        driver = Driver(
            chain, NodeService(chain), node_hot_key(0), None, NoGossip(), wal=ConsensusWal(path)
        )
        driver._new_height()  # the restart at height 2 replays the log
        await assert_forged_parent_commit_refused(driver, builder, block, commit, forged)

    asyncio.run(scenario())


async def assert_forged_parent_commit_refused(
    driver: Driver, builder: Builder, block: Block, commit: Commit, forged: Vote
) -> None:
    """After a restart at `block`'s height that fed `forged` (a precommit of `block` with a
    signature over something else) back from disk: the honest precommits come by gossip,
    `block` commits, and a next block whose parent commit carries the forged signature is
    refused and never stored. Stops `driver`."""
    chain = driver.chain
    chain_id = chain.params.chain_id
    height = block.height
    for key, signature in commit.signatures:  # the honest precommits, from gossip
        driver._feed(
            VoteReceived(Vote(VoteType.PRECOMMIT, height, 0, block.hash(), key, signature))
        )
    assert driver._execute(block.encode(), block.hash()) is not None
    driver._commit(CommitBlock(block.height, block.hash(), block.encode(), commit))
    assert chain.height == height

    # A proposer of the next height puts the forged signature in its parent commit.
    bad_parent = Commit(
        height,
        0,
        block.hash(),
        tuple(
            (key, forged.signature if key == forged.validator else signature)
            for key, signature in commit.signatures
        ),
    )
    with pytest.raises(BlockError):
        bad_parent.verify(chain_id, chain.validators(), height, block.hash())
    builder.last_commit = bad_parent
    driver._new_height()
    following, following_commit = builder.block([])
    accepted = driver._execute(following.encode(), following.hash())
    if accepted is not None:
        driver._commit(
            CommitBlock(following.height, following.hash(), following.encode(), following_commit)
        )
    await driver.stop()
    assert chain.height == height, "a block whose parent commit does not verify was stored"
    assert accepted is None, "the proposal check took a parent commit with a forged signature"
