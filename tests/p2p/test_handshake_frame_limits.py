"""HandshakeFrameLimits (p2p/peer.py): the first three websocket messages of a
connection are held to MAX_HANDSHAKE_MESSAGE from their header, however the bytes are
cut into chunks, masked or fragmented; later messages go to aiohttp's parser unchecked.
The end-to-end case (a stranger announcing an 8 MiB key exchange is closed at once) is
tests/p2p/test_link_attacks.py."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
from aiohttp import web

from p2p.errors import P2PError, PeerReason
from p2p.messages import MAX_WIRE_FRAME
from p2p.network import P2P_PATH
from p2p.peer import HANDSHAKE_MESSAGES, MAX_HANDSHAKE_MESSAGE, HandshakeFrameLimits
from tests.p2p.harness import cluster, fast_limits, run

BINARY, CONTINUATION, PING = 0x2, 0x0, 0x9
FIN = 0x80


def frame(opcode: int, length: int, *, fin: bool = True, masked: bool = False) -> bytes:
    """A websocket frame of `length` payload bytes (RFC 6455 §5.2; the payload is zeros,
    the mask too: only the header matters here)."""
    first = (FIN if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 1 << 16:
        header = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    return header + (bytes(4) if masked else b"") + bytes(length)


class Recorder:
    """Stands in for aiohttp's parser and its message queue."""

    def __init__(self) -> None:
        self.fed = b""
        self.exception: BaseException | None = None

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.fed += data
        return False, b""

    def set_exception(self, exc: BaseException, cause: BaseException | None = None) -> None:
        self.exception = exc


def feed_in_chunks(stream: bytes, seed: int) -> tuple[Recorder, bool]:
    """Feed `stream` in random chunks; (the inner parser, whether the limits refused)."""
    rng = random.Random(seed)
    inner = Recorder()
    limits = HandshakeFrameLimits(inner, inner)
    position = 0
    while position < len(stream):
        step = rng.randint(1, 7)
        eof, _tail = limits.feed_data(stream[position : position + step])
        position += step
        if eof:
            return inner, True
    return inner, False


@pytest.mark.parametrize("seed", range(20))
def test_an_honest_handshake_passes_untouched_in_any_chunking(seed: int) -> None:
    # key exchange, HELLO (fragmented, a ping between), AUTH, then a big frame (post-AUTH)
    stream = (
        frame(BINARY, 48, masked=True)
        + frame(BINARY, 300, fin=False, masked=True)
        + frame(PING, 4, masked=True)
        + frame(CONTINUATION, MAX_HANDSHAKE_MESSAGE - 300, masked=True)
        + frame(BINARY, 84, masked=True)
        + frame(BINARY, 70_000, masked=True)
    )
    inner, refused = feed_in_chunks(stream, seed)
    assert not refused, f"seed {seed}"
    assert inner.fed == stream and inner.exception is None


@pytest.mark.parametrize("index", range(HANDSHAKE_MESSAGES))
def test_a_handshake_message_over_the_limit_is_refused_from_its_header(index: int) -> None:
    small = frame(BINARY, 48, masked=True)
    # Only the header of the big message is sent: no payload is needed to refuse it.
    big_header = frame(BINARY, MAX_HANDSHAKE_MESSAGE + 1, masked=True)[:8]
    stream = small * index + big_header
    for seed in range(5):
        inner, refused = feed_in_chunks(stream, seed)
        assert refused, f"seed {seed}"
        assert isinstance(inner.exception, aiohttp.WebSocketError)
        assert inner.exception.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


def test_a_fragmented_handshake_message_counts_as_a_whole() -> None:
    stream = frame(BINARY, 600, fin=False) + frame(CONTINUATION, 600)
    inner, refused = feed_in_chunks(stream, 0)
    assert refused and inner.exception is not None


def test_a_dialed_node_announcing_an_oversize_key_exchange_is_refused_from_its_header() -> None:
    """The dialer's side: whatever answers at a dialed address and announces an 8 MiB
    key exchange message is refused at once (`too_large`), not waited for until the
    handshake timeout."""

    async def announce_big(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_WIRE_FRAME)
        await ws.prepare(request)
        await ws.receive()  # the dialer's key exchange message
        assert request.transport is not None
        request.transport.write(bytes((0x82, 127)) + (MAX_WIRE_FRAME - 1).to_bytes(8, "big"))
        await ws.receive()  # trickles nothing more, until the dialer hangs up
        return ws

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get(P2P_PATH, announce_big)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with cluster() as nodes:
                dialer = await nodes.add(limits=fast_limits(handshake_timeout=4.0))
                started = asyncio.get_running_loop().time()
                with pytest.raises(P2PError) as caught:
                    await dialer.network.connect(f"127.0.0.1:{runner.addresses[0][1]}")
                assert caught.value.reason is PeerReason.TOO_LARGE
                assert asyncio.get_running_loop().time() - started < 2.0
        finally:
            await runner.cleanup()

    run(scenario)
