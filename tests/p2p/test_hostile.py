"""Hostile peers: garbage, non-canonical and oversize frames, broken handshakes and
floods get the sender disconnected, and banned where only the holder of its key can have
sent it (a frame that opens with the link's keys but breaks the rules); what anyone on
the path can forge (anything before AUTH, the unsealed websocket around the sealed
frames) ends the connection without a ban. The node keeps serving its honest peers
(gossip still flows both ways)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from fluxchain.core.encoding import pack
from p2p.handshake import LocalNode, new_hello
from p2p.limits import Limits, Rate
from p2p.messages import MAX_FRAME, Auth, Gossip, Hello, Kind, encode
from p2p.network import CLOSE_REFUSED
from p2p.peerbook import ip_ban_key, node_ban_key
from tests.p2p.harness import (
    CHAIN_ID,
    GENESIS_HASH,
    Node,
    RawPeer,
    cluster,
    fast_limits,
    limits_with_rates,
    raw_peer,
    run,
)
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


async def assert_gossip_flows(target: Node, honest: Node, tag: bytes) -> None:
    """Both directions between the target and its honest peer still work."""
    assert honest.id in target.peer_ids()
    honest.network.broadcast(Kind.TX, b"from-honest-" + tag)
    target.network.broadcast(Kind.TX, b"from-target-" + tag)
    await wait_until_async(
        lambda: (
            b"from-honest-" + tag in target.host.payloads()
            and b"from-target-" + tag in honest.host.payloads()
        ),
        what="gossip between the target and its honest peer",
    )


Attack = Callable[[RawPeer], Awaitable[None]]


def hostile_scenario(
    attack: Attack,
    *,
    handshake_first: bool,
    key_exchange_first: bool = True,
    expected_close: tuple[int | None, str],
    reason: str,
    banned: bool = True,
    limits: Limits | None = None,
    check: Callable[[Node], None] | None = None,
) -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            target = await nodes.add(limits=limits or fast_limits())
            honest = await nodes.add()
            await honest.network.connect(target.address)
            await assert_gossip_flows(target, honest, b"before")
            async with raw_peer(target.address) as raw:
                if handshake_first:
                    await raw.handshake()
                    await wait_until_async(lambda: raw.id in target.peer_ids(), what="raw peer in")
                elif key_exchange_first:
                    await raw.secure()
                    assert isinstance(await raw.receive(), Hello)
                with contextlib.suppress(ConnectionError):
                    await attack(raw)
                assert await raw.closed_with() == expected_close
            await wait_until_async(lambda: raw.id not in target.peer_ids(), what="raw peer out")
            if handshake_first and not banned:
                # The websocket around the sealed frames: forgeable by anyone on the path.
                assert (raw.id, reason) in target.host.disconnected
                assert not target.network.book.is_banned(node_ban_key(raw.key.public_key))
                async with raw_peer(target.address, raw.key) as again:
                    await again.handshake()
                    await wait_until_async(lambda: raw.id in target.peer_ids(), what="back in")
            elif handshake_first:
                # A proven key is banned, and its next handshake is refused.
                assert (raw.id, reason) in target.host.disconnected
                assert target.network.book.is_banned(node_ban_key(raw.key.public_key))
                async with raw_peer(target.address, raw.key) as again:
                    await again.secure()
                    assert isinstance(await again.receive(), Hello)
                    await again.send(
                        new_hello(LocalNode(raw.key, CHAIN_ID, GENESIS_HASH, ""), b"\x05" * 32)
                    )
                    assert await again.closed_with() == (CLOSE_REFUSED, "banned")
            else:
                # Before AUTH nothing is proven: a man in the middle can finish the key
                # exchange with the node and send this in the peer's place. No ban of
                # the address, even where loopback is bannable (`ban_loopback`).
                assert not target.network.book.is_banned(ip_ban_key("127.0.0.1"))
                async with raw_peer(target.address) as again:
                    await again.handshake()
                    await wait_until_async(lambda: again.id in target.peer_ids(), what="in")
            await assert_gossip_flows(target, honest, b"after")
            if check is not None:
                check(target)

    run(scenario)


BAN_LOOPBACK = fast_limits(ban_loopback=True)


def test_garbage_before_the_handshake() -> None:
    async def attack(raw: RawPeer) -> None:
        await raw.send_raw(b"\xc1\xc1 this is not msgpack")

    hostile_scenario(
        attack,
        handshake_first=False,
        expected_close=(CLOSE_REFUSED, "malformed"),
        reason="malformed",
        limits=BAN_LOOPBACK,
    )


def test_garbage_instead_of_the_key_exchange() -> None:
    async def attack(raw: RawPeer) -> None:
        await raw.send_wire(b"\xc1\xc1 this is not an X25519 key")

    hostile_scenario(
        attack,
        handshake_first=False,
        key_exchange_first=False,
        expected_close=(CLOSE_REFUSED, "bad_key_exchange"),
        reason="bad_key_exchange",
        limits=BAN_LOOPBACK,
    )


def test_unsealed_frame_before_the_handshake() -> None:
    """After the key exchange, a HELLO in the clear does not authenticate."""

    async def attack(raw: RawPeer) -> None:
        await raw.send_wire(
            encode(new_hello(LocalNode(raw.key, CHAIN_ID, GENESIS_HASH, ""), b"\x05" * 32))
        )

    hostile_scenario(
        attack,
        handshake_first=False,
        expected_close=(CLOSE_REFUSED, "decrypt_failed"),
        reason="decrypt_failed",
        limits=BAN_LOOPBACK,
    )


def test_wrong_handshake() -> None:
    async def attack(raw: RawPeer) -> None:
        await raw.send(Auth(b"\x01" * 64))

    hostile_scenario(
        attack,
        handshake_first=False,
        expected_close=(CLOSE_REFUSED, "unexpected_message"),
        reason="unexpected_message",
        limits=BAN_LOOPBACK,
    )


def test_non_canonical_frame() -> None:
    async def attack(raw: RawPeer) -> None:
        # GET_PEERS (kind 22) with the kind written as a uint16.
        await raw.send_raw(b"\x91\xcd\x00\x16")

    hostile_scenario(
        attack,
        handshake_first=True,
        expected_close=(CLOSE_REFUSED, "banned"),
        reason="non_canonical",
    )


def test_garbage_after_the_handshake() -> None:
    async def attack(raw: RawPeer) -> None:
        await raw.send_raw(pack([99, b"unknown kind"]))

    hostile_scenario(
        attack,
        handshake_first=True,
        expected_close=(CLOSE_REFUSED, "banned"),
        reason="unknown_kind",
    )


def test_text_frame() -> None:
    async def attack(raw: RawPeer) -> None:
        await raw.ws.send_str("hello?")

    # A text frame is outside the link's cipher: anyone on the path can put it there.
    hostile_scenario(
        attack,
        handshake_first=True,
        expected_close=(CLOSE_REFUSED, "not_binary"),
        reason="not_binary",
        banned=False,
    )


def test_second_hello_after_the_handshake() -> None:
    async def attack(raw: RawPeer) -> None:
        await raw.send(Hello(1, "x", b"\x00" * 32, raw.key.public_key, "", b"\x00" * 32))

    hostile_scenario(
        attack,
        handshake_first=True,
        expected_close=(CLOSE_REFUSED, "banned"),
        reason="unexpected_message",
    )


def test_oversize_frame() -> None:
    async def attack(raw: RawPeer) -> None:
        await raw.send_raw(b"\x00" * (MAX_FRAME + 1))

    # aiohttp refuses the frame from its header and closes with 1009 (message too big);
    # the header is outside the link's cipher, so it costs the key nothing.
    hostile_scenario(
        attack, handshake_first=True, expected_close=(1009, ""), reason="too_large", banned=False
    )


def test_flood_past_the_rate_limit() -> None:
    limits = limits_with_rates(fast_limits(), TX=Rate(20, 20))

    async def attack(raw: RawPeer) -> None:
        for index in range(500):
            await raw.send(Gossip(Kind.TX, b"flood-%d" % index))

    hostile_scenario(
        attack,
        handshake_first=True,
        expected_close=(CLOSE_REFUSED, "banned"),
        reason="rate_limited",
        limits=limits,
        check=only_the_burst_got_through,
    )


def only_the_burst_got_through(target: Node) -> None:
    flood = [p for p in target.host.payloads() if p.startswith(b"flood-")]
    # 20 in the burst, plus what 20/s refills while 50 over-limit frames arrive.
    assert 20 <= len(flood) <= 25, len(flood)


def test_a_peer_that_stops_reading_is_disconnected() -> None:
    """Gossip to a stuck peer is dropped once its queue is full, and a peer that does not
    accept a frame within the write timeout is disconnected as slow."""

    async def scenario() -> None:
        limits = fast_limits(write_timeout=0.3, send_queue_bytes=256 * 1024)
        async with cluster() as nodes:
            target = await nodes.add(limits=limits)
            honest = await nodes.add()
            await honest.network.connect(target.address)
            async with raw_peer(target.address) as stuck:
                await stuck.handshake()
                await wait_until_async(lambda: stuck.id in target.peer_ids(), what="stuck peer in")
                # The stuck peer never reads again; the target keeps broadcasting.
                sent = 0
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while stuck.id in target.peer_ids():
                    assert loop.time() < deadline, "the stuck peer was never dropped"
                    target.network.broadcast(Kind.TX, b"%d" % sent + b"." * 16_000)
                    sent += 1
                    if sent % 20 == 0:
                        await asyncio.sleep(0.005)
            assert (stuck.id, "slow_peer") in target.host.disconnected
            assert honest.id in target.peer_ids()
            await assert_gossip_flows(target, honest, b"after")

    run(scenario)
