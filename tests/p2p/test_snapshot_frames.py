"""State sync's frames (GET_SNAPSHOTS, SNAPSHOTS, GET_SNAPSHOT_PART, SNAPSHOT_PART):
they round-trip, are bounded, are served from the host's snapshots over a real link, and
an answer nobody asked for, or for another part than asked, costs the sender points."""

from __future__ import annotations

import asyncio

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from p2p.errors import FrameError, P2PError, PeerReason
from p2p.limits import POINTS_BAD_RESPONSE, POINTS_UNSOLICITED
from p2p.messages import (
    MAX_SNAPSHOT_PARTS,
    MAX_SNAPSHOTS_OFFERED,
    GetSnapshotPart,
    GetSnapshots,
    Message,
    SnapshotOffer,
    SnapshotPart,
    Snapshots,
    decode,
    encode,
)
from p2p.network import Network
from p2p.peerbook import MemoryPeerStore
from tests.p2p.harness import (
    CHAIN_ID,
    GENESIS_HASH,
    RecordingHost,
    fast_limits,
    raw_peer,
    run,
)
from tests.support.wait import wait_until_async

OFFER = SnapshotOffer(40, b"\x0a" * 32, 3)
SAMPLES: list[Message] = [
    GetSnapshots(1),
    Snapshots(1, (OFFER, SnapshotOffer(20, b"\x0b" * 32, MAX_SNAPSHOT_PARTS))),
    Snapshots(2, ()),
    GetSnapshotPart(3, 40, 0),
    SnapshotPart(3, 40, 0, b"manifest bytes"),
    SnapshotPart(4, 40, 2, b""),  # "I no longer hold it"
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_snapshot_frames_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


def test_snapshot_frames_are_bounded() -> None:
    too_many = Snapshots(1, (OFFER,) * (MAX_SNAPSHOTS_OFFERED + 1))
    with pytest.raises(FrameError) as caught:
        decode(encode(too_many))
    assert caught.value.reason is PeerReason.BAD_FIELD
    with pytest.raises(FrameError):
        decode(encode(GetSnapshotPart(1, 40, MAX_SNAPSHOT_PARTS)))
    with pytest.raises(FrameError):  # a snapshot has a manifest and at least one chunk
        decode(encode(Snapshots(1, (SnapshotOffer(40, b"\x0a" * 32, 1),))))


class Source:
    """A host's snapshots: one at height 40 with a manifest and two chunks."""

    parts = {(40, 0): b"manifest", (40, 1): b"chunk one", (40, 2): b"chunk two"}

    def snapshot_offers(self) -> list[tuple[int, bytes, int]]:
        return [(40, sha256(self.parts[40, 0]), 3)]

    def snapshot_part(self, height: int, index: int) -> bytes | None:
        return self.parts.get((height, index))


def _network(snapshots: Source | None = None, **limits: float) -> Network:
    return Network(
        RecordingHost(),
        SigningKey.generate(),
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS_HASH,
        limits=fast_limits(**limits),
        store=MemoryPeerStore(),
        snapshots=snapshots,
    )


def test_snapshots_are_listed_and_served_part_by_part() -> None:
    async def scenario() -> None:
        server, client = _network(Source()), _network()
        await server.start()
        await client.start()
        try:
            peer = await client.connect(server.listen_address)
            offers = await client.request_snapshots(peer, timeout=3)
            assert offers == [SnapshotOffer(40, sha256(b"manifest"), 3)]
            parts = await asyncio.gather(
                *(client.request_snapshot_part(peer, 40, i, timeout=3) for i in range(3))
            )
            assert parts == [b"manifest", b"chunk one", b"chunk two"]
            # A part it does not hold is an empty answer, not an error.
            assert await client.request_snapshot_part(peer, 40, 3, timeout=3) == b""
            # A node without snapshots offers none (asked over the same link).
            assert await server.request_snapshots(client.node_id, timeout=3) == []
        finally:
            await client.stop()
            await server.stop()

    run(scenario)


def test_a_snapshot_part_for_another_part_or_for_nobody_costs_points() -> None:
    async def scenario() -> None:
        client = _network(score_decay_per_second=0)
        await client.start()
        try:
            async with raw_peer(client.listen_address) as server:
                await server.handshake()
                await wait_until_async(
                    lambda: server.id in {p.peer_id for p in client.peers()}, what="peer in"
                )
                task = asyncio.ensure_future(
                    client.request_snapshot_part(server.id, 40, 1, timeout=3)
                )
                asked = await server.receive_kind(GetSnapshotPart)
                assert (asked.height, asked.index) == (40, 1)
                await server.send(SnapshotPart(asked.request_id, 40, 2, b"other part"))
                with pytest.raises(P2PError) as caught:
                    await task
                assert caught.value.reason is PeerReason.BAD_RESPONSE
                await server.send(SnapshotPart(777, 40, 1, b"nobody asked"))
                await wait_until_async(
                    lambda: any(
                        p.peer_id == server.id
                        and p.score >= POINTS_BAD_RESPONSE + POINTS_UNSOLICITED
                        for p in client.peers()
                    ),
                    what="both faults scored",
                )
        finally:
            await client.stop()

    run(scenario)
