"""A peer's inbox hands over votes ahead of txs waiting for admission (issue 22, wan18),
and a compact proposal ahead of a backlog of them (issue 24, conc20)."""

from __future__ import annotations

import asyncio

import pytest

from p2p.limits import Limits
from p2p.messages import Gossip, Kind
from p2p.peer import Inbox


def _drain(inbox: Inbox) -> list[tuple[Kind, bytes]]:
    async def main() -> list[tuple[Kind, bytes]]:
        taken = []
        while not inbox.empty():
            message, _ = await inbox.get()
            assert isinstance(message, Gossip)
            taken.append((message.kind, message.payload))
        return taken

    return asyncio.run(main())


def test_a_vote_is_handled_before_the_txs_queued_ahead_of_it_and_the_rest_keep_order() -> None:
    inbox = Inbox(5, ahead_after=2)
    frames = [
        Gossip(Kind.TXS, b"t1"),
        Gossip(Kind.COMPACT_PROPOSAL, b"p"),  # behind one frame only: keeps its place
        Gossip(Kind.VOTE, b"v1"),
        Gossip(Kind.TXS, b"t2"),
        Gossip(Kind.VOTE, b"v2"),
    ]
    for frame in frames:
        inbox.put_nowait((frame, b""))
    assert inbox.full() and inbox.qsize() == 5
    with pytest.raises(asyncio.QueueFull):
        inbox.put_nowait((Gossip(Kind.VOTE, b"v3"), b""))
    assert _drain(inbox) == [
        (Kind.VOTE, b"v1"),
        (Kind.VOTE, b"v2"),
        (Kind.TXS, b"t1"),
        (Kind.COMPACT_PROPOSAL, b"p"),
        (Kind.TXS, b"t2"),
    ]


def test_a_compact_proposal_behind_a_backlog_of_txs_frames_is_handled_before_them() -> None:
    """Under a flood the proposer's compact proposal waited 0.7-4 s behind TXS frames to
    admit, past the propose timeout: behind `compact_ahead_frames` of them it goes first,
    after the votes that came before it; the inbox bound still counts it."""
    backlog = Limits().compact_ahead_frames
    inbox = Inbox(backlog + 3, backlog)
    txs = [Gossip(Kind.TXS, b"t%d" % i) for i in range(backlog)]
    for frame in [*txs, Gossip(Kind.VOTE, b"v"), Gossip(Kind.COMPACT_PROPOSAL, b"p")]:
        inbox.put_nowait((frame, b""))
    inbox.put_nowait((Gossip(Kind.TXS, b"late"), b""))
    assert inbox.full()
    with pytest.raises(asyncio.QueueFull):
        inbox.put_nowait((Gossip(Kind.COMPACT_PROPOSAL, b"p2"), b""))
    assert _drain(inbox) == [
        (Kind.VOTE, b"v"),
        (Kind.COMPACT_PROPOSAL, b"p"),
        *[(Kind.TXS, frame.payload) for frame in txs],
        (Kind.TXS, b"late"),
    ]


def test_a_full_proposal_keeps_its_place_behind_a_backlog() -> None:
    """A full PROPOSAL carries its txs: nothing it would gain ahead of them."""
    backlog = Limits().compact_ahead_frames
    inbox = Inbox(backlog + 1, backlog)
    for i in range(backlog):
        inbox.put_nowait((Gossip(Kind.TXS, b"t%d" % i), b""))
    inbox.put_nowait((Gossip(Kind.PROPOSAL, b"full"), b""))
    assert _drain(inbox)[-1] == (Kind.PROPOSAL, b"full")
