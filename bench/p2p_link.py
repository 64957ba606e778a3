"""What encrypting a peer link costs: frames/s through it against the raw cipher.

    python -m bench.p2p_link [--sizes 256,16384,1048576] [--megabytes 64]

For each frame size, from one run on one machine:
- `aead_fps`: ChaCha20-Poly1305 alone, seal then open of each frame (p2p/noise.py's
  LinkCipher, rekeys included): the bound the cipher puts on a link;
- `ws_plain_fps` / `ws_sealed_fps`: an aiohttp websocket on 127.0.0.1 carrying the same
  frames from one task to another, as they are and sealed/opened by a LinkCipher at the
  two ends: the cost of the cipher on the transport, nothing else changed;
- `link_fps`: gossip frames from one `Network` to another (handshake, rate checks,
  decoding, duplicate suppression, the host callback), the production path.

The plain websocket is a measurement of aiohttp here; a node has no plaintext mode.
Prints one `p2p_link: size=… aead_fps=… ws_plain_fps=… ws_sealed_fps=… link_fps=…
cipher_cost=…% cipher_share=…%` line per size: `cipher_cost` is how much slower the
sealed websocket is than the plain one; `cipher_share` (link_fps / aead_fps) is the part
of a frame's time on the production link that sealing and opening it take.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from types import MappingProxyType

import aiohttp
from aiohttp import web

from fluxchain.core.crypto import SigningKey, sha256
from p2p.limits import Limits, Rate, default_rates
from p2p.messages import MAX_WIRE_FRAME, Gossip, Kind, encode
from p2p.netgroup import LOOPBACK_NETWORKS
from p2p.network import Network
from p2p.noise import LinkCipher, NNHandshake
from p2p.peerbook import MemoryPeerStore

CHAIN_ID = "bench-p2p-link"
GENESIS_HASH = sha256(b"bench p2p link")
# Frames the sender may have in flight: well inside the default send queue (2,048 frames,
# 24 MiB), which drops gossip beyond it.
WINDOW = 512
WINDOW_BYTES = 8 * 1024 * 1024


def cipher_pair() -> tuple[LinkCipher, LinkCipher]:
    dialer, listener = NNHandshake(initiator=True), NNHandshake(initiator=False)
    listener.read_message_1(dialer.write_message_1())
    dialer.read_message_2(listener.write_message_2())
    return dialer.finish(), listener.finish()


def frames_of(size: int, count: int) -> list[bytes]:
    """`count` distinct TX gossip frames whose payload is `size` bytes."""
    return [encode(Gossip(Kind.TX, i.to_bytes(8, "big") + bytes(size - 8))) for i in range(count)]


def aead_fps(frames: list[bytes]) -> float:
    sender, receiver = cipher_pair()
    start = time.perf_counter()
    for frame in frames:
        receiver.open(sender.seal(frame))
    return len(frames) / (time.perf_counter() - start)


async def websocket_fps(frames: list[bytes], sealed: bool) -> float:
    """Frames/s from a client task to a server handler over one aiohttp websocket."""
    sender, receiver = cipher_pair()
    done = asyncio.Event()
    received = 0

    async def handler(request: web.Request) -> web.WebSocketResponse:
        nonlocal received
        ws = web.WebSocketResponse(max_msg_size=MAX_WIRE_FRAME, compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if sealed:
                receiver.open(msg.data)
            received += 1
            if received == len(frames):
                done.set()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/", max_msg_size=MAX_WIRE_FRAME) as ws,
    ):
        start = time.perf_counter()
        for frame in frames:
            await ws.send_bytes(sender.seal(frame) if sealed else frame)
        await done.wait()
        elapsed = time.perf_counter() - start
    await runner.cleanup()
    return len(frames) / elapsed


class CountingHost:
    """A NetworkHost that only counts the gossip it is handed."""

    def __init__(self) -> None:
        self.received = 0

    def status(self) -> tuple[int, bytes, int]:
        return 0, GENESIS_HASH, 1

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        self.received += 1
        return False

    def get_blocks(self, start_height: int, count: int) -> list[tuple[bytes, bytes]]:
        return []

    def on_peer_connected(self, peer_id: str) -> None:
        pass

    def on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        pass


def bench_limits() -> Limits:
    """Default limits without the per-peer rate caps, which would measure themselves."""
    unlimited = Rate(10**9, 10**9)
    rates = dict(default_rates())
    rates[Kind.TX] = unlimited
    return replace(
        Limits(),
        rates=MappingProxyType(rates),
        bytes_per_second=10**12,
        bytes_burst=10**12,
        uncapped_networks=LOOPBACK_NETWORKS,
    )


async def link_fps(size: int, count: int) -> float:
    """TX gossip frames/s from one Network to another over their encrypted link."""
    hosts = [CountingHost(), CountingHost()]
    networks = [
        Network(
            host,
            SigningKey.generate(),
            chain_id=CHAIN_ID,
            genesis_hash=GENESIS_HASH,
            listen_port=0,
            limits=bench_limits(),
            store=MemoryPeerStore(),
        )
        for host in hosts
    ]
    for network in networks:
        await network.start()
    sender, receiver = networks[0], hosts[1]
    try:
        await sender.connect(networks[1].listen_address)
        payloads = [i.to_bytes(8, "big") + bytes(size - 8) for i in range(count)]
        window = max(1, min(WINDOW, WINDOW_BYTES // size))
        start = time.perf_counter()
        async with asyncio.timeout(600):
            for index, payload in enumerate(payloads):
                while index - receiver.received >= window:
                    await asyncio.sleep(0.0005)
                if sender.broadcast(Kind.TX, payload) != 1:
                    raise SystemExit(f"frame {index} was not queued")
            while receiver.received < count:
                await asyncio.sleep(0.0005)
        return count / (time.perf_counter() - start)
    finally:
        for network in networks:
            await network.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,16384,1048576", help="payload bytes, comma list")
    parser.add_argument("--megabytes", type=int, default=64, help="data per measurement")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        count = max(200, min(20_000, args.megabytes * 1024 * 1024 // size))
        frames = frames_of(size, count)
        aead = aead_fps(frames)
        plain = asyncio.run(websocket_fps(frames, sealed=False))
        sealed = asyncio.run(websocket_fps(frames, sealed=True))
        link = asyncio.run(link_fps(size, count))
        cost = 100 * (plain / sealed - 1)
        share = 100 * link / aead
        print(
            f"p2p_link: size={size} frames={count} aead_fps={aead:.0f} "
            f"ws_plain_fps={plain:.0f} ws_sealed_fps={sealed:.0f} link_fps={link:.0f} "
            f"cipher_cost={cost:.0f}% cipher_share={share:.0f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
