"""A man in the middle on a real link: a TCP proxy on 127.0.0.1 between a dialing node and
the node it dials. Relaying honestly it sees no frame's content; altering, injecting,
replaying or reordering a single frame closes the link with `decrypt_failed`, penalises
the sending key, and hands nothing to the node's host; terminating the key exchange
with keys of its own fails the handshake (`bad_auth`), because each node signs the
handshake hash of the channel it is on."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from fluxchain.core.encoding import pack
from fluxchain.core.votes import Vote, VoteType
from p2p.errors import HandshakeError, PeerReason
from p2p.messages import MAX_WIRE_FRAME, Gossip, Kind, encode
from p2p.network import P2P_PATH
from p2p.noise import LinkCipher, NNHandshake
from p2p.peerbook import node_ban_key
from tests.p2p.harness import CHAIN_ID, Node, cluster, run
from tests.support.wait import wait_until_async

SEED = 22
BIG = 3_000  # the size of the payloads the tampering proxy picks out, by length alone

# What a proxy does to one websocket data message on its way to the dialed node: the
# messages to send on in its place.
Tamper = Callable[[bytes], list[bytes]]


def _xor_mask(payload: bytes, mask: bytes) -> bytes:
    if not mask:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


async def _read_ws_frame(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One websocket frame (RFC 6455 §5.2): first byte, unmasked payload, was it masked."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    masked = bool(second & 0x80)
    mask = await reader.readexactly(4) if masked else b""
    return first, _xor_mask(await reader.readexactly(length), mask), masked


def _ws_frame(first: int, payload: bytes, masked: bool) -> bytes:
    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        header = bytes((first, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + size.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = b"\x5a\xa5\x3c\xc3"
    return header + mask + _xor_mask(payload, mask)


@dataclass
class RelayProxy:
    """A TCP relay that parses the websocket frames it forwards and records every byte
    of their (unmasked) content; `tamper` may rewrite the dialer's data messages."""

    target: str
    tamper: Tamper | None = None
    seen: bytearray = field(default_factory=bytearray)
    _server: asyncio.Server | None = None
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, dialer_r: asyncio.StreamReader, dialer_w: asyncio.StreamWriter) -> None:
        host, port = self.target.rsplit(":", 1)
        listener_r, listener_w = await asyncio.open_connection(host, int(port))
        self._writers += [dialer_w, listener_w]
        pumps = [
            asyncio.ensure_future(self._pump(dialer_r, listener_w, self.tamper)),
            asyncio.ensure_future(self._pump(listener_r, dialer_w, None)),
        ]
        self._pumps.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        for writer in (dialer_w, listener_w):
            writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tamper: Tamper | None
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")  # the HTTP upgrade, as it is
            self.seen += head
            writer.write(head)
            while True:
                first, payload, masked = await _read_ws_frame(reader)
                self.seen += payload
                is_binary = first & 0x0F == 0x2
                out = tamper(payload) if tamper is not None and is_binary else [payload]
                for message in out:
                    writer.write(_ws_frame(first, message, masked))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def relay(target: str, tamper: Tamper | None = None) -> AsyncIterator[RelayProxy]:
    proxy = RelayProxy(target, tamper)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def _linked_through(proxy: RelayProxy, dialer: Node, listener: Node) -> None:
    assert await dialer.network.connect(proxy.address) == listener.id
    await wait_until_async(lambda: dialer.id in listener.peer_ids(), what="the link through")


def test_a_relaying_man_in_the_middle_reads_no_frame() -> None:
    """Everything the nodes say through the proxy arrives, and none of it is legible to
    the proxy: no tx or vote payload, no chain id, not even the node keys of the HELLOs."""
    rng = random.Random(SEED)

    async def scenario() -> None:
        async with cluster() as nodes:
            listener, dialer = await nodes.add(), await nodes.add()
            async with relay(listener.address) as proxy:
                await _linked_through(proxy, dialer, listener)
                tx_out = b"known-tx-" + rng.randbytes(24).hex().encode()
                tx_back = b"known-tx-" + rng.randbytes(24).hex().encode()
                vote = Vote.create(dialer.key, CHAIN_ID, VoteType.PREVOTE, 5, 0, rng.randbytes(32))
                vote_bytes = bytes(pack(vote.to_fields()))
                dialer.network.broadcast(Kind.TX, tx_out)
                dialer.network.broadcast(Kind.VOTE, vote_bytes)
                listener.network.broadcast(Kind.TX, tx_back)
                await wait_until_async(
                    lambda: (
                        tx_out in listener.host.payloads()
                        and vote_bytes in listener.host.payloads(Kind.VOTE)
                        and tx_back in dialer.host.payloads()
                    ),
                    what="gossip both ways through the proxy",
                )
                seen = bytes(proxy.seen)
                # The proxy did see the link: the upgrade request is plain HTTP.
                assert f"GET {P2P_PATH}".encode() in seen
                for secret in (
                    tx_out,
                    tx_back,
                    vote_bytes,
                    vote.signature,
                    CHAIN_ID.encode(),
                    dialer.key.public_key,
                    listener.key.public_key,
                ):
                    assert secret not in seen, secret

    run(scenario)


@dataclass
class OneShot:
    """Picks out the dialer's data messages of at least BIG bytes (the test's payloads,
    recognised by length alone: the proxy cannot read them) and does `move` once."""

    move: str
    held: list[bytes] = field(default_factory=list)
    done: bool = False
    big: int = 0  # data messages of at least BIG bytes seen so far

    def __call__(self, message: bytes) -> list[bytes]:
        if len(message) >= BIG:
            self.big += 1
        if self.done or len(message) < BIG:
            return [message]
        if self.move == "alter":
            self.done = True
            return [message[:40] + bytes((message[40] ^ 0x01,)) + message[41:]]
        if self.move == "inject":
            self.done = True
            forged = encode(Gossip(Kind.TX, b"injected-" + b"\x00" * BIG))
            return [forged, message]
        if self.move == "replay":
            self.done = True
            return [message, message]
        assert self.move == "reorder"
        if not self.held:
            self.held.append(message)
            return []
        self.done = True
        return [message, self.held.pop()]


@pytest.mark.parametrize("move", ["alter", "inject", "replay", "reorder"])
def test_a_man_in_the_middle_cannot_alter_inject_replay_or_reorder_a_frame(move: str) -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            listener, dialer = await nodes.add(), await nodes.add()
            one_shot = OneShot(move)
            async with relay(listener.address, one_shot) as proxy:
                await _linked_through(proxy, dialer, listener)
                first = b"first-" + b"1" * BIG
                second = b"second-" + b"2" * BIG
                dialer.network.broadcast(Kind.TX, first)
                # Two websocket messages: frames queued in one turn would share a BATCH.
                await wait_until_async(lambda: one_shot.big == 1, what="the first on the wire")
                dialer.network.broadcast(Kind.TX, second)
                await wait_until_async(
                    lambda: (dialer.id, "decrypt_failed") in listener.host.disconnected,
                    what="the listener closing the link for a frame that does not open",
                )
                # No ban: the receiver cannot tell the sender's doing from the relay's.
                assert not listener.network.book.is_banned(node_ban_key(dialer.key.public_key))
                got = listener.host.payloads()
                assert not [p for p in got if p.startswith(b"injected-")]
                # What was not the next sealed frame reached no handler; a replay's first,
                # genuine copy is the only one delivered.
                expected = [first] if move == "replay" else []
                assert got == expected, [p[:10] for p in got]

    run(scenario)


class KeySwappingMiddle:
    """An active man in the middle: a /p2p listener that runs the key exchange with the
    dialer and, with keys of its own, with the real node, then passes every frame across
    (opened with one link's keys, sealed with the other's), the HELLOs and AUTHs too."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.relayed = 0
        self._runner: web.AppRunner | None = None
        self.address = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(P2P_PATH, self._accept)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _accept(self, request: web.Request) -> web.WebSocketResponse:
        dialer = web.WebSocketResponse(max_msg_size=MAX_WIRE_FRAME)
        await dialer.prepare(request)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"ws://{self.target}{P2P_PATH}", max_msg_size=MAX_WIRE_FRAME
            ) as node,
        ):
            # Responder towards the dialer, initiator towards the node.
            towards_dialer = NNHandshake(initiator=False)
            towards_dialer.read_message_1((await dialer.receive()).data)
            await dialer.send_bytes(towards_dialer.write_message_2())
            towards_node = NNHandshake(initiator=True)
            await node.send_bytes(towards_node.write_message_1())
            towards_node.read_message_2((await node.receive()).data)
            dialer_link, node_link = towards_dialer.finish(), towards_node.finish()
            await asyncio.gather(
                self._pass(dialer, dialer_link, node, node_link),
                self._pass(node, node_link, dialer, dialer_link),
                return_exceptions=True,
            )
        await dialer.close()
        return dialer

    async def _pass(
        self,
        source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        source_link: LinkCipher,
        sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        sink_link: LinkCipher,
    ) -> None:
        async for msg in source:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
            await sink.send_bytes(sink_link.seal(source_link.open(msg.data)))
            self.relayed += 1
        await sink.close()


def test_a_man_in_the_middle_with_its_own_keys_fails_the_handshake() -> None:
    """Both nodes sign the handshake hash of the link they see; the middle's two links
    have two different hashes, so each node refuses the other's AUTH (`bad_auth`)."""

    async def scenario() -> None:
        async with cluster() as nodes:
            listener, dialer = await nodes.add(), await nodes.add()
            middle = KeySwappingMiddle(listener.address)
            await middle.start()
            try:
                with pytest.raises(HandshakeError) as caught:
                    await dialer.network.connect(middle.address)
                assert caught.value.reason is PeerReason.BAD_AUTH
                # HELLO and AUTH went across both ways: it is the signature that failed.
                assert middle.relayed >= 3
                assert listener.peer_ids() == set() and dialer.peer_ids() == set()
                assert listener.host.connected == [] and dialer.host.connected == []
            finally:
                await middle.stop()

    run(scenario)
