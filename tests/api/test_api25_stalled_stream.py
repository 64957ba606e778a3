"""Brief api25 2: a live /ws subscriber that never reads. Its handler's send waited for
the socket to drain for ever: the node's cut (its queue full) put an end-of-stream marker
the handler never took, so the connection, its unsent buffer and the handler stayed for
as long as the client kept the socket open. Now the cut ends the wait: the stream is
closed 1013 with the height to resume from, and a client that reads at the same pace is
not cut."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from pathlib import Path

import pytest
from aiohttp import WSCloseCode, WSMsgType

from fluxchain.api import routes
from fluxchain.node import service as service_module
from tests.api.test_api import api, commit

QUEUE = 8  # blocks a subscriber may lag (SUBSCRIBER_QUEUE, lowered to keep the test short)
MAX_BLOCKS = 5_000  # far more than the socket buffers hold
DEADLINE_S = 60.0


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each whole unmasked frame (the server's) in `data`."""
    frames, at = [], 0
    while at + 2 <= len(data):
        opcode, size, at = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
        extended = {126: "!H", 127: "!Q"}.get(size)
        if extended is not None:
            if at + struct.calcsize(extended) > len(data):
                break
            (size,), at = struct.unpack_from(extended, data, at), at + struct.calcsize(extended)
        if at + size > len(data):
            break
        frames.append((opcode, data[at : at + size]))
        at += size
    return frames


async def stalled_subscriber(port: int) -> socket.socket:
    """A websocket client of /ws that reads its handshake's answer and nothing more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(
        sock,
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):  # byte by byte: no frame is read
        answer += await loop.sock_recv(sock, 1)
    assert answer.startswith(b"HTTP/1.1 101")
    return sock


def test_api25_a_subscriber_that_never_reads_is_cut_with_where_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "SUBSCRIBER_QUEUE", QUEUE)

    async def run() -> None:
        async with api(tmp_path) as (client, service, b):
            loop = asyncio.get_running_loop()
            stalled = await stalled_subscriber(client.port or 0)
            reading = await client.ws_connect("/ws")
            received: list[int] = []

            async def read() -> None:
                async for message in reading:
                    received.append(message.json()["height"])  # noqa: PERF401 (seen as they come)

            reader = asyncio.create_task(read())
            deadline = loop.time() + DEADLINE_S
            while loop.time() < deadline and service.subscribers == 2:
                assert service.chain.height < MAX_BLOCKS, "the stalled stream was never cut"
                commit(service, b)
                # The reading client keeps up: it is never more than a block behind.
                while len(received) < service.chain.height and loop.time() < deadline:
                    await asyncio.sleep(0.001)
            assert service.subscribers == 1, "the stalled stream was never cut"
            height = service.chain.height
            assert received == list(range(1, height + 1))
            # The stalled client now reads all it was sent: every block from 1 in order
            # (those queued when it was cut too), then the close naming the next height.
            data = b""
            while chunk := await asyncio.wait_for(loop.sock_recv(stalled, 65_536), 15):
                data += chunk
                if (frames := parse_frames(data)) and frames[-1][0] == 0x8:
                    break
            stalled.close()
            frames = parse_frames(data)
            opcode, payload = frames[-1]
            assert opcode == 0x8
            (code,) = struct.unpack_from("!H", payload)
            sent = [int(p.split(b'"height":')[1].split(b",")[0]) for o, p in frames if o == 1]
            assert sent == list(range(1, len(sent) + 1)) and len(sent) <= height
            assert code == WSCloseCode.TRY_AGAIN_LATER
            assert payload[2:].decode() == f"too slow; resume with from={len(sent) + 1}"
            await reading.close()
            reader.cancel()

    asyncio.run(run())


def test_api25_a_cut_subscriber_that_still_does_not_read_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut off, a client that still reads nothing cannot take its close frame: its
    connection is dropped after CUT_CLOSE_S, with what it had not read."""
    monkeypatch.setattr(service_module, "SUBSCRIBER_QUEUE", QUEUE)
    monkeypatch.setattr(routes, "CUT_CLOSE_S", 0.2)

    async def run() -> None:
        async with api(tmp_path) as (client, service, b):
            loop = asyncio.get_running_loop()
            stalled = await stalled_subscriber(client.port or 0)
            deadline = loop.time() + DEADLINE_S
            while loop.time() < deadline and service.subscribers == 1:
                assert service.chain.height < MAX_BLOCKS, "the stalled stream was never cut"
                commit(service, b)
                await asyncio.sleep(0.001)
            assert service.subscribers == 0, "the stalled stream was never cut"
            assert client.app is not None
            sockets = client.app[routes.SOCKETS]
            while sockets and loop.time() < deadline:  # its handler ends
                await asyncio.sleep(0.01)
            assert not sockets, "the cut stream's handler is still waiting"
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := await asyncio.wait_for(loop.sock_recv(stalled, 65_536), 15):
                    data += chunk
            stalled.close()
            assert all(opcode != 0x8 for opcode, _ in parse_frames(data))

    asyncio.run(run())


def test_api25_a_replay_the_node_cut_meanwhile_still_sends_every_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks committed while a replay runs fill its queue and the node cuts it; the
    replay reads them from the store anyway: its client gets every block to the head,
    then the close naming the next height, not a dropped connection."""
    monkeypatch.setattr(service_module, "SUBSCRIBER_QUEUE", 2)

    async def run() -> None:
        async with api(tmp_path) as (client, service, b):
            for _ in range(40):
                commit(service, b)
            ws = await client.ws_connect("/ws?from=1")
            heights = [(await asyncio.wait_for(ws.receive_json(), 5))["height"]]
            for _ in range(5):  # while it replays: more than its queue holds
                commit(service, b)
            assert service.subscribers == 0  # cut
            while (message := await asyncio.wait_for(ws.receive(), 15)).type == WSMsgType.TEXT:
                heights.append(message.json()["height"])
            assert heights == list(range(1, 46))
            assert message.type == WSMsgType.CLOSE and message.data == WSCloseCode.TRY_AGAIN_LATER
            assert message.extra == "too slow; resume with from=46"

    asyncio.run(run())
