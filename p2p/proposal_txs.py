"""Proposal tx requests: the txs of a compact proposal's block that a receiver lacks.

A compact proposal (COMPACT_PROPOSAL, docs/p2p.md) names its block's txs by their 32-byte
ids; a receiver rebuilds the block from the txs it already holds and asks the peer that
sent it for the rest (GET_PROPOSAL_TXS). The peer answers with every tx asked for, in
order, or with none if it does not hold them all (PROPOSAL_TXS). Here, before the host
sees an answer, each tx must hash to the id asked for in its place: an answer that does
not, or that holds another number of txs, fails the request and costs the peer points,
as does an answer nobody asked for. A peer that never answers fails the request at its
timeout; the host then falls back to the full block (consensus gossip sends it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from fluxchain.core.crypto import sha256
from p2p.connection import Links, Misbehave
from p2p.errors import P2PError, PeerReason
from p2p.limits import POINTS_BAD_RESPONSE, Limits
from p2p.messages import (
    MAX_BLOCKS_RESPONSE_BYTES,
    MAX_PROPOSAL_TXS_PER_REQUEST,
    TX_ID_SIZE,
    GetProposalTxs,
    ProposalTxs,
    encode,
)
from p2p.peer import Peer
from p2p.requests import RequestTable


class ProposalTxSource(Protocol):
    """The txs a node can serve for a proposal. Implemented by fluxchain.node."""

    def proposal_txs(self, block_hash: bytes, tx_ids: list[bytes]) -> list[bytes] | None:
        """The txs with these ids (of the proposed block `block_hash`), in order, or None
        if this node does not hold every one of them."""


class ProposalTxRequests:
    """Our proposal tx requests in flight, per peer, and the answers we serve."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        links: Links,
        limits: Limits,
        misbehave: Misbehave,
        source: ProposalTxSource | None,
    ) -> None:
        self._links = links
        self._misbehave = misbehave
        self._source = source
        # each request files the ids it asked for: an answer must hash to them, in order
        self._requests: RequestTable[list[bytes]] = RequestTable(
            peers, links, limits, misbehave, "PROPOSAL_TXS"
        )

    async def request(
        self, peer_id: str, block_hash: bytes, tx_ids: list[bytes], timeout: float
    ) -> list[bytes]:
        """The txs `tx_ids` of the proposed block `block_hash`, from `peer_id`, each
        checked to hash to its id; see `Network.request_proposal_txs`."""
        if not 1 <= len(tx_ids) <= MAX_PROPOSAL_TXS_PER_REQUEST:
            raise ValueError(f"between 1 and {MAX_PROPOSAL_TXS_PER_REQUEST} ids per request")
        if any(len(tx_id) != TX_ID_SIZE for tx_id in tx_ids):
            raise ValueError(f"tx ids are {TX_ID_SIZE} bytes")
        txs: list[bytes] = await self._requests.ask(
            peer_id,
            tx_ids,
            lambda request_id: GetProposalTxs(request_id, block_hash, b"".join(tx_ids)),
            timeout,
        )
        return txs

    def on_frame(self, peer: Peer, message: GetProposalTxs | ProposalTxs) -> None:
        """A request from `peer` (answered now) or its answer to one of ours."""
        if isinstance(message, GetProposalTxs):
            self.serve(peer, message)
        else:
            self.on_answer(peer, message)

    def expects_answer(self, peer: Peer) -> bool:
        """Whether a PROPOSAL_TXS frame from `peer` may answer a request of ours."""
        return self._requests.expects_answer(peer)

    def on_answer(self, peer: Peer, message: ProposalTxs) -> None:
        """An answer from `peer`: complete its request with the txs, fail it empty-handed
        (the peer lacks them: no fault), or fail and score it if it breaks the rules."""
        entry = self._requests.take(peer, message.request_id, "PROPOSAL_TXS")
        if entry is None:
            return
        future, asked = entry
        if not message.txs:
            if not future.done():
                future.set_exception(
                    P2PError(PeerReason.NOT_HELD, f"{peer.short} does not hold the txs")
                )
            return
        problem = _mismatch(message.txs, asked)
        if problem is not None:
            if not future.done():
                future.set_exception(P2PError(PeerReason.BAD_RESPONSE, problem))
            self._misbehave(peer, PeerReason.BAD_RESPONSE, POINTS_BAD_RESPONSE, problem)
            return
        if not future.done():
            future.set_result(list(message.txs))

    def fail_pending(self, peer: Peer, reason: PeerReason) -> None:
        """The peer is gone: every request of ours to it fails with NOT_CONNECTED."""
        self._requests.fail_pending(peer, reason)

    def serve(self, peer: Peer, request: GetProposalTxs) -> None:
        """Answer with every tx asked for, in order, or none (we lack one, or they would
        not fit one frame: the asker falls back to the full block)."""
        txs: list[bytes] | None = None
        if self._source is not None:
            try:
                txs = self._source.proposal_txs(request.block_hash, request.ids())
            except Exception as exc:
                raise P2PError(PeerReason.HOST_ERROR, f"proposal_txs: {exc!r}") from exc
        if txs is None or sum(len(tx) for tx in txs) > MAX_BLOCKS_RESPONSE_BYTES:
            txs = []
        self._links.send(peer, encode(ProposalTxs(request.request_id, tuple(txs))), droppable=False)


def _mismatch(txs: tuple[bytes, ...], asked: list[bytes]) -> str | None:
    """Why `txs` is not an answer to a request for `asked`, if it is not."""
    if len(txs) != len(asked):
        return f"{len(txs)} txs for a request of {len(asked)}"
    for i, (tx, tx_id) in enumerate(zip(txs, asked, strict=True)):
        if sha256(tx) != tx_id:
            return f"tx {i} does not hash to the id asked for"
    return None
