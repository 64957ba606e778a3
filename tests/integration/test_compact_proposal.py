"""Compact proposals on a real node (issue 22): a node that lacks some of a compact
proposal's txs asks the peer that sent it, and hands consensus the rebuilt block once
they come; a peer that never answers costs the node at most PROPOSAL_TXS_TIMEOUT_S, after
which the full block (what consensus gossip sends a node whose ROUND_STATE lacks the
proposal) is taken as before."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from consensus.events import ProposalReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.driver import DriverInput, encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import PROPOSAL_TXS_TIMEOUT_S, Node
from p2p.messages import GetProposalTxs, Gossip, Kind, ProposalTxs
from tests.integration.harness import Devnet
from tests.p2p.harness import RawPeer, node_raw_peer
from tests.support.chain import open_chain, proposer_reveal
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path

ROUND = 50  # far ahead, so that the node's own engine is not in it yet (it refuses it)
KEPT_ROUND = 1  # the round after the engine's: kept, hence relayed
TXS = 6
SENT_BEFORE = 2  # txs the node admitted before the proposal came


def _proposed_block(tmp_path: Path, devnet: Devnet, round_: int = ROUND) -> tuple[Block, list[Tx]]:
    """A valid block of (height 1, `round_`) holding TXS transfers, built on a copy."""
    sender = derive_key(INSECURE_TEST_MNEMONIC, account_path(4))
    chain_id = devnet.genesis.chain_id
    txs = [
        Tx.create(sender, chain_id, n, 5_000, Transfer(bytes([n + 1]) * 20, COIN, b"m" * 300))
        for n in range(TXS)
    ]
    builder = open_chain(tmp_path / "builder", devnet.genesis)
    try:
        block, execution, rejected = builder.build_block(
            now_ms=devnet.genesis.genesis_time_ms + 1000,
            round_=round_,
            last_commit=None,
            candidates=txs,
            reveal=proposer_reveal(builder, round_),
        )
        builder.abort(execution)
    finally:
        builder.close()
    assert rejected == [] and len(block.txs) == TXS
    return block, txs


def _another_validators_proposal(
    tmp_path: Path, devnet: Devnet
) -> tuple[Node, Proposal, Block, list[Tx]]:
    """The node of a validator that does not propose (height 1, round 0), not started, and
    that round's proposal of a block of TXS transfers, signed by its proposer."""
    block, txs = _proposed_block(tmp_path, devnet, round_=0)
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    index = next(i for i in range(4) if keys[i].public_key != block.header.proposer)
    signer = next(k for k in keys if k.public_key == block.header.proposer)
    proposal = Proposal.create(signer, devnet.genesis.chain_id, 1, 0, -1, block.hash())
    return Node(Home(devnet.homes[index])), proposal, block, txs


_HANDED: weakref.WeakKeyDictionary[Node, list[ProposalReceived]] = weakref.WeakKeyDictionary()


def watch_handed(node: Node) -> list[ProposalReceived]:
    """The proposals (with their blocks) handed to `node`'s consensus driver from now on,
    each time one is (the WAL would log each once only, and none the engine refuses)."""
    handed = _HANDED.get(node)
    if handed is not None:
        return handed
    handed = _HANDED[node] = []
    submit = node.driver.submit

    def watched(item: DriverInput) -> None:
        if isinstance(item, ProposalReceived):
            handed.append(item)
        submit(item)

    node.driver.submit = watched  # type: ignore[method-assign]
    return handed


def _received(node: Node, block_hash: bytes) -> list[bytes]:
    """The block bytes `node`'s consensus driver was handed with a proposal of
    `block_hash` since `watch_handed(node)`, each time."""
    handed = _HANDED.get(node)
    assert handed is not None, "watch_handed(node) before the proposal is sent"
    return [item.block_bytes for item in handed if item.proposal.block_hash == block_hash]


async def _asked(peer: RawPeer, timeout: float = 5.0, why: str = "") -> GetProposalTxs:
    """The node's next request to `peer` for a proposal's txs; fails, saying `why`, if
    none comes within `timeout`."""
    try:
        request: GetProposalTxs = await peer.receive_kind(GetProposalTxs, timeout=timeout)
    except TimeoutError:
        raise AssertionError(why or f"no request for txs within {timeout} s") from None
    return request


def test_a_compact_proposal_is_rebuilt_with_the_txs_fetched_from_its_sender(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, txs, compact),
            _raw_peer(node) as sender,
        ):
            # Not relayed: it needed a request.
            assert await node.on_gossip(sender.id, Kind.COMPACT_PROPOSAL, compact) is False
            request = await _asked(sender)
            assert request.block_hash == block.hash()
            assert request.ids() == [tx.id for tx in txs[SENT_BEFORE:]]
            assert not _received(node, block.hash())
            await _rebuilt_from(
                sender, request.request_id, node, block, txs, "the rebuilt block in consensus"
            )
            # And the node serves the txs it holds to a peer rebuilding the same block
            # (what it admitted; none at all if it lacks one of those asked for).
            admitted = [tx.id for tx in txs[:SENT_BEFORE]]
            await sender.send(GetProposalTxs(9, block.hash(), b"".join(admitted)))
            served = await sender.receive_kind(ProposalTxs)
            assert served == ProposalTxs(9, tuple(tx.raw for tx in txs[:SENT_BEFORE]))
            unknown = sha256(b"a tx nobody has")
            await sender.send(GetProposalTxs(10, block.hash(), admitted[0] + unknown))
            assert await sender.receive_kind(ProposalTxs) == ProposalTxs(10, ())
            assert all(p.score == 0 for p in node.network.peers())

    asyncio.run(scenario())


def test_a_sender_that_never_answers_leaves_the_node_to_the_full_block_in_time(
    tmp_path: Path,
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    # A round the engine keeps, so that the full block taken is relayed on.
    block, _txs = _proposed_block(tmp_path, devnet, KEPT_ROUND)

    async def scenario() -> None:
        await node.start()
        try:
            watch_handed(node)
            key = _proposer_key(node, KEPT_ROUND)
            proposal = Proposal.create(
                key, devnet.genesis.chain_id, 1, KEPT_ROUND, -1, block.hash()
            )
            async with node_raw_peer(node) as silent:
                compact = encode_compact_proposal(proposal, block)
                started = time.monotonic()
                assert await node.on_gossip(silent.id, Kind.COMPACT_PROPOSAL, compact) is False
                await _asked(silent)  # and never answered
                await wait_until_async(
                    lambda: not node._rebuilding, timeout=PROPOSAL_TXS_TIMEOUT_S + 3.0,
                    what="the fetch given up",
                )  # fmt: skip
                assert time.monotonic() - started >= PROPOSAL_TXS_TIMEOUT_S
                assert not _received(node, block.hash())
                # The fallback: the full PROPOSAL (consensus gossip's) is taken as ever.
                full = encode_proposal(proposal, block.encode())
                assert await node.on_gossip(silent.id, Kind.PROPOSAL, full) is True
                await wait_until_async(
                    lambda: bool(_received(node, block.hash())),
                    what="the full block in consensus",
                )
        finally:
            await node.stop()

    asyncio.run(scenario())


def _proposer_key(node: Node, round_: int = ROUND) -> SigningKey:
    """The devnet validator key that proposes (height 1, `round_`)."""
    chosen = proposer(node.chain.validators(), 1, round_)
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    return next(k for k in keys if k.public_key == chosen)


def test_txs_asked_of_a_held_block_are_served_from_it_decoding_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer rebuilding our proposal's block asks for txs we never admitted (they came
    inside the block): they are served from the block the engine holds. Asked again and
    again (20 requests a second are allowed), the block is indexed once, not decoded per
    request: the answer must not turn a node into a CPU amplifier."""
    devnet = Devnet(tmp_path / "net")
    block, txs = _proposed_block(tmp_path, devnet, round_=0)
    chain_id = devnet.genesis.chain_id
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    # A node that does not propose round 0, so that the proposal is another's.
    index = next(i for i in range(4) if keys[i].public_key != block.header.proposer)
    node = Node(Home(devnet.homes[index]))
    decoded: list[int] = []
    real_decode = Block.decode

    def counting_decode(raw: bytes, max_bytes: int, max_txs: int) -> Block:
        decoded.append(len(raw))
        return real_decode(raw, max_bytes, max_txs)

    async def scenario() -> None:
        await node.start()
        try:
            signer = next(k for k in keys if k.public_key == block.header.proposer)
            proposal = Proposal.create(signer, chain_id, 1, 0, -1, block.hash())
            async with node_raw_peer(node) as peer:
                full = encode_proposal(proposal, block.encode())
                await node.on_gossip(peer.id, Kind.PROPOSAL, full)
                await wait_until_async(
                    lambda: any(p == proposal for p, _ in node.driver.proposals_held.values()),
                    what="the proposal held by the engine",
                )
                monkeypatch.setattr(Block, "decode", staticmethod(counting_decode))
                ids = b"".join(tx.id for tx in txs)
                for request_id in range(10):
                    await peer.send(GetProposalTxs(request_id, block.hash(), ids))
                    answer = await peer.receive_kind(ProposalTxs)
                    assert answer == ProposalTxs(request_id, tuple(tx.raw for tx in txs))
                assert decoded == [len(block.encode())]
        finally:
            monkeypatch.undo()
            await node.stop()

    asyncio.run(scenario())


def _raw_peer(node: Node) -> AbstractAsyncContextManager[RawPeer]:
    """A raw peer connected to `node` and accepted by it."""
    return node_raw_peer(node)


def _compact_of(node: Node, devnet: Devnet, block: Block, round_: int = ROUND) -> bytes:
    """The compact proposal of `block` at height 1, `round_`, signed by its proposer."""
    proposal = Proposal.create(
        _proposer_key(node, round_), devnet.genesis.chain_id, 1, round_, -1, block.hash()
    )
    return encode_compact_proposal(proposal, block)


@contextlib.asynccontextmanager
async def _missing_txs(
    tmp_path: Path, round_: int = ROUND
) -> AsyncIterator[tuple[Node, Block, list[Tx], bytes]]:
    """A started node of a fresh devnet, holding the first SENT_BEFORE txs of a block
    proposed for `round_`, with that block's compact proposal (the rest of its txs must be
    fetched); what its driver is handed is watched (`watch_handed`)."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet, round_)
    await node.start()
    try:
        watch_handed(node)
        for tx in txs[:SENT_BEFORE]:
            node.service.submit(tx.raw)
        yield node, block, txs, _compact_of(node, devnet, block, round_)
    finally:
        await node.stop()


async def _rebuilt_from(
    peer: RawPeer, request_id: int, node: Node, block: Block, txs: list[Tx], what: str
) -> None:
    """`peer` answers the node's request with the txs it lacked; return once the rebuilt
    block reached consensus, once, as the very bytes its proposer built."""
    await peer.send(ProposalTxs(request_id, tuple(tx.raw for tx in txs[SENT_BEFORE:])))
    await wait_until_async(lambda: bool(_received(node, block.hash())), what=what)
    assert _received(node, block.hash()) == [block.encode()]


async def _gossip_of(peer: RawPeer, kind: Kind, payload: bytes, timeout: float = 5.0) -> Gossip:
    """The next gossip frame of `kind` carrying `payload` that the node sends `peer`
    (skipping its own votes, proposals and round states)."""
    async with asyncio.timeout(timeout):
        while True:
            message: Gossip = await peer.receive_kind(Gossip, timeout)
            if message.kind is kind and message.payload == payload:
                return message


def test_a_compact_proposal_rebuilt_after_a_fetch_is_relayed_on(tmp_path: Path) -> None:
    """A node that had to fetch some of a compact proposal's txs relays the compact
    proposal once the block is rebuilt, as it relays one it rebuilt at once (before,
    it did not: its peers had it only from the proposer or by consensus gossip)."""

    async def scenario() -> None:
        # A round the engine keeps: one it refuses for now is not relayed (rev23a 1).
        async with (
            _missing_txs(tmp_path, KEPT_ROUND) as (node, block, txs, compact),
            _raw_peer(node) as sender,
            _raw_peer(node) as bystander,
        ):
            await sender.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            request = await _asked(sender)
            await _rebuilt_from(
                sender, request.request_id, node, block, txs, "the rebuilt block in consensus"
            )
            # On to the peer that did not send it: the same compact proposal.
            await _gossip_of(bystander, Kind.COMPACT_PROPOSAL, compact)

    asyncio.run(scenario())


def test_a_failed_fetch_is_retried_with_another_peer_that_announced_the_proposal(
    tmp_path: Path,
) -> None:
    """The peer that sent a compact proposal answers that it lacks the txs: the node asks
    another peer that sent it the same compact proposal, and rebuilds the block from its
    answer, instead of waiting for the full block (before: the first failure was final)."""

    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, txs, compact),
            _raw_peer(node) as first,
            _raw_peer(node) as second,
        ):
            await first.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            request = await _asked(first)
            # The second copy is a duplicate: not handed to the node again, but noted.
            await second.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            await wait_until_async(
                lambda: second.id in node.network.gossip_senders(Kind.COMPACT_PROPOSAL, compact),
                what="the second copy noted",
            )
            await first.send(ProposalTxs(request.request_id, ()))  # "I lack them"
            retried = await _asked(second)
            assert retried.block_hash == block.hash()
            assert retried.ids() == [tx.id for tx in txs[SENT_BEFORE:]]
            await _rebuilt_from(
                second,
                retried.request_id,
                node,
                block,
                txs,
                "the block rebuilt from the second peer's txs",
            )
            assert all(p.score == 0 for p in node.network.peers())

    asyncio.run(scenario())


def test_a_node_whose_rebuild_failed_pulls_the_txs_from_a_later_compact_copy(
    tmp_path: Path,
) -> None:
    """Liveness without the full block (issue 22, wan15b: consensus gossip sends a peer
    that still lacks a proposal compact copies, the full block from one holder only).
    Every source of a rebuild failed, so the node forgot the compact proposal; the next
    compact copy, from a peer holding the block, starts a new rebuild that asks that peer,
    and the block reaches consensus with no PROPOSAL frame at all."""

    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, txs, compact),
            _raw_peer(node) as first,
            _raw_peer(node) as holder,
        ):
            await first.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            request = await _asked(first)
            await first.send(ProposalTxs(request.request_id, ()))  # "I lack them"
            await wait_until_async(lambda: not node._rebuilding, what="the rebuild given up")
            assert not _received(node, block.hash())
            await holder.send(Gossip(Kind.COMPACT_PROPOSAL, compact))  # gossip's resend
            asked = await _asked(holder)
            assert asked.ids() == [tx.id for tx in txs[SENT_BEFORE:]]
            await _rebuilt_from(
                holder,
                asked.request_id,
                node,
                block,
                txs,
                "the block rebuilt from the later copy's sender",
            )

    asyncio.run(scenario())


def test_a_proposer_sends_the_txs_it_just_admitted_ahead_of_its_compact_proposal(
    tmp_path: Path,
) -> None:
    """Txs a proposer admitted within TXS_GOSSIP_WAIT_S of proposing were only in its
    block: every validator had to ask it for them before checking the proposal (issue
    22, wan15b). They now leave in a TXS frame just before the compact proposal, on the
    same link, so a peer has them when it reads the proposal."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet)

    async def scenario() -> None:
        await node.start()
        try:
            async with _raw_peer(node) as peer:
                proposal = Proposal.create(
                    _proposer_key(node), devnet.genesis.chain_id, 1, ROUND, -1, block.hash()
                )
                node.service.submit(txs[0].raw)  # its TXS frame would wait TXS_GOSSIP_WAIT_S
                node.broadcast_proposal(encode_proposal(proposal, block.encode()))
                kinds = []
                while Kind.COMPACT_PROPOSAL not in kinds:
                    message: Gossip = await peer.receive_kind(Gossip)
                    kinds.append(message.kind)
                assert kinds.index(Kind.TXS) < kinds.index(Kind.COMPACT_PROPOSAL)
        finally:
            await node.stop()

    asyncio.run(scenario())
