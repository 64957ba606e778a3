"""Red team red23a: a vote of a committed height costs the node a signature check.

`Node._on_vote` checks a gossiped vote's signature (`vote.verify`, ~50 µs on this box)
before it looks at its height, and only then drops a vote of a height at or below the
chain's as "old news", with no punishment (a slow honest peer may send one). The height
test is a comparison: it could come first.

Old votes are free to an attacker and never run out: every committed block's commit is
a set of real precommits with valid signatures (~14 a height on a devnet), served to
anyone by GET_BLOCKS, so a peer holds as many distinct ones as the chain has heights.
Each VOTE frame carries a distinct one (no duplicate suppression applies), at the VOTE
rate (2,000 a second, 4,000 at once, a peer) and in BATCH frames: ~0.1 s of the event
loop's CPU each second per connection, the node's consensus included, unpunished and
unbounded in time; a few connections take a core. For txs the same was fixed (a spent
nonce or a committed copy is refused before its signature check, security.md, vstore22).

The fix belongs in `Node._on_vote`: refuse `vote.height <= self.chain.height` before
`vote.verify` (the "old news" branch does not need the signature).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from fluxchain.core.encoding import pack
from fluxchain.core.votes import Commit, Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.support.calls import count_vote_signatures
from tests.support.chain import Builder, NoGossip, node_hot_key


def _precommits(commit: Commit) -> list[Vote]:
    return [
        Vote(VoteType.PRECOMMIT, commit.height, commit.round, commit.block_hash, key, signature)
        for key, signature in commit.signatures
    ]


def test_a_vote_of_a_committed_height_is_dropped_before_its_signature_is_checked(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        builder = Builder(chain)
        for _ in range(3):
            builder.commit()
        commits = [chain.get_commit(height) for height in range(1, chain.height + 1)]
        old = [vote for commit in commits if commit is not None for vote in _precommits(commit)]
        assert old and all(vote.verify(chain.params.chain_id) for vote in old)
        driver = Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip())
        driver._new_height()
        punished: list[str] = []
        host = SimpleNamespace(
            driver=driver,
            chain=chain,
            genesis=SimpleNamespace(chain_id=chain.params.chain_id),
            network=SimpleNamespace(punish=lambda peer_id, points, reason: punished.append(reason)),
        )
        host._on_vote = lambda *args: Node._on_vote(host, *args)  # type: ignore[arg-type]
        checked = count_vote_signatures(monkeypatch)
        relayed = [
            await Node.on_gossip(host, "02" + "11" * 32, Kind.VOTE, pack(vote.to_fields()))  # type: ignore[arg-type]
            for vote in old
        ]
        print(f"old votes={len(old)} signatures checked={len(checked)} punished={punished}")
        assert not any(relayed) and punished == []
        assert checked == [], (
            f"{len(checked)} of {len(old)} votes of committed heights (old news, dropped "
            "unpunished) had their signatures checked first"
        )
        await driver.stop()

    asyncio.run(scenario())
