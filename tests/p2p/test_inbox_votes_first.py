"""A peer's inbox hands over votes (issue 22, wan18) and compact proposals (issue 24,
diag19) ahead of txs waiting for admission."""

from __future__ import annotations

import asyncio

import pytest

from p2p.messages import Gossip, Kind
from p2p.peer import Inbox


def test_votes_and_compact_proposals_are_handled_before_the_txs_queued_ahead_of_them() -> None:
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
        (Kind.COMPACT_PROPOSAL, b"p"),
        (Kind.VOTE, b"v1"),
        (Kind.VOTE, b"v2"),
        (Kind.TXS, b"t1"),
        (Kind.TXS, b"t2"),
    ]


def test_frames_that_go_ahead_do_not_count_toward_the_txs_a_fetch_waits_for() -> None:
    """The tx relay holds a fetch until the frames put before its announcement are handled
    (`put_count` then, against `done_count`): a compact proposal or a vote handled ahead of
    them must not count as one of them, or the wait ends before the pushed txs are in."""

    async def main() -> tuple[int, int, int]:
        inbox = Inbox(8)
        for frame in (Gossip(Kind.TXS, b"t1"), Gossip(Kind.TXS, b"t2")):
            inbox.put_nowait((frame, b""))
        mark = inbox.put_count
        inbox.put_nowait((Gossip(Kind.COMPACT_PROPOSAL, b"p"), b""))
        inbox.put_nowait((Gossip(Kind.VOTE, b"v"), b""))
        for _ in range(3):  # the proposal, the vote, then t1
            message, _ = await inbox.get()
            inbox.done(message)
        return mark, inbox.put_count, inbox.done_count

    mark, put, done = asyncio.run(main())
    assert (mark, put) == (2, 2)
    assert done == 1 < mark  # t2 still waits: the fetch's barrier has not passed
