"""Attacks on votes relayed to a few peers (issue 22, wan22i): review rev10.

A relayed vote goes to `relay_fanout[VOTE]` peers at random (1 since wan23v, 4 before); a
peer the relay skipped is to get it from consensus gossip. These tests hold the node to
that on a real node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import CONSENSUS_GOSSIP_S, RESEND_AFTER_MS, Node
from p2p.limits import default_relay_fanout
from p2p.messages import Gossip, Kind, ProposalTxs, RoundState
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import (
    SENT_BEFORE,
    _asked,
    _proposed_block,
)
from tests.p2p.harness import RawPeer
from tests.support.chain import open_chain
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

FANOUT = default_relay_fanout()[Kind.VOTE]
OTHERS = FANOUT + 3  # peers besides the vote's sender: three more than the relay picks
# Likewise for a compact proposal, whose fan-out is larger.
COMPACT_OTHERS = default_relay_fanout()[Kind.COMPACT_PROPOSAL] + 3


async def _gossip_seen(peer: RawPeer, wanted: tuple[bytes, ...], deadline_s: float) -> float | None:
    """Seconds until `peer` receives a gossip payload of `wanted` (None: not by the deadline)."""
    start = time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline_s):
            while True:
                message = await peer.receive(timeout=deadline_s)
                if isinstance(message, Gossip) and message.payload in wanted:
                    return time.monotonic() - start
    return None


async def _connect_peers(node: Node, count: int) -> list[RawPeer]:
    """`count` raw peers accepted by `node`, each from its own address group (so that no
    inbound limit applies); the caller closes them."""
    address = f"127.0.0.1:{node.config.p2p_port}"
    peers: list[RawPeer] = []
    try:
        for i in range(count):
            peer = await RawPeer.connect(address, local_ip=f"127.{i + 1}.0.1")
            peers.append(peer)
            await peer.handshake(
                chain_id=node.genesis.chain_id, genesis_hash=node.chain.genesis_hash
            )
        ids = {peer.id for peer in peers}
        await wait_until_async(
            lambda: ids <= {p.peer_id for p in node.network.peers()},
            what="every raw peer connected",
        )
    except BaseException:
        for peer in peers:
            await peer.close()
        raise
    return peers


async def _announce(node: Node, peers: list[RawPeer], state: RoundState) -> None:
    """Each of `peers` announces `state`; back once the node adopted every one."""
    for peer in peers:
        await peer.send(state)
    await wait_until_async(
        lambda: all(node.consensus_gossip.peer(p.id).height == state.height for p in peers),
        what="the peers' round states adopted",
    )


def test_a_relayed_vote_reaches_the_peers_its_fanout_skipped_within_a_few_gossip_ticks(
    tmp_path: Path,
) -> None:
    """The attack: Sybil peers (free node keys, one per /16) fill a validator's sentry's
    peer list; a vote relayed to a few of them at random mostly lands on Sybils, which never
    pass it on. The honest peers the relay skipped announced that they lack it. Before,
    `Node._flooded` marked every peer as sent the vote, so consensus gossip held it back
    from them for RESEND_AFTER_MS (1.5 s) on every relay hop of every vote. Now they are
    held back only RELAYED_HOLD_MS (600 ms), then consensus gossip sends it."""
    devnet = Devnet(tmp_path)
    node = Node(Home(devnet.homes[0]))
    deadline_s = RESEND_AFTER_MS / 1000 - 5 * CONSENSUS_GOSSIP_S  # well within a resend

    async def scenario() -> None:
        await node.start()
        peers = await _connect_peers(node, OTHERS + 1)
        try:
            chain_id = node.genesis.chain_id
            sender, others = peers[0], peers[1:]
            round_ = node.driver.round
            # Every other peer says where it is and that it holds no vote of the round.
            await _announce(node, others, RoundState(1, round_, 2, b"", ()))
            validator = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))
            vote = Vote.create(validator, chain_id, VoteType.PREVOTE, 1, round_, NIL)
            payload = pack(vote.to_fields())
            await sender.send(Gossip(Kind.VOTE, payload))
            seen = await asyncio.gather(*(_gossip_seen(p, (payload,), deadline_s) for p in others))
            late = [i for i, s in enumerate(seen) if s is None]
            assert not late, (
                f"{len(late)} of {OTHERS} peers lacking the vote did not get it within"
                f" {deadline_s:.1f}s (relay fan-out {FANOUT}); arrival times: {seen}"
            )
        finally:
            for peer in peers:
                await peer.close()
            await node.stop()

    asyncio.run(scenario())


def test_a_compact_proposal_relayed_after_a_fetch_reaches_the_peers_its_fanout_skipped(
    tmp_path: Path,
) -> None:
    """The same attack on a compact proposal relayed after its missing txs were fetched:
    it goes to `relay_fanout[COMPACT_PROPOSAL]` (4) peers, and the peers the fan-out
    skipped, which announced that they lack the proposal, waited the full RESEND_AFTER_MS
    (half the propose timeout) for the compact or the full proposal. Now consensus gossip
    sends it to them after RELAYED_HOLD_MS.

    Round 0, which the node's engine is in (and stays in, alone of four validators), so
    that its consensus gossip offers the proposal; the node is a validator that does not
    propose it."""
    devnet = Devnet(tmp_path / "net")
    validators = open_chain(tmp_path / "look", devnet.genesis)
    try:
        chosen = proposer(validators.validators(), 1, 0)
    finally:
        validators.close()
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    proposer_key = next(k for k in keys if k.public_key == chosen)
    home = next(i for i, k in enumerate(keys) if k.public_key != chosen)
    node = Node(Home(devnet.homes[home]))
    block, txs = _proposed_block(tmp_path, devnet, 0)
    deadline_s = RESEND_AFTER_MS / 1000 - 5 * CONSENSUS_GOSSIP_S

    async def scenario() -> None:
        await node.start()
        peers = await _connect_peers(node, COMPACT_OTHERS + 1)
        try:
            for tx in txs[:SENT_BEFORE]:
                node.service.submit(tx.raw)
            proposal = Proposal.create(proposer_key, node.genesis.chain_id, 1, 0, -1, block.hash())
            compact = encode_compact_proposal(proposal, block)
            full = encode_proposal(proposal, block.encode())
            sender, others = peers[0], peers[1:]
            # At the proposal's round, without it.
            await _announce(node, others, RoundState(1, 0, 1, b"", ()))
            await sender.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            request = await _asked(sender)
            await sender.send(
                ProposalTxs(request.request_id, tuple(tx.raw for tx in txs[SENT_BEFORE:]))
            )
            seen = await asyncio.gather(
                *(_gossip_seen(p, (compact, full), deadline_s) for p in others)
            )
            late = [i for i, s in enumerate(seen) if s is None]
            assert not late, (
                f"{len(late)} of {COMPACT_OTHERS} peers lacking the proposal got neither the"
                f" compact nor the full proposal within {deadline_s:.1f}s; arrival times: {seen}"
            )
        finally:
            for peer in peers:
                await peer.close()
            await node.stop()

    asyncio.run(scenario())
