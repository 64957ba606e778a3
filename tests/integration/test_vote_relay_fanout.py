"""Attacks on votes relayed to a few peers (issue 22, wan22i): review rev10.

A relayed vote goes to `relay_fanout[VOTE]` (4) peers at random; a peer the relay skipped
is to get it from consensus gossip. These tests hold the node to that on a real node.
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


def test_a_relayed_vote_reaches_the_peers_its_fanout_skipped_within_a_few_gossip_ticks(
    tmp_path: Path,
) -> None:
    """The attack: sybil peers (free node keys, one per /16) fill a validator's sentry's
    peer list; a vote relayed to 4 of them at random mostly lands on sybils, which never
    pass it on. The honest peers the relay skipped should get it from consensus gossip at
    its next tick (CONSENSUS_GOSSIP_S): they announced that they lack it, and nobody sent
    it to them. But `Node._flooded` marks every peer as sent the vote when the relay
    sent it to 4, so consensus gossip holds it back from the skipped ones for
    RESEND_AFTER_MS (1.5 s): each relay hop of each vote costs them 1.5 s (it was
    flooded to every peer before the fan-out, at once)."""
    devnet = Devnet(tmp_path)
    node = Node(Home(devnet.homes[0]))
    deadline_s = RESEND_AFTER_MS / 1000 - 5 * CONSENSUS_GOSSIP_S  # well within a resend

    async def scenario() -> None:
        await node.start()
        peers: list[RawPeer] = []
        try:
            chain_id = node.genesis.chain_id
            address = f"127.0.0.1:{node.config.p2p_port}"
            for i in range(OTHERS + 1):  # one address group each: no inbound limit applies
                peer = await RawPeer.connect(address, local_ip=f"127.{i + 1}.0.1")
                peers.append(peer)
                await peer.handshake(chain_id=chain_id, genesis_hash=node.chain.genesis_hash)
            ids = {peer.id for peer in peers}
            await wait_until_async(
                lambda: ids <= {p.peer_id for p in node.network.peers()},
                what="every raw peer connected",
            )
            sender, others = peers[0], peers[1:]
            round_ = node.driver.round
            # Every other peer says where it is and that it holds no vote of the round.
            for peer in others:
                await peer.send(RoundState(1, round_, 2, b"", ()))
            await wait_until_async(
                lambda: all(node.consensus_gossip.peer(p.id).height == 1 for p in others),
                what="the peers' round states adopted",
            )
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
    """The same hole on the path wan22i added: a compact proposal whose missing txs were
    fetched is now relayed, to `relay_fanout[COMPACT_PROPOSAL]` (4) peers, and
    `_take_proposal` marks every peer as sent it (`_flooded`). The peers the fan-out
    skipped announced that they lack the proposal, yet neither the compact proposal nor
    the full one (consensus gossip) reaches them for RESEND_AFTER_MS (1.5 s, half the
    propose timeout). Before the change the node relayed nothing after a fetch, marked
    nobody, and its consensus gossip sent them the full proposal at its next tick.

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
        peers: list[RawPeer] = []
        try:
            for tx in txs[:SENT_BEFORE]:
                node.service.submit(tx.raw)
            chain_id = node.genesis.chain_id
            proposal = Proposal.create(proposer_key, chain_id, 1, 0, -1, block.hash())
            compact = encode_compact_proposal(proposal, block)
            full = encode_proposal(proposal, block.encode())
            address = f"127.0.0.1:{node.config.p2p_port}"
            for i in range(OTHERS + 1):
                peer = await RawPeer.connect(address, local_ip=f"127.{i + 1}.0.1")
                peers.append(peer)
                await peer.handshake(chain_id=chain_id, genesis_hash=node.chain.genesis_hash)
            ids = {peer.id for peer in peers}
            await wait_until_async(
                lambda: ids <= {p.peer_id for p in node.network.peers()},
                what="every raw peer connected",
            )
            sender, others = peers[0], peers[1:]
            for peer in others:  # at the proposal's round, without it
                await peer.send(RoundState(1, 0, 1, b"", ()))
            await wait_until_async(
                lambda: all(node.consensus_gossip.peer(p.id).height == 1 for p in others),
                what="the peers' round states adopted",
            )
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
                f"{len(late)} of {OTHERS} peers lacking the proposal got neither the compact"
                f" nor the full proposal within {deadline_s:.1f}s; arrival times: {seen}"
            )
        finally:
            for peer in peers:
                await peer.close()
            await node.stop()

    asyncio.run(scenario())
