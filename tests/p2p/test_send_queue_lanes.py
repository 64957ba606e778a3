"""A peer's send queue writes consensus frames before queued bulk tx frames (fix16f).

It was one FIFO: a vote, proposal or GET_PROPOSAL_TXS answer queued behind up to 18 MiB
of tx frames waited for all of them (1.5 s on a 100 Mbit/s link, past
PROPOSAL_TXS_TIMEOUT_S). Now a consensus frame overtakes queued bulk frames; bulk frames
still get a write after `Limits.bulk_turn_after` consensus writes in a row."""

from __future__ import annotations

from p2p.messages import MAX_BATCH_BYTES, MAX_BATCHED_FRAME, Gossip, Kind, Lane, MiB, encode
from p2p.peer import SendQueue
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, accepted_raw_peer, cluster, run
from tests.support.wait import wait_until_async

TURN = 4  # Limits.bulk_turn_after in these unit tests


def _frame(kind: Kind, tag: int, size: int = 100) -> bytes:
    return encode(Gossip(kind, bytes([tag]) * size))


def _queue(max_frames: int = 64, max_bytes: int = MiB) -> SendQueue:
    return SendQueue(max_frames, max_bytes, TURN)


def _one(queue: SendQueue) -> bytes:
    """The next frame written alone (as with `Limits.batch_frames` 1)."""
    (frame,) = queue.take_batch(1, MAX_BATCHED_FRAME, MAX_BATCH_BYTES)
    return frame


def test_a_vote_queued_after_tx_frames_is_taken_first_and_each_lane_keeps_its_order() -> None:
    queue = _queue()
    txs = [_frame(Kind.TXS, i) for i in range(3)]
    votes = [_frame(Kind.VOTE, 10 + i) for i in range(2)]
    for frame in (txs[0], txs[1], votes[0], txs[2], votes[1]):
        assert queue.put(frame)
    assert [_one(queue) for _ in range(5)] == [votes[0], votes[1], *txs]
    assert len(queue) == 0


def test_a_batch_holds_consensus_frames_before_bulk_ones_and_never_puts_bulk_before_one() -> None:
    queue = _queue(max_bytes=4 * MiB)
    tx = _frame(Kind.TXS, 1)
    vote = _frame(Kind.VOTE, 2)
    proposal = _frame(Kind.PROPOSAL, 3, size=MAX_BATCHED_FRAME + 1)  # written alone
    for frame in (tx, vote, proposal):
        assert queue.put(frame)
    # The proposal is too big to share the vote's batch; the tx waits behind it.
    assert queue.take_batch(256, MAX_BATCHED_FRAME, MAX_BATCH_BYTES) == [vote]
    assert queue.take_batch(256, MAX_BATCHED_FRAME, MAX_BATCH_BYTES) == [proposal]
    assert queue.take_batch(256, MAX_BATCHED_FRAME, MAX_BATCH_BYTES) == [tx]
    for frame in (tx, vote):
        assert queue.put(frame)
    assert queue.take_batch(256, MAX_BATCHED_FRAME, MAX_BATCH_BYTES) == [vote, tx]


def test_tx_frames_get_a_write_after_bulk_turn_after_consensus_writes_in_a_row() -> None:
    queue = _queue()
    tx = _frame(Kind.TXS, 1)
    assert queue.put(tx)
    written = []
    for i in range(3 * (TURN + 1)):
        assert queue.put(_frame(Kind.VOTE, 100 + i))  # consensus frames never stop coming
        written.append(_one(queue))
        if written[-1] == tx:
            assert queue.put(tx)  # and neither do tx frames
    turns = [i for i, frame in enumerate(written) if frame == tx]
    assert turns == [TURN, 2 * TURN + 1, 3 * TURN + 2], turns


def test_both_lanes_count_against_the_bounds_and_bulk_leaves_the_reserve() -> None:
    queue = _queue(max_frames=4, max_bytes=1000)
    tx = _frame(Kind.TXS, 1, size=300)
    vote = _frame(Kind.VOTE, 2, size=300)
    assert queue.put(tx, keep_frames=1, keep_bytes=300)
    assert queue.put(tx, keep_frames=1, keep_bytes=300)
    assert not queue.put(tx, keep_frames=1, keep_bytes=300), "the reserve was taken by bulk"
    assert queue.put(vote), "a vote did not get the room kept for it"
    assert not queue.put(vote), "more bytes queued than the bound"
    assert len(queue) == 3
    assert queue.room() == 1000 - 3 * len(tx)


def test_a_bulk_frame_has_left_once_its_lanes_taken_count_reaches_its_mark() -> None:
    """tx relay by id starts a GET_TXS request's clock once it has left the queue."""
    queue = _queue()
    assert queue.put(_frame(Kind.TXS, 1))
    assert queue.put(_frame(Kind.GET_TXS, 2))
    mark = queue.queued[Lane.BULK]
    assert queue.put(_frame(Kind.VOTE, 3))
    assert queue.put(_frame(Kind.VOTE, 4))
    _one(queue)
    _one(queue)
    assert queue.taken[Lane.CONSENSUS] == 2
    assert queue.taken[Lane.BULK] < mark, "a request counted as sent while still queued"
    _one(queue)
    assert queue.taken[Lane.BULK] < mark
    _one(queue)
    assert queue.taken[Lane.BULK] >= mark
    assert queue.queued == queue.taken == [2, 2]


TXS_FRAMES = 16  # 1 MiB each: a bulk backlog within the queue's bulk share (18 MiB)


def test_a_vote_sent_after_a_large_tx_backlog_reaches_the_peer_before_the_backlog() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            node = await nodes.add()
            network = node.network
            async with accepted_raw_peer(
                node.address, CHAIN_ID, GENESIS_HASH, node.peer_ids
            ) as peer:
                link = network._peers[peer.id]
                # The peer reads nothing yet: the link's buffers fill, the rest waits in
                # our send queue.
                for i in range(TXS_FRAMES):
                    assert network.broadcast(Kind.TXS, bytes([i]) * MiB) == 1
                await wait_until_async(
                    lambda: len(link.send_queue) >= TXS_FRAMES // 2,
                    what="tx frames waiting in the send queue",
                )
                backlog = len(link.send_queue)
                vote = b"vote" * 40
                assert network.broadcast(Kind.VOTE, vote) == 1
                txs_before_vote = 0
                while True:
                    message = await peer.receive(timeout=10.0)
                    if isinstance(message, Gossip) and message.kind is Kind.VOTE:
                        assert message.payload == vote
                        break
                    if isinstance(message, Gossip) and message.kind is Kind.TXS:
                        txs_before_vote += 1
                assert txs_before_vote <= TXS_FRAMES - backlog, (
                    f"the vote came after {txs_before_vote} of {TXS_FRAMES} tx frames; "
                    f"{backlog} were still queued when it was sent"
                )

    run(scenario, timeout=60.0)
