"""fix27l 1: a learned name is dialed at each IP it resolves to that the learn rule
allows, in order, until one connects, as aiohttp's own lookup did.

Bug: the dial went to the first allowed IP only. A name whose first address is
unreachable (IPv6 first on a host whose IPv6 is broken, one dead A record of several)
failed every dial and was forgotten after `max_failures`, though its other address
answered. Now each allowed IP is tried within the dial's `connect_timeout` (the time
left shared among the IPs left, so a silent one cannot eat it all), at most
`MAX_DIAL_IPS` of them. The names resolve only in the test's event loop (`Wire`):
every connect but to 127.0.0.1 is refused without touching a network, or held
unanswered as a black hole would."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from p2p.errors import P2PError, PeerReason
from p2p.messages import parse_address
from p2p.network import MAX_DIAL_IPS
from tests.p2p.harness import cluster, run
from tests.p2p.test_fix27p_learned_name_resolved_before_dial import NAME, Wire
from tests.support.wait import wait_until_async


@contextmanager
def silent(loop: asyncio.AbstractEventLoop, ips: set[str]) -> Iterator[list[str]]:
    """Connects to `ips` never answer (a dropped SYN); the list records them."""
    connect = loop.sock_connect
    held: list[str] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        if address[0] in ips:
            held.append(address[0])
            await asyncio.Event().wait()
        await connect(sock, address)

    loop.sock_connect = sock_connect  # type: ignore[method-assign]
    try:
        yield held
    finally:
        loop.sock_connect = connect  # type: ignore[method-assign]


@pytest.mark.parametrize("dead", ["refused", "silent"])
def test_fix27l_a_learned_name_whose_first_ip_is_dead_links_at_the_next(dead: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        wire = Wire(["::1", "127.0.0.2", "127.0.0.1"])
        with wire.installed(loop), silent(loop, {"::1"} if dead == "silent" else set()) as held:
            async with cluster() as nodes:
                target = await nodes.add()
                node = await nodes.add()
                _host, port = parse_address(target.address)
                learned = f"{NAME}:{port}"
                assert node.network.book.add_discovered(learned, source="81.2.71.9")
                await wait_until_async(lambda: target.id in node.peer_ids(), what="linked")
                info = node.peer(target.id)
                assert info is not None and info.address == learned
                # In the resolver's order, the dead ones first (a silent one is held
                # before the wire records it).
                tried = held[:1] + [ip for ip, p in wire.connects if p == port]
                assert tried[:3] == ["::1", "127.0.0.2", "127.0.0.1"], (held, wire.connects)
                if dead == "silent":
                    assert held and set(held) == {"::1"}
                entry = node.network.book.entry(learned)
                assert entry is not None and entry.failures == 0

    run(scenario)


def test_fix27l_a_dial_tries_at_most_max_dial_ips_of_a_name() -> None:
    """A name answering many dead IPs costs one dial a bounded number of connects."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ips = [f"127.0.0.{i}" for i in range(2, 2 + MAX_DIAL_IPS + 3)]
        wire = Wire(ips)
        with wire.installed(loop):
            async with cluster() as nodes:
                node = await nodes.add()
                with pytest.raises(P2PError) as failed:
                    await node.network.connect(f"{NAME}:26600")
                assert failed.value.reason is PeerReason.CONNECT_FAILED
                assert [ip for ip, _port in wire.connects] == ips[:MAX_DIAL_IPS]

    run(scenario)
