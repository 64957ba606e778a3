"""p2p25 3: an equivocating proposer's block that later votes point at reaches every honest
node, which commits it within a bound, and no honest node is punished for relaying it.

The byzantine proposer of (height 1, round 0) sends its block A to one honest validator X
and another block B of the same round to the two others, Y and Z, and prevotes B (and
precommits it, in one case). Y and Z keep B and relay it; X keeps A and drops B (an
equivocation's second block, no vote for it yet: not relayed, `Network.unrelayed`),
unless a vote for B reached it first. The votes for B (three of four prevotes) then reach
X: it must get B again, from its peers' consensus gossip or by block sync, and commit it.
Three real nodes on 127.0.0.1, in this process; the byzantine validator is raw peers
with its key.

Found: with full proposals X is sent B again (compact, not a duplicate of the full copy it
dropped) and commits in round 0. With compact ones, the first re-send (compact) was the
very frame X had dropped, discarded by its seen-cache, and B came with the next, full,
send 1.5 s later: too late for X's precommit (its prevote timeout is 1 s), so round 0
was lost and B committed in round 1. A peer whose ROUND_STATE shows another block of the
round now gets the full block at the first re-send (`ConsensusGossip.plan`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import pack
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Gossip, Kind
from p2p.peer import Peer
from p2p.peerbook import node_ban_key
from tests.integration.harness import Devnet
from tests.p2p.harness import node_raw_peer
from tests.support.chain import open_chain, proposer_reveal
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

# X's commit after Y's and Z's: a consensus-gossip re-send interval (RESEND_AFTER_MS,
# 1.5 s) and a block-sync turn, with room for a loaded box.
COMMIT_BOUND_S = 6.0
PROPOSAL_KINDS = (Kind.PROPOSAL, Kind.COMPACT_PROPOSAL)
KEYS = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]


def _two_blocks(tmp_path: Path, devnet: Devnet) -> tuple[Block, Block]:
    """Two distinct valid blocks of (height 1, round 0): one timestamp each."""
    builder = open_chain(tmp_path / "builder", devnet.genesis)
    blocks = []
    try:
        for n in range(2):
            block, execution, _ = builder.build_block(
                now_ms=devnet.genesis.genesis_time_ms + 1000 + n,
                round_=0,
                last_commit=None,
                candidates=[],
                reveal=proposer_reveal(builder, 0),
            )
            builder.abort(execution)
            blocks.append(block)
    finally:
        builder.close()
    return blocks[0], blocks[1]


def _punished(nodes: list[Node]) -> list[tuple[str, str, float]]:
    """Each honest validator that an honest node banned or scored points against."""
    honest = {n.key.public_key for n in nodes}
    out = [
        (n.config.moniker, p.peer_id[:12], p.score)
        for n in nodes
        for p in n.network.peers()
        if p.node_key in honest and p.score > 0
    ]
    out += [
        (n.config.moniker, key.hex()[:12], -1.0)
        for n in nodes
        for key in honest
        if n.network.book.is_banned(node_ban_key(key))
    ]
    return out


def _watch_frames(node: Node, block_hash: bytes, frames: list[tuple[str, Kind]]) -> None:
    """Note in `frames` each proposal frame of `block_hash` (full or compact) that reaches
    `node`'s network from now on, duplicates too: its sender's peer id, its kind."""
    received = node.network._relay.on_gossip

    def watched(peer: Peer, message: Gossip) -> None:
        if message.kind in PROPOSAL_KINDS and block_hash in message.payload:
            frames.append((peer.peer_id, message.kind))
        received(peer, message)

    node.network._relay.on_gossip = watched  # type: ignore[method-assign]


def _proposal(key: SigningKey, chain_id: str, block: Block, compact: bool) -> Gossip:
    """`key`'s proposal of `block` at (height 1, round 0), compact or full."""
    signed = Proposal.create(key, chain_id, 1, 0, -1, block.hash())
    if compact:
        return Gossip(Kind.COMPACT_PROPOSAL, encode_compact_proposal(signed, block))
    return Gossip(Kind.PROPOSAL, encode_proposal(signed, block.encode()))


def _vote(key: SigningKey, chain_id: str, vote_type: VoteType, block_hash: bytes) -> Gossip:
    signed = Vote.create(key, chain_id, vote_type, 1, 0, block_hash)
    return Gossip(Kind.VOTE, pack(signed.to_fields()))


def _note_commits(nodes: list[Node], committed_at: dict[int, float]) -> bool:
    """Note when each node is first seen at height 1; whether all are."""
    for i, node in enumerate(nodes):
        if i not in committed_at and node.chain.height >= 1:
            committed_at[i] = time.monotonic()
    return len(committed_at) == len(nodes)


@pytest.mark.parametrize(
    ("compact", "precommits"),
    [(False, True), (False, False), (True, False)],
    ids=["full_precommits", "full_prevote_only", "compact_prevote_only"],
)
def test_a_block_an_equivocator_sent_to_some_reaches_every_honest_node(
    tmp_path: Path, compact: bool, precommits: bool
) -> None:
    """`compact`: the byzantine proposer sends compact proposals (so Y and Z relay them
    compact); `precommits`: it precommits B too (else X's precommit is needed: X must get
    B within the round, not by block sync after the others commit)."""
    devnet = Devnet(tmp_path / "net")
    byzantine = next(
        k for k in KEYS if k.public_key == proposer(devnet.genesis.validator_set(), 1, 0)
    )
    chain_id = devnet.genesis.chain_id
    block_a, block_b = _two_blocks(tmp_path, devnet)
    nodes = [Node(Home(devnet.homes[i])) for i, k in enumerate(KEYS) if k is not byzantine]
    x, y, z = nodes

    def holds(node: Node, block: Block) -> bool:
        return node.driver.engine.proposal(0, block.hash()) is not None

    committed_at: dict[int, float] = {}
    frames: list[tuple[str, Kind]] = []
    times: dict[str, float] = {}
    hashes: list[bytes] = []
    rounds: list[int] = []
    dropped: list[bool] = []
    punished: list[tuple[str, str, float]] = []

    async def scenario() -> None:
        for node in nodes:
            await node.start()
        try:
            await wait_until_async(
                lambda: all(n.driver.engine.height == 1 for n in nodes), what="height 1"
            )
            _watch_frames(x, block_b.hash(), frames)
            async with node_raw_peer(x) as to_x, node_raw_peer(y) as to_y, node_raw_peer(z) as to_z:
                # At once, before X's relay of A can reach Y and Z.
                await to_x.send(_proposal(byzantine, chain_id, block_a, compact))
                for peer in (to_y, to_z):
                    await peer.send(_proposal(byzantine, chain_id, block_b, compact))
                await wait_until_async(
                    lambda: holds(x, block_a) and holds(y, block_b) and holds(z, block_b),
                    what="X keeps A, Y and Z keep B",
                )
                # Y and Z relay B; X, holding A, drops it unless a vote for B came first.
                await wait_until_async(lambda: bool(frames), what="B reaching X")
                await wait_until_async(x.driver._inbox.empty, what="X's driver queue drained")
                dropped.append(not holds(x, block_b))
                times["votes"] = time.monotonic()
                types = [VoteType.PREVOTE, VoteType.PRECOMMIT][: 2 if precommits else 1]
                for peer in (to_x, to_y, to_z):
                    for vote_type in types:
                        await peer.send(_vote(byzantine, chain_id, vote_type, block_b.hash()))
                await wait_until_async(
                    lambda: _note_commits(nodes, committed_at),
                    timeout=30.0,
                    poll_s=0.01,
                    what="every node at height 1",
                )
            hashes.extend(n.chain.get_block(1).hash() for n in nodes)
            commit = x.chain.get_commit(1)
            assert commit is not None
            rounds.append(commit.round)
            punished.extend(_punished(nodes))
        finally:
            for node in nodes:
                await node.stop()

    asyncio.run(scenario())

    late = committed_at[0] - max(committed_at[1], committed_at[2])
    votes_sent = times["votes"]
    # Each of Y and Z sent B first in its relay, then in its consensus gossip's re-sends.
    by_sender: dict[str, list[str]] = {}
    for sender, kind in frames:
        by_sender.setdefault(sender[:8], []).append(kind.name)
    first_resends = [kinds[1] for kinds in by_sender.values() if len(kinds) > 1]
    print(
        f"byzantine={KEYS.index(byzantine)} A={block_a.hash().hex()[:12]} "
        f"B={block_b.hash().hex()[:12]} committed={[h.hex()[:12] for h in hashes]} "
        f"in round {rounds}; X dropped B before the votes: {dropped}; frames of B at X by "
        f"sender: {by_sender}; commits, s after the votes: "
        f"{ {i: round(t - votes_sent, 2) for i, t in committed_at.items()} }; "
        f"X after Y and Z: {late:.2f}s; punished={punished}"
    )
    assert hashes == [block_b.hash()] * 3, "every honest node commits B"
    assert not punished, f"honest nodes punished: {punished}"
    assert late <= COMMIT_BOUND_S, (
        f"X committed B {late:.2f}s after Y and Z (bound {COMMIT_BOUND_S}s)"
    )
    if compact and dropped == [True]:
        # X needed B from a re-send: the first one must carry it. A compact copy of a
        # compact proposal it dropped is a duplicate there, discarded before its engine
        # sees it (a full one it dropped is not marked: `Network.unrelayed`).
        assert "PROPOSAL" in first_resends, (
            f"the first re-sends of B to X were {first_resends}: compact copies X had dropped "
            "already, so B came a re-send round later"
        )
