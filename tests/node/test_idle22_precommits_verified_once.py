"""A precommit's signature is verified once by a node (issue 22, idle22).

Each height a node verified every precommit it took from the network, then the same
signatures again when it committed the block (`Chain.commit_block` checks the commit the
engine built of them) and a third time when it checked the next block, whose parent
commit carries them: ~30 signature checks a height, at ~60 µs each on the WAN testnet's
box, of an idle node's ~50 ms. The driver now keeps the precommits its engine took as
verified (`Driver._precommits`, two or three heights, bounded by count); a commit signed
otherwise is verified as before.
"""

from __future__ import annotations

import asyncio

import pytest

from consensus.events import CommitBlock, NewHeight, VoteReceived
from fluxchain.core.votes import Commit, Vote, VoteType
from fluxchain.node.driver import PRECOMMIT_HEIGHTS_KEPT, PRECOMMITS_KEPT, Driver
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.calls import count_vote_signatures
from tests.support.chain import Builder, NoGossip, node_hot_key


def _precommits(commit: Commit) -> list[Vote]:
    return [
        Vote(VoteType.PRECOMMIT, commit.height, commit.round, commit.block_hash, key, signature)
        for key, signature in commit.signatures
    ]


def _driver(chain: Chain) -> Driver:
    return Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip())


def test_the_precommits_the_engine_took_are_not_verified_again_by_the_commit_or_next_block(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        driver = _driver(chain)
        builder = Builder(chain)
        builder.commit()  # height 1: the next block carries a parent commit
        driver._new_height()
        block, commit = builder.block([])
        for vote in _precommits(commit):  # as gossip brings them, verified by the node
            driver._feed(VoteReceived(vote))
        # Checked as the proposal was (its parent commit, imported by sync, is verified).
        assert driver._execute(block.encode(), block.hash()) is not None
        checks = count_vote_signatures(monkeypatch)
        driver._commit(CommitBlock(block.height, block.hash(), block.encode(), commit))
        assert chain.height == block.height
        assert checks == [], f"the commit's {len(checks)} signatures verified again"
        builder.last_commit = commit
        driver._new_height()
        following, _ = builder.block([])
        assert driver._execute(following.encode(), following.hash()) is not None
        assert checks == [], f"the parent commit's {len(checks)} signatures verified again"
        await driver.stop()

    asyncio.run(scenario())


def test_a_commit_of_signatures_the_engine_never_took_is_verified(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block whose parent commit holds other signatures than those taken (another set
    of precommits for the same block) has each of them verified."""

    async def scenario() -> None:
        driver = _driver(chain)
        builder = Builder(chain)
        builder.commit()
        parent = builder.commit()
        driver._new_height()
        checks = count_vote_signatures(monkeypatch)
        following, _ = builder.block([])
        assert following.last_commit is not None and following.height == parent.height + 1
        assert driver._execute(following.encode(), following.hash()) is not None
        assert len(checks) == len(following.last_commit.signatures)
        await driver.stop()

    asyncio.run(scenario())


def test_what_the_driver_keeps_as_verified_is_bounded(chain: Chain) -> None:
    """At most PRECOMMITS_KEPT a height and PRECOMMIT_HEIGHTS_KEPT heights, and only of
    the engine's height and the next: a validator signing precommits for far heights or
    rounds makes the node verify more, never hold more."""

    async def scenario() -> None:
        driver = _driver(chain)
        driver._new_height()
        height = driver.engine.height
        key = node_hot_key(1)
        for offset in range(-2, 50):
            for round_ in range(3):
                vote = Vote.create(
                    key, chain.params.chain_id, VoteType.PRECOMMIT, height + offset, round_, b""
                )
                driver._note_precommit(vote)
        assert set(driver._precommits) <= {height, height + 1}
        assert len(driver._precommits) <= PRECOMMIT_HEIGHTS_KEPT
        template = Vote.create(key, chain.params.chain_id, VoteType.PRECOMMIT, height, 0, b"")
        for i in range(PRECOMMITS_KEPT + 10):
            driver._note_precommit(
                Vote(
                    VoteType.PRECOMMIT,
                    height,
                    i,
                    b"",
                    template.validator,
                    i.to_bytes(64, "big"),
                )
            )
        assert all(len(kept) <= PRECOMMITS_KEPT for kept in driver._precommits.values())
        # A new height drops the oldest sets past the bound.
        driver.engine.step(NewHeight(height + 1, chain.validators(), None, chain.validators()))
        driver._note_precommit(
            Vote.create(key, chain.params.chain_id, VoteType.PRECOMMIT, height + 2, 0, b"")
        )
        assert len(driver._precommits) <= PRECOMMIT_HEIGHTS_KEPT
        await driver.stop()

    asyncio.run(scenario())
