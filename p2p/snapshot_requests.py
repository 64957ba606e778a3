"""Snapshot requests: asking a peer for its snapshot list and for snapshot parts, and
answering such requests from the host's snapshots (state sync, docs/p2p.md).

As with block requests, an answer must name a request of ours that is still pending and
match what it asked (the same height and part); one nobody asked for costs the peer
points, a late one is ignored. What a part holds is judged by the host
(fluxchain/node/statesync.py), which punishes a peer whose part does not verify.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from p2p.connection import Links, Misbehave
from p2p.errors import P2PError, PeerReason
from p2p.limits import POINTS_BAD_RESPONSE, Limits
from p2p.messages import (
    MAX_SNAPSHOTS_OFFERED,
    GetSnapshotPart,
    GetSnapshots,
    SnapshotOffer,
    SnapshotPart,
    Snapshots,
    encode,
)
from p2p.peer import Peer
from p2p.requests import RequestTable

_LIST: Final = (-1, -1)  # what a GET_SNAPSHOTS request expects back


class SnapshotSource(Protocol):
    """The snapshots a node serves. Implemented by fluxchain.node."""

    def snapshot_offers(self) -> list[tuple[int, bytes, int]]:
        """(height, manifest hash, number of parts) of each snapshot served, newest first."""

    def snapshot_part(self, height: int, index: int) -> bytes | None:
        """Part `index` of the snapshot at `height` (0: the manifest), None if not held."""


class SnapshotRequests:
    """Our snapshot requests in flight, per peer, and the answers we serve."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        links: Links,
        limits: Limits,
        misbehave: Misbehave,
        source: SnapshotSource | None,
    ) -> None:
        self._links = links
        self._misbehave = misbehave
        self._source = source
        self._requests: RequestTable[tuple[int, int]] = RequestTable(
            peers, links, limits, misbehave, "snapshot answer"
        )

    async def request_list(self, peer_id: str, timeout: float) -> list[SnapshotOffer]:
        """The snapshots `peer_id` offers; see `Network.request_snapshots`."""
        offers: tuple[SnapshotOffer, ...] = await self._requests.ask(
            peer_id, _LIST, GetSnapshots, timeout
        )
        return list(offers)

    async def request_part(self, peer_id: str, height: int, index: int, timeout: float) -> bytes:
        """Part `index` of `peer_id`'s snapshot at `height`; b"" if it does not hold it."""
        data: bytes = await self._requests.ask(
            peer_id, (height, index), lambda rid: GetSnapshotPart(rid, height, index), timeout
        )
        return data

    def expects_answer(self, peer: Peer) -> bool:
        """Whether a SNAPSHOTS or SNAPSHOT_PART frame from `peer` may answer us."""
        return self._requests.expects_answer(peer)

    def on_snapshots(self, peer: Peer, message: Snapshots) -> None:
        self._answer(peer, message.request_id, _LIST, message.offers, "SNAPSHOTS")

    def on_part(self, peer: Peer, message: SnapshotPart) -> None:
        expect = (message.height, message.index)
        self._answer(peer, message.request_id, expect, message.data, "SNAPSHOT_PART")

    def _answer(
        self, peer: Peer, request_id: int, answers: tuple[int, int], value: Any, name: str
    ) -> None:
        entry = self._requests.take(peer, request_id, name)
        if entry is None:
            return
        future, expected = entry
        if expected != answers:
            detail = f"{name} for {answers} answers a request for {expected}"
            if not future.done():
                future.set_exception(P2PError(PeerReason.BAD_RESPONSE, detail))
            self._misbehave(peer, PeerReason.BAD_RESPONSE, POINTS_BAD_RESPONSE, detail)
            return
        if not future.done():
            future.set_result(value)

    def fail_pending(self, peer: Peer, reason: PeerReason) -> None:
        """The peer is gone: every request of ours to it fails with NOT_CONNECTED."""
        self._requests.fail_pending(peer, reason)

    def serve_list(self, peer: Peer, request: GetSnapshots) -> None:
        """Answer with the snapshots the host serves (none without a source)."""
        offers: list[SnapshotOffer] = []
        if self._source is not None:
            try:
                listed = self._source.snapshot_offers()
            except Exception as exc:
                raise P2PError(PeerReason.HOST_ERROR, f"snapshot_offers: {exc!r}") from exc
            offers = [SnapshotOffer(h, digest, parts) for h, digest, parts in listed]
        answer = Snapshots(request.request_id, tuple(offers[:MAX_SNAPSHOTS_OFFERED]))
        self._links.send(peer, encode(answer), droppable=False)

    def serve_part(self, peer: Peer, request: GetSnapshotPart) -> None:
        """Answer with the part asked for, or empty bytes if the host does not hold it."""
        data = None
        if self._source is not None:
            try:
                data = self._source.snapshot_part(request.height, request.index)
            except Exception as exc:
                raise P2PError(PeerReason.HOST_ERROR, f"snapshot_part: {exc!r}") from exc
        answer = SnapshotPart(request.request_id, request.height, request.index, data or b"")
        self._links.send(peer, encode(answer), droppable=False)
