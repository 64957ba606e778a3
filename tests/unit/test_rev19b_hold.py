"""Review rev19b: defences of diag19's read-ahead that held."""

from __future__ import annotations

import asyncio

import pytest

from p2p.messages import Gossip, Kind
from p2p.peer import Inbox


def test_rev19b_compact_proposals_gone_ahead_count_toward_the_inbox_bound() -> None:
    """A peer flooding COMPACT_PROPOSAL frames (which jump its queue) fills only its own
    bounded inbox: the frames gone ahead count with the rest, and the next is refused."""

    async def main() -> None:
        inbox = Inbox(3)
        inbox.put_nowait((Gossip(Kind.TXS, b"t"), b""))
        for i in range(2):
            inbox.put_nowait((Gossip(Kind.COMPACT_PROPOSAL, bytes([i])), b""))
        assert inbox.full() and inbox.qsize() == 3
        with pytest.raises(asyncio.QueueFull):
            inbox.put_nowait((Gossip(Kind.COMPACT_PROPOSAL, b"x"), b""))
        assert list(inbox.tx_payloads()) == [b"t"]  # only TXS bodies are offered to a rebuild

    asyncio.run(main())
