"""Attacks on encrypted peer links by a man in the middle who holds no key (review of
issue 22): what it can do to the websocket around the sealed frames, and what a node
must not conclude from it.

The relay below is the one of test_man_in_the_middle.py, rewriting both directions and
able to put any websocket frame on the wire (text, close, a bare oversize header): all
of that is unauthenticated, so none of it may cost the honest node at the other end a
ban. The last test is about dialing a node by its key: without it, whoever answers at an
address (a seed's, say) is taken for the node meant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp import WSCloseCode, web

from fluxchain.core.crypto import SigningKey
from p2p.errors import HandshakeError
from p2p.messages import MAX_WIRE_FRAME, PROTOCOL_VERSION, Hello, Kind, encode
from p2p.network import CLOSE_REFUSED, P2P_PATH
from p2p.noise import MESSAGE_1_LEN, NNHandshake
from p2p.peerbook import ip_ban_key, node_ban_key
from tests.p2p.harness import (
    CHAIN_ID,
    GENESIS_HASH,
    Node,
    cluster,
    fast_limits,
    link,
    raw_peer,
    run,
)
from tests.p2p.test_man_in_the_middle import RelayProxy, _read_ws_frame, _ws_frame
from tests.support.wait import wait_until_async

BIG = 3_000  # the test's payloads, picked out by length alone (the relay reads nothing)
LOOPBACK = "127.0.0.1"
# Websocket first bytes (FIN + opcode, RFC 6455 §5.2).
TEXT, BINARY, CLOSE = 0x81, 0x82, 0x88

# What the relay does with one websocket frame (first byte, unmasked payload, masked?):
# the wire bytes to send on in its place.
Rewrite = Callable[[int, bytes, bool], list[bytes]]


@dataclass
class RewritingRelay(RelayProxy):
    """A TCP relay between a dialer and the node it dials that may rewrite, drop or add
    websocket frames in either direction (it holds no key: the sealed content is opaque)."""

    to_listener: Rewrite | None = None
    to_dialer: Rewrite | None = None

    async def _relay(self, dialer_r: asyncio.StreamReader, dialer_w: asyncio.StreamWriter) -> None:
        host, port = self.target.rsplit(":", 1)
        listener_r, listener_w = await asyncio.open_connection(host, int(port))
        self._writers += [dialer_w, listener_w]
        pumps = [
            asyncio.ensure_future(self._rewrite(dialer_r, listener_w, self.to_listener)),
            asyncio.ensure_future(self._rewrite(listener_r, dialer_w, self.to_dialer)),
        ]
        self._pumps.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        for writer in (dialer_w, listener_w):
            writer.close()

    async def _rewrite(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rewrite: Rewrite | None
    ) -> None:
        try:
            writer.write(await reader.readuntil(b"\r\n\r\n"))  # the HTTP upgrade, as it is
            while True:
                first, payload, masked = await _read_ws_frame(reader)
                if rewrite is None:
                    writer.write(_ws_frame(first, payload, masked))
                else:
                    for wire in rewrite(first, payload, masked):
                        writer.write(wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def rewriting_relay(
    target: str, *, to_listener: Rewrite | None = None, to_dialer: Rewrite | None = None
) -> AsyncIterator[RewritingRelay]:
    proxy = RewritingRelay(target, to_listener=to_listener, to_dialer=to_dialer)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def _flip_bit(payload: bytes, index: int) -> bytes:
    return payload[:index] + bytes((payload[index] ^ 0x01,)) + payload[index + 1 :]


def _close_frame(code: int, reason: str, masked: bool) -> bytes:
    return _ws_frame(CLOSE, code.to_bytes(2, "big") + reason.encode(), masked)


class OnFirstBig:
    """Passes frames on untouched until the dialer's first data frame of BIG bytes or
    more (the test's gossip, so the link is up), then does `move` to it once."""

    def __init__(self, move: str) -> None:
        self.move = move
        self.done = False

    def __call__(self, first: int, payload: bytes, masked: bool) -> list[bytes]:
        genuine = _ws_frame(first, payload, masked)
        if self.done or first != BINARY or len(payload) < BIG:
            return [genuine]
        self.done = True
        if self.move == "alter":
            return [_ws_frame(first, _flip_bit(payload, 40), masked)]
        if self.move == "text":
            return [_ws_frame(TEXT, b"not a sealed frame", masked), genuine]
        assert self.move == "oversize"
        # A bare header announcing a message over the limit: aiohttp refuses it from the
        # length alone, before any payload arrives (so none is sent).
        mask_bit = 0x80 if masked else 0
        header = bytes((BINARY, mask_bit | 127)) + (MAX_WIRE_FRAME + 1).to_bytes(8, "big")
        return [header + (b"\x5a\xa5\x3c\xc3" if masked else b"")]


def _banned(node: Node, other: Node) -> list[str]:
    """Which bans `node` holds against `other` (its key, or the loopback IP they share)."""
    book = node.network.book
    keys = [node_ban_key(other.key.public_key), ip_ban_key(LOOPBACK)]
    return [key for key in keys if book.is_banned(key)]


@pytest.mark.parametrize("move", ["alter", "text", "oversize"])
def test_a_man_in_the_middle_cannot_get_an_honest_peer_banned_by_tampering_with_its_link(
    move: str,
) -> None:
    """One frame altered on the way, or a text frame or an oversize frame header put on
    the websocket by someone on the path, ends the link at most: the receiver cannot
    tell it from the sender's doing, so it must not ban the sender's key (nor its IP),
    and the honest dialer links again at once once the attacker is off the path."""

    async def scenario() -> None:
        async with cluster() as nodes:
            limits = fast_limits(ban_loopback=True)
            listener, dialer = await nodes.add(limits=limits), await nodes.add(limits=limits)
            async with rewriting_relay(listener.address, to_listener=OnFirstBig(move)) as proxy:
                assert await dialer.network.connect(proxy.address) == listener.id
                await wait_until_async(
                    lambda: dialer.id in listener.peer_ids(), what="the link through"
                )
                payload = b"tx-" + b"t" * BIG
                dialer.network.broadcast(Kind.TX, payload)
                await wait_until_async(
                    lambda: bool(listener.host.disconnected) or payload in listener.host.payloads(),
                    what="the listener dealing with the tampered stream",
                )
            assert _banned(listener, dialer) == [], listener.host.disconnected
            # Off the path (the relay is gone, and the link through it), the honest
            # nodes link directly as before (the listener may redial first: it learned
            # the dialer's address from its HELLO).
            await wait_until_async(
                lambda: (
                    listener.id not in dialer.peer_ids() and dialer.id not in listener.peer_ids()
                ),
                what="the link through the relay gone",
            )
            await link(dialer, listener)

    run(scenario)


def test_a_tampered_key_exchange_gets_neither_node_banned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One bit of the dialer's ephemeral key flipped on the way: the two ends derive
    different keys and the handshake fails (`bad_key_exchange` at the dialer). Neither
    end can tell who broke it, so neither may ban the other's address; today both do,
    the dialer for the failed tag, the listener for the close reason the dialer sends."""

    def flip_message_1(first: int, payload: bytes, masked: bool) -> list[bytes]:
        if first == BINARY and len(payload) == MESSAGE_1_LEN:
            payload = _flip_bit(payload, 0)
        return [_ws_frame(first, payload, masked)]

    async def scenario() -> None:
        async with cluster() as nodes:
            limits = fast_limits(ban_loopback=True)
            listener, dialer = await nodes.add(limits=limits), await nodes.add(limits=limits)
            async with rewriting_relay(listener.address, to_listener=flip_message_1) as proxy:
                with pytest.raises(HandshakeError):
                    await dialer.network.connect(proxy.address)
                await wait_until_async(
                    lambda: "event=handshake_failed direction=inbound" in caplog.text,
                    what="the listener's side of the handshake to fail too",
                )
            assert _banned(dialer, listener) == []
            assert _banned(listener, dialer) == []
            assert await dialer.network.connect(listener.address) == listener.id

    with caplog.at_level(logging.INFO, logger="fluxchain.p2p"):
        run(scenario)


def test_a_forged_close_reason_during_the_handshake_does_not_get_the_peer_banned() -> None:
    """The relay answers the dialer's key exchange with a close frame of its own making,
    reason `bad_auth`. A close frame is unauthenticated and its reason is the remote's
    claim about *us*: the dialer must not take it as evidence against the node it dialed
    (today it bans the node's IP for 24 h, as if the node had sent a bad signature)."""

    def forge_close(first: int, payload: bytes, masked: bool) -> list[bytes]:
        if first == BINARY:
            return [_close_frame(4000, "bad_auth", masked)]
        return [_ws_frame(first, payload, masked)]

    async def scenario() -> None:
        async with cluster() as nodes:
            limits = fast_limits(ban_loopback=True)
            listener, dialer = await nodes.add(limits=limits), await nodes.add(limits=limits)
            async with rewriting_relay(listener.address, to_dialer=forge_close) as proxy:
                with pytest.raises(HandshakeError):
                    await dialer.network.connect(proxy.address)
            assert _banned(dialer, listener) == []
            assert await dialer.network.connect(listener.address) == listener.id

    run(scenario)


def test_a_node_dialed_by_its_key_refuses_an_impostor_at_its_address() -> None:
    """A seed or persistent peer named `node_key@host:port` (CometBFT's `id@host:port`):
    whoever answers at that address with another key, a man in the middle on the way
    to the seed or a squatter on its address, is refused, so a joining node cannot be
    handed an attacker's view of the network in place of its seed's. Today the address
    form does not exist and any key that answers is accepted."""

    async def scenario() -> None:
        async with cluster() as nodes:
            seed, impostor, joining = await nodes.add(), await nodes.add(), await nodes.add()
            with pytest.raises(HandshakeError):
                await joining.network.connect(f"{seed.id}@{impostor.address}")
            assert joining.peer_ids() == set()
            assert impostor.host.connected == []
            assert await joining.network.connect(f"{seed.id}@{seed.address}") == seed.id

    run(scenario)


class SelfClaimingListener:
    """Whatever answers at an address (a man in the middle on the way to a seed, or a
    squatter on its port) and, after a correct key exchange, sends a HELLO naming the
    *dialer's own* node key, which the dialer handed to every peer it ever met. It
    cannot sign with that key, so it closes before AUTH."""

    def __init__(self, claimed_key: bytes) -> None:
        self.claimed_key = claimed_key
        self.dials = 0
        self.address = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(P2P_PATH, self._accept)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, 0).start()
        self.address = f"{LOOPBACK}:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _accept(self, request: web.Request) -> web.WebSocketResponse:
        self.dials += 1
        ws = web.WebSocketResponse(max_msg_size=MAX_WIRE_FRAME)
        await ws.prepare(request)
        noise = NNHandshake(initiator=False)
        noise.read_message_1((await ws.receive()).data)
        await ws.send_bytes(noise.write_message_2())
        link = noise.finish()
        hello = Hello(PROTOCOL_VERSION, CHAIN_ID, GENESIS_HASH, self.claimed_key, "", bytes(32))
        await ws.send_bytes(link.seal(encode(hello)))
        await ws.close()
        return ws


def test_an_unproven_self_claim_does_not_make_a_node_forget_its_seed() -> None:
    """Answering a node's dial to its seed once with a HELLO that names the node's own
    key makes it take the seed's address for itself: the address is dropped from the
    book (persistent or not) and never dialed again for the rest of the run, so a man in
    the middle present for one connection cuts a joining node off its only seed. The
    claim is unproven (no AUTH can follow it): it must cost the address a failed dial
    (backoff) at most, and the node must keep dialing its seed."""

    async def scenario() -> None:
        async with cluster() as nodes:
            joining_key = SigningKey.generate()
            liar = SelfClaimingListener(joining_key.public_key)
            await liar.start()
            try:
                joining = await nodes.add(key=joining_key, persistent=[liar.address])
                await wait_until_async(lambda: liar.dials >= 1, what="the first dial")
                await wait_until_async(
                    lambda: liar.dials >= 2,
                    timeout=8.0,
                    what="the node dialing its seed's address again",
                )
                assert liar.address in joining.network.book
            finally:
                await liar.stop()

    run(scenario)


def test_a_key_exchange_message_announced_over_its_size_is_refused_from_its_header() -> None:
    """Before the key exchange a stranger may announce an 8 MiB websocket message in
    place of the 32-byte key and trickle it in: the node accepts it and waits out the
    handshake timeout, and an attacker with addresses in a few networks does so in all 40
    inbound slots at once (up to 320 MiB for peers that proved nothing). A message
    longer than the handshake step can be is refused from its length header, at once."""

    def announce_big(first: int, payload: bytes, masked: bool) -> list[bytes]:
        if first != BINARY:
            return [_ws_frame(first, payload, masked)]
        mask_bit = 0x80 if masked else 0
        header = bytes((BINARY, mask_bit | 127)) + (MAX_WIRE_FRAME - 1).to_bytes(8, "big")
        return [header + (b"\x5a\xa5\x3c\xc3" if masked else b"")]

    async def scenario() -> None:
        async with cluster() as nodes:
            listener = await nodes.add(limits=fast_limits(handshake_timeout=4.0))
            async with (
                rewriting_relay(listener.address, to_listener=announce_big) as proxy,
                raw_peer(proxy.address) as stranger,
            ):
                await stranger.send_wire(bytes(MESSAGE_1_LEN))
                # Well before the handshake timeout: the node did not wait for the body.
                # (1009, message too big, as aiohttp answers an oversize header; or a
                # refusal with its reason code.)
                code, reason = await stranger.closed_with(timeout=2.0)
                assert code in (WSCloseCode.MESSAGE_TOO_BIG, CLOSE_REFUSED), (code, reason)

    run(scenario)


def test_a_node_joins_through_a_seed_whose_inbound_slots_are_all_taken() -> None:
    """Every node keeps its seed as a persistent peer (no seed mode), so the nodes that
    joined through a seed, or an attacker's keys from a few networks, hold all of its
    inbound slots for good. The next node to join through it is refused
    (`too_many_peers`) at every redial and never learns an address: it cannot join at
    all. A seed must still hand a joining node addresses when its slots are full."""

    async def scenario() -> None:
        async with cluster() as nodes:
            # Two slots stand for the 40; a long heartbeat keeps the holders in them.
            seed = await nodes.add(limits=fast_limits(max_inbound=2, heartbeat=60.0))
            first = await nodes.add(persistent=[seed.address])
            second = await nodes.add(persistent=[seed.address])
            await wait_until_async(
                lambda: seed.peer_ids() == {first.id, second.id}, what="the seed's slots full"
            )
            joining = await nodes.add(persistent=[seed.address])
            await wait_until_async(
                lambda: bool(joining.peer_ids() & {first.id, second.id}),
                timeout=8.0,
                what="the joining node reaching the network through its seed",
            )

    run(scenario)
