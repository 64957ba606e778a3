"""A peer's inbox hands over votes ahead of txs waiting for admission (issue 22, wan18)."""

from __future__ import annotations

import asyncio

import pytest

from p2p.messages import Gossip, Kind
from p2p.peer import Inbox


def test_a_vote_is_handled_before_the_txs_queued_ahead_of_it_and_the_rest_keep_order() -> None:
    async def main() -> list[tuple[Kind, bytes]]:
        inbox = Inbox(5)
        frames = [
            Gossip(Kind.TXS, b"t1"),
            Gossip(Kind.COMPACT_PROPOSAL, b"p"),
            Gossip(Kind.VOTE, b"v1"),
            Gossip(Kind.TXS, b"t2"),
            Gossip(Kind.VOTE, b"v2"),
        ]
        for frame in frames:
            inbox.put_nowait((frame, b""))
        assert inbox.full() and inbox.qsize() == 5
        with pytest.raises(asyncio.QueueFull):
            inbox.put_nowait((Gossip(Kind.VOTE, b"v3"), b""))
        taken = []
        while not inbox.empty():
            message, _ = await inbox.get()
            assert isinstance(message, Gossip)
            taken.append((message.kind, message.payload))
        return taken

    assert asyncio.run(main()) == [
        (Kind.VOTE, b"v1"),
        (Kind.VOTE, b"v2"),
        (Kind.TXS, b"t1"),
        (Kind.COMPACT_PROPOSAL, b"p"),
        (Kind.TXS, b"t2"),
    ]
