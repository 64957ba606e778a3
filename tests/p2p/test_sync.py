"""Block sync requests: a node fetches (block, commit) ranges from a peer, and a peer
that answers outside the rules is refused and punished."""

from __future__ import annotations

import asyncio

import pytest

from p2p.errors import P2PError, PeerReason
from p2p.limits import POINTS_BAD_RESPONSE, POINTS_UNSOLICITED
from p2p.messages import MAX_BLOCKS_RESPONSE_BYTES, Blocks, GetBlocks, Status
from tests.p2p.harness import RecordingHost, cluster, fast_limits, raw_peer, run, wait_until

pytestmark = pytest.mark.filterwarnings("error")

CHAIN = [(b"block-%d" % height, b"commit-%d" % height) for height in range(1, 251)]


def test_blocks_are_fetched_by_height_range() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            server = await nodes.add(host=RecordingHost(CHAIN))
            client = await nodes.add()
            await client.network.connect(server.address)
            got = await client.network.request_blocks(server.id, 1, 100, timeout=3)
            assert got == CHAIN[:100]
            got = await client.network.request_blocks(server.id, 201, 100, timeout=3)
            assert got == CHAIN[200:]  # only 50 exist from there
            assert await client.network.request_blocks(server.id, 999, 10, timeout=3) == []
            # Several requests in flight at once are matched by request id.
            ranges = await asyncio.gather(
                *(client.network.request_blocks(server.id, 1 + 10 * i, 10) for i in range(8))
            )
            assert [pair for chunk in ranges for pair in chunk] == CHAIN[:80]

    run(scenario)


def test_a_response_is_cut_to_the_byte_budget() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            third = MAX_BLOCKS_RESPONSE_BYTES // 3
            big = [(bytes([h]) * third, b"c") for h in range(1, 6)]
            server = await nodes.add(host=RecordingHost(big))
            client = await nodes.add()
            await client.network.connect(server.address)
            got = await client.network.request_blocks(server.id, 1, 5, timeout=5)
            assert got == big[:2]  # a third pair would not fit one frame
            got = await client.network.request_blocks(server.id, 3, 5, timeout=5)
            assert got == big[2:4]

    run(scenario)


def test_more_blocks_than_asked_is_refused_and_punished() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            client = await nodes.add(limits=fast_limits(score_decay_per_second=0))
            async with raw_peer(client.address) as server:
                await server.handshake()
                await wait_until(lambda: server.id in client.peer_ids(), what="raw peer in")
                request = client.network.request_blocks(server.id, 1, 2, timeout=3)
                task = asyncio.ensure_future(request)
                asked = await server.receive_kind(GetBlocks)
                assert (asked.start_height, asked.count) == (1, 2)
                await server.send(Blocks(asked.request_id, tuple(CHAIN[:3])))
                with pytest.raises(P2PError) as caught:
                    await task
                assert caught.value.reason is PeerReason.BAD_RESPONSE
                info = client.peer(server.id)
                assert info is not None and info.score >= POINTS_BAD_RESPONSE
                # An answer to nothing costs points too.
                await server.send(Blocks(12345, tuple(CHAIN[:1])))
                await wait_until(
                    lambda: (
                        (p := client.peer(server.id)) is not None
                        and p.score >= POINTS_BAD_RESPONSE + POINTS_UNSOLICITED
                    ),
                    what="unsolicited BLOCKS scored",
                )

    run(scenario)


def test_an_oversize_blocks_frame_bans_the_sender() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            client = await nodes.add()
            async with raw_peer(client.address) as server:
                await server.handshake()
                await wait_until(lambda: server.id in client.peer_ids(), what="raw peer in")
                task = asyncio.ensure_future(
                    client.network.request_blocks(server.id, 1, 2, timeout=3)
                )
                asked = await server.receive_kind(GetBlocks)
                half = MAX_BLOCKS_RESPONSE_BYTES // 2 + 1
                await server.send(
                    Blocks(asked.request_id, ((b"x" * half, b""), (b"y" * half, b"")))
                )
                with pytest.raises(P2PError) as caught:
                    await task
                assert caught.value.reason is PeerReason.NOT_CONNECTED
                assert (await server.closed_with())[1] == "banned"
                assert (server.id, "too_large") in client.host.disconnected

    run(scenario)


def test_a_request_to_a_silent_peer_times_out() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            client = await nodes.add()
            async with raw_peer(client.address) as server:
                await server.handshake()
                await wait_until(lambda: server.id in client.peer_ids(), what="raw peer in")
                with pytest.raises(P2PError) as caught:
                    await client.network.request_blocks(server.id, 1, 2, timeout=0.2)
                assert caught.value.reason is PeerReason.TIMEOUT
                # A late answer to the expired request is ignored, not punished.
                asked = await server.receive_kind(GetBlocks)
                await server.send(Blocks(asked.request_id, ()))
                await server.send(Status(7, b"\x07" * 32))  # frames arrive in order
                await wait_until(
                    lambda: (p := client.peer(server.id)) is not None and p.height == 7,
                    what="status after the late answer",
                )
                with pytest.raises(P2PError) as caught:
                    await client.network.request_blocks("00" * 33, 1, 1)
                assert caught.value.reason is PeerReason.NOT_CONNECTED
                info = client.peer(server.id)
                assert info is not None and info.score == 0

    run(scenario)
