"""Compact proposals' request frames (issue 22): GET_PROPOSAL_TXS asks the peer that sent
a compact proposal for the txs its receiver lacks, PROPOSAL_TXS answers. They round-trip
and are bounded; over a real link the txs come back in the order asked; and an answer
is never trusted: txs that do not hash to the ids asked for, another number of txs, or
an answer nobody asked for fail the request and cost the sender points, and a peer that
never answers fails it at its timeout (the node then falls back to the full block)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from p2p.errors import FrameError, P2PError, PeerReason
from p2p.limits import POINTS_BAD_RESPONSE, POINTS_UNSOLICITED
from p2p.messages import (
    MAX_PROPOSAL_TXS_PER_REQUEST,
    GetProposalTxs,
    Message,
    ProposalTxs,
    decode,
    encode,
)
from p2p.network import Network
from p2p.peerbook import MemoryPeerStore
from tests.p2p.harness import (
    CHAIN_ID,
    GENESIS_HASH,
    RawPeer,
    RecordingHost,
    fast_limits,
    raw_peer,
    run,
)
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

BLOCK = sha256(b"proposed block")
TXS = [b"tx-%d" % i * 40 for i in range(5)]
IDS = [sha256(tx) for tx in TXS]
TIMEOUT_S = 0.5  # of a request to a peer that never answers
SAMPLES: list[Message] = [
    GetProposalTxs(1, BLOCK, b"".join(IDS)),
    ProposalTxs(1, tuple(TXS)),
    ProposalTxs(2, ()),  # "I do not hold them all"
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_proposal_tx_frames_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


def test_a_request_for_a_million_tx_ids_is_refused_at_decoding() -> None:
    """An attacker asking for a million txs (32 MB of ids) to make a node read and send
    its whole mempool: the frame is refused before anything is looked up."""
    million = GetProposalTxs(1, BLOCK, sha256(b"x") * 1_000_000)
    with pytest.raises(FrameError) as caught:
        decode(encode(million))
    assert caught.value.reason in (PeerReason.TOO_LARGE, PeerReason.BAD_FIELD)
    one_over = GetProposalTxs(1, BLOCK, sha256(b"x") * (MAX_PROPOSAL_TXS_PER_REQUEST + 1))
    with pytest.raises(FrameError) as caught:
        decode(encode(one_over))
    assert caught.value.reason is PeerReason.BAD_FIELD
    for ragged in (b"", b"\x01" * 33):  # no id, or not whole ids
        with pytest.raises(FrameError) as caught:
            decode(encode(GetProposalTxs(1, BLOCK, ragged)))
        assert caught.value.reason is PeerReason.BAD_FIELD
    too_many = ProposalTxs(1, (b"t",) * (MAX_PROPOSAL_TXS_PER_REQUEST + 1))
    with pytest.raises(FrameError):
        decode(encode(too_many))
    assert decode(encode(GetProposalTxs(1, BLOCK, IDS[0] * MAX_PROPOSAL_TXS_PER_REQUEST)))


class Source:
    """A host that holds TXS (of BLOCK) and nothing else."""

    def __init__(self) -> None:
        self.asked: list[tuple[bytes, list[bytes]]] = []

    def proposal_txs(self, block_hash: bytes, tx_ids: list[bytes]) -> list[bytes] | None:
        self.asked.append((block_hash, tx_ids))
        held = {sha256(tx): tx for tx in TXS}
        txs = [held.get(tx_id) for tx_id in tx_ids]
        return None if None in txs else [tx for tx in txs if tx is not None]


def _network(source: Source | None = None, **limits: float) -> Network:
    return Network(
        RecordingHost(),
        SigningKey.generate(),
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS_HASH,
        limits=fast_limits(**limits),
        store=MemoryPeerStore(),
        proposal_txs=source,
    )


def test_the_txs_a_compact_proposal_lacks_are_served_in_the_order_asked() -> None:
    async def scenario() -> None:
        source = Source()
        server, client = _network(source), _network()
        await server.start()
        await client.start()
        try:
            peer = await client.connect(server.listen_address)
            asked = [IDS[4], IDS[1], IDS[2]]
            got = await client.request_proposal_txs(peer, BLOCK, asked, timeout=3)
            assert got == [TXS[4], TXS[1], TXS[2]]
            assert source.asked == [(BLOCK, asked)]
            # One it does not hold: an empty answer, no fault of the peer's.
            with pytest.raises(P2PError) as caught:
                await client.request_proposal_txs(peer, BLOCK, [IDS[0], sha256(b"?")], timeout=3)
            assert caught.value.reason is PeerReason.NOT_HELD
            assert next(p for p in client.peers() if p.peer_id == peer).score == 0
            # A node that serves no proposal txs answers none.
            with pytest.raises(P2PError) as caught:
                await server.request_proposal_txs(client.node_id, BLOCK, IDS, timeout=3)
            assert caught.value.reason is PeerReason.NOT_HELD
        finally:
            await client.stop()
            await server.stop()

    run(scenario)


async def _asked(
    client: Network, server: RawPeer, ids: list[bytes]
) -> tuple[asyncio.Future[list[bytes]], GetProposalTxs]:
    task = asyncio.ensure_future(client.request_proposal_txs(server.id, BLOCK, ids, timeout=3))
    request = await server.receive_kind(GetProposalTxs)
    assert request.ids() == ids and request.block_hash == BLOCK
    return task, request


def test_txs_answered_that_do_not_hash_to_the_ids_asked_are_refused_and_scored() -> None:
    """A lying peer answers other txs than asked (or in another order, or fewer): the
    request fails as bad_response before the host sees a byte, and the peer pays."""

    async def scenario() -> None:
        client = _network(score_decay_per_second=0)
        await client.start()
        lies = [
            (TXS[0], b"not tx 1"),  # a tx that hashes to no id asked for
            (TXS[1], TXS[0]),  # the right txs, in the wrong order
            (TXS[0],),  # fewer than asked
        ]
        try:
            for answer in lies:  # one liar each: two such answers get a peer banned
                async with raw_peer(client.listen_address) as server:
                    await server.handshake()
                    await wait_until_async(
                        lambda: server.id in {p.peer_id for p in client.peers()}, what="peer in"
                    )
                    task, request = await _asked(client, server, IDS[:2])
                    await server.send(ProposalTxs(request.request_id, answer))
                    with pytest.raises(P2PError) as caught:
                        await task
                    assert caught.value.reason is PeerReason.BAD_RESPONSE
                    scored = next(p for p in client.peers() if p.peer_id == server.id).score
                    assert scored >= POINTS_BAD_RESPONSE - 1
        finally:
            await client.stop()

    run(scenario)


def test_proposal_txs_nobody_asked_for_cost_points() -> None:
    async def scenario() -> None:
        client = _network(score_decay_per_second=0)
        await client.start()
        try:
            async with raw_peer(client.listen_address) as server:
                await server.handshake()
                await wait_until_async(
                    lambda: server.id in {p.peer_id for p in client.peers()}, what="peer in"
                )
                await server.send(ProposalTxs(77, (TXS[0],)))
                await wait_until_async(
                    lambda: any(
                        p.peer_id == server.id and p.score >= POINTS_UNSOLICITED
                        for p in client.peers()
                    ),
                    what="the unsolicited answer scored",
                )
        finally:
            await client.stop()

    run(scenario)


def test_a_peer_that_never_answers_fails_the_request_within_its_timeout() -> None:
    """The sender of a compact proposal keeps silent: the request fails at its timeout
    (the node's PROPOSAL_TXS_TIMEOUT_S), not later, so the node turns to the full block in
    time; a late answer then is ignored, not punished."""

    async def scenario() -> None:
        loop = clock_loop()
        client = _network(score_decay_per_second=0)
        await client.start()
        try:
            async with raw_peer(client.listen_address) as server:
                await server.handshake()
                await wait_until_async(
                    lambda: server.id in {p.peer_id for p in client.peers()}, what="peer in"
                )
                # The clock stands still from the ask, so the timeout's deadline is exact
                # whatever the machine's load; sockets are read and written meanwhile.
                loop.hold()
                task = asyncio.ensure_future(
                    client.request_proposal_txs(server.id, BLOCK, IDS, timeout=TIMEOUT_S)
                )
                request = await server.receive_kind(GetProposalTxs)
                loop.skip(TIMEOUT_S - 0.01)
                await _turns(task.done)
                assert not task.done(), "the request failed before its timeout"
                loop.skip(0.01)
                await _turns(task.done)
                assert task.done(), "the request outlived its timeout"
                loop.release()
                with pytest.raises(P2PError) as caught:
                    await task
                assert caught.value.reason is PeerReason.TIMEOUT
                await server.send(ProposalTxs(request.request_id, tuple(TXS)))  # too late
                await server.send(ProposalTxs(request.request_id + 100, tuple(TXS)))  # nobody's
                await wait_until_async(
                    lambda: any(
                        p.peer_id == server.id and p.score >= POINTS_UNSOLICITED
                        for p in client.peers()
                    ),
                    what="the unsolicited answer scored",
                )
                scored = next(p for p in client.peers() if p.peer_id == server.id).score
                assert scored < 2 * POINTS_UNSOLICITED  # the late answer cost nothing
        finally:
            await client.stop()

    run(scenario, clock=True)


async def _turns(done: Callable[[], bool], most: int = 20) -> None:
    """Let the loop turn until `done()`, `most` turns at most (no timer needed: a held
    clock's loop still turns)."""
    for _ in range(most):
        if done():
            return
        await asyncio.sleep(0)
