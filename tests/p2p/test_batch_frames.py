"""BATCH frames (issue 22, wan22k): the small frames a link's writer finds queued for one
peer go out as one sealed websocket message, and the reader takes each frame of a batch
as if it had come alone. A batch is no way around the rules a lone frame meets: each of
its frames is decoded, rate-limited and scored by its own kind, a malformed one bans its
sender as it would alone, and a batch that is not the one canonical batch (one frame, a
batch inside, an oversize frame) is refused as malformed."""

from __future__ import annotations

import random

import pytest

from fluxchain.core.encoding import pack
from p2p.limits import Rate
from p2p.messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_FRAMES,
    MAX_BATCHED_FRAME,
    Batch,
    GetPeers,
    Gossip,
    Kind,
    Status,
    batch_frame,
    decode,
    encode,
    frames_in,
)
from p2p.network import CLOSE_REFUSED
from tests.p2p.harness import RawPeer, cluster, fast_limits, limits_with_rates, run
from tests.p2p.test_hostile import hostile_scenario, only_the_burst_got_through
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_frames_sent_in_one_turn_reach_the_peer_as_one_message() -> None:
    """Ten votes broadcast in one turn cross the link as one websocket message (one seal,
    one websocket frame), and the peer's host still gets each of them; the counters of
    both ends say so, by kind and by message."""

    async def scenario() -> None:
        async with cluster() as nodes:
            # No peer exchange or STATUS heartbeat on the link while the votes cross it.
            quiet = fast_limits(pex_interval=600.0, status_interval=600.0)
            sender, receiver = await nodes.add(limits=quiet), await nodes.add(limits=quiet)
            await sender.network.connect(receiver.address)
            await wait_until_async(lambda: receiver.id in sender.peer_ids(), what="linked")
            # Let the connection's own first frames (STATUS, GET_PEERS) cross it first.
            await wait_until_async(
                lambda: (
                    sender.network.frame_counts()["wire"]["sent"] >= 1
                    and receiver.network.frame_counts()["wire"]["received"]
                    == sender.network.frame_counts()["wire"]["sent"]
                ),
                what="the link's first frames across",
            )
            before_sent = sender.network.frame_counts()
            before_received = receiver.network.frame_counts()
            votes = [b"vote-%d" % i + bytes(100) for i in range(10)]
            for vote in votes:
                sender.network.broadcast(Kind.VOTE, vote)
            await wait_until_async(
                lambda: set(votes) <= set(receiver.host.payloads(Kind.VOTE)),
                what="every vote delivered",
            )
            sent = sender.network.frame_counts()
            received = receiver.network.frame_counts()
            assert sent["sent"]["VOTE"] - before_sent["sent"].get("VOTE", 0) == 10
            assert received["received"]["VOTE"] - before_received["received"].get("VOTE", 0) == 10
            assert sent["wire"]["sent"] - before_sent["wire"]["sent"] == 1
            assert received["wire"]["received"] - before_received["wire"]["received"] == 1

    run(scenario)


def test_a_malformed_frame_inside_a_batch_bans_its_sender_as_it_would_alone() -> None:
    """The frame before it is taken; the malformed one (GET_PEERS with its kind written
    as a uint16: non-canonical) costs the same 100 points as alone: banned."""

    async def attack(raw: RawPeer) -> None:
        await raw.send_raw(
            pack([int(Kind.BATCH), [encode(Gossip(Kind.TX, b"first-ok")), b"\x91\xcd\x00\x16"]])
        )

    hostile_scenario(
        attack,
        handshake_first=True,
        expected_close=(CLOSE_REFUSED, "banned"),
        reason="non_canonical",
        check=lambda target: (
            None if b"first-ok" in target.host.payloads() else pytest.fail("first frame lost")
        ),
    )


def test_a_batch_inside_a_batch_is_refused() -> None:
    inner = batch_frame([encode(GetPeers()), encode(GetPeers())])

    async def attack(raw: RawPeer) -> None:
        await raw.send_raw(pack([int(Kind.BATCH), [encode(GetPeers()), inner]]))

    hostile_scenario(
        attack, handshake_first=True, expected_close=(CLOSE_REFUSED, "banned"), reason="bad_field"
    )


def test_a_batch_of_one_frame_is_refused() -> None:
    """One encoding for each sequence of frames: a frame alone is sent alone."""

    async def attack(raw: RawPeer) -> None:
        await raw.send_raw(pack([int(Kind.BATCH), [encode(GetPeers())]]))

    hostile_scenario(
        attack, handshake_first=True, expected_close=(CLOSE_REFUSED, "banned"), reason="bad_field"
    )


def test_a_batch_cannot_smuggle_frames_past_the_rate_limit() -> None:
    """500 TXs in batches of 100 meet the TX limit frame by frame, as 500 lone frames do
    (test_hostile.test_flood_past_the_rate_limit): the burst gets through, the sender is
    banned for the rest."""
    limits = limits_with_rates(fast_limits(), TX=Rate(20, 20))

    async def attack(raw: RawPeer) -> None:
        for start in range(0, 500, 100):
            frames = [encode(Gossip(Kind.TX, b"flood-%d" % i)) for i in range(start, start + 100)]
            await raw.send_raw(batch_frame(frames))

    hostile_scenario(
        attack,
        handshake_first=True,
        expected_close=(CLOSE_REFUSED, "banned"),
        reason="rate_limited",
        limits=limits,
        check=only_the_burst_got_through,
    )


def test_a_batch_decodes_to_its_frames_and_refuses_every_other_shape() -> None:
    """Round trip over random frames (seeded), and the bounds: too many frames, a frame
    over MAX_BATCHED_FRAME, more than MAX_BATCH_BYTES in all, an empty frame."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(200):
        count = rng.randrange(2, 40)
        frames = [
            encode(Gossip(Kind.VOTE, rng.randbytes(rng.randrange(1, 300)))) for _ in range(count)
        ]
        data = batch_frame(frames)
        message = decode(data)
        assert isinstance(message, Batch), seed
        assert list(message.frames) == frames, seed
        assert encode(message) == data, seed
        assert frames_in(message) == [decode(frame) for frame in frames], seed
    small = encode(Status(1, bytes(32), 1))
    refused = {
        "too many frames": [small] * (MAX_BATCH_FRAMES + 1),
        "an oversize frame": [small, encode(Gossip(Kind.TX, bytes(MAX_BATCHED_FRAME)))],
        "too many bytes": [encode(Gossip(Kind.TX, bytes(MAX_BATCHED_FRAME - 10)))]
        * (MAX_BATCH_BYTES // MAX_BATCHED_FRAME + 1),
        "an empty frame": [small, b""],
    }
    for what, frames in refused.items():
        with pytest.raises(Exception) as caught:
            decode(batch_frame(frames))
        assert type(caught.value).__name__ == "FrameError", what
