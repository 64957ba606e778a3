"""Block requests: asking a peer for (block, commit) pairs, and answering its requests.

A request carries an id; the answer must name a pending id and hold no more blocks than
asked for. An answer to a request that timed out is ignored silently; one nobody asked
for costs the peer points. Answers are bounded in bytes, and the requester asks again
from where an answer stops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from p2p.connection import Links, Misbehave
from p2p.errors import P2PError, PeerReason
from p2p.limits import POINTS_BAD_RESPONSE, Limits
from p2p.messages import (
    MAX_BLOCKS_PER_REQUEST,
    MAX_BLOCKS_RESPONSE_BYTES,
    Blocks,
    GetBlocks,
    encode,
)
from p2p.peer import Peer
from p2p.requests import RequestTable

BlockPairs = list[tuple[bytes, bytes]]
# The host's confirmed blocks: (start height, count) -> up to `count` (block, commit).
GetBlockPairs = Callable[[int, int], BlockPairs]


class BlockRequests:
    """Our requests in flight (a `RequestTable`) and the answers we serve."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        links: Links,
        limits: Limits,
        misbehave: Misbehave,
        get_blocks: GetBlockPairs,
    ) -> None:
        self._links = links
        self._misbehave = misbehave
        self._get_blocks = get_blocks
        # What each request expects back: at most `count` blocks.
        self._requests: RequestTable[int] = RequestTable(peers, links, limits, misbehave, "BLOCKS")

    async def request(
        self, peer_id: str, start_height: int, count: int, timeout: float
    ) -> BlockPairs:
        """Ask one peer for blocks; see `Network.request_blocks`."""
        if not 1 <= count <= MAX_BLOCKS_PER_REQUEST:
            raise ValueError(f"count must be in [1, {MAX_BLOCKS_PER_REQUEST}]")
        if start_height < 1:
            raise ValueError("start_height starts at 1")
        pairs: BlockPairs = await self._requests.ask(
            peer_id,
            count,
            lambda request_id: GetBlocks(request_id, start_height, count),
            timeout,
        )
        return pairs

    def expects_answer(self, peer: Peer) -> bool:
        """Whether a BLOCKS frame from `peer` may answer a request of ours."""
        return self._requests.expects_answer(peer)

    def on_blocks(self, peer: Peer, message: Blocks) -> None:
        """An answer from `peer`: complete its request, or score it if it breaks the rules."""
        entry = self._requests.take(peer, message.request_id, "BLOCKS")
        if entry is None:
            return
        future, count = entry
        if len(message.blocks) > count:
            detail = f"{len(message.blocks)} blocks for a request of {count}"
            if not future.done():
                future.set_exception(P2PError(PeerReason.BAD_RESPONSE, detail))
            self._misbehave(peer, PeerReason.BAD_RESPONSE, POINTS_BAD_RESPONSE, detail)
            return
        if not future.done():
            future.set_result(list(message.blocks))

    def fail_pending(self, peer: Peer, reason: PeerReason) -> None:
        """The peer is gone: every request of ours to it fails with NOT_CONNECTED."""
        self._requests.fail_pending(peer, reason)

    def serve(self, peer: Peer, request: GetBlocks) -> None:
        """Answer `peer`'s request from the host's confirmed blocks, within the byte bound."""
        try:
            pairs = self._get_blocks(request.start_height, request.count)
        except Exception as exc:
            raise P2PError(PeerReason.HOST_ERROR, f"get_blocks: {exc!r}") from exc
        chosen: BlockPairs = []
        total = 0
        for block, commit in pairs[: request.count]:
            total += len(block) + len(commit)
            if total > MAX_BLOCKS_RESPONSE_BYTES:
                break  # the requester asks again from where this answer stops
            chosen.append((block, commit))
        self._links.send(peer, encode(Blocks(request.request_id, tuple(chosen))), droppable=False)
