"""fix27p: a learned host name is resolved and judged before any byte is sent to it.

Attack: a hostile peer advertises `meta.evil.example:80`, a name resolving to
169.254.169.254 (or to the node's own loopback, or a private host of a network the node
is no part of). Before this branch the node judged the name only once its socket had
connected, after aiohttp had sent the websocket upgrade GET: the metadata service got a
request. Now a learned name is resolved first, every IP it resolves to is judged by the
learn rule, and the dial goes to an allowed IP literal (a second lookup cannot rebind
it); none allowed: `unroutable_address`, with no TCP connection opened. The names here
(`peer.test`, RFC 6761's) resolve only in each test's own event loop; every socket
connect is recorded, and none but to 127.0.0.1 is made."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from p2p.errors import HandshakeError, P2PError, PeerReason
from p2p.messages import parse_address
from p2p.netgroup import LearnRule
from tests.p2p.harness import cluster, run
from tests.support.wait import wait_until_async

NAME = "peer.test"


class Wire:
    """The test loop's resolver (NAME answers `ips`) and a record of every socket
    connect: one to 127.0.0.1 is made, any other is refused without touching a network."""

    def __init__(self, ips: list[str]) -> None:
        self.ips = ips
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []

    @contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        resolve, connect = loop.getaddrinfo, loop.sock_connect

        async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host != NAME:
                return await resolve(host, *args, **kwargs)
            self.lookups.append(host)
            if not self.ips:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            answers: list[Any] = []
            for ip in self.ips:
                answers += await resolve(ip, *args, **kwargs)
            return answers

        async def sock_connect(sock: socket.socket, address: Any) -> None:
            self.connects.append((address[0], address[1]))
            if address[0] != "127.0.0.1":
                raise ConnectionRefusedError(f"the test opens no connection to {address[0]}")
            await connect(sock, address)

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        loop.sock_connect = sock_connect  # type: ignore[method-assign]
        try:
            yield
        finally:
            loop.getaddrinfo = resolve  # type: ignore[method-assign]
            loop.sock_connect = connect  # type: ignore[method-assign]


async def _listener() -> tuple[asyncio.Server, list[int]]:
    """A server on 127.0.0.1 that counts the connections it accepts."""
    accepted: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    return server, accepted


@pytest.mark.parametrize(
    ("ip", "rule"),
    [
        ("169.254.169.254", None),  # the metadata service: refused on every node
        ("10.0.0.1", LearnRule(loopback=False, private=False)),  # a public node
        ("127.0.0.1", LearnRule(loopback=False, private=False)),
        ("::1", LearnRule(loopback=False, private=False)),
    ],
)
def test_fix27p_a_learned_name_resolving_to_a_refused_ip_is_never_connected(
    ip: str, rule: LearnRule | None
) -> None:
    async def scenario() -> None:
        wire = Wire([ip])
        server, accepted = await _listener()
        port = int(server.sockets[0].getsockname()[1])
        with wire.installed(asyncio.get_running_loop()):
            async with cluster() as nodes:
                node = await nodes.add()
                if rule is not None:
                    node.network._learn_rule = rule
                learned = f"{NAME}:{port}"
                assert node.network.book.add_discovered(learned, source="81.2.71.9")
                with pytest.raises(HandshakeError) as refused:
                    await node.network.connect(learned)
                assert refused.value.reason is PeerReason.UNROUTABLE_ADDRESS
                assert ip in str(refused.value)
                assert wire.lookups and set(wire.lookups) == {NAME}
                assert wire.connects == [], f"a socket connect was attempted: {wire.connects}"
        server.close()
        await server.wait_closed()
        assert not accepted, "the listening server on 127.0.0.1 saw a connection"

    run(scenario)


def test_fix27p_a_learned_name_dials_the_allowed_ip_it_resolved_to() -> None:
    """A name resolving to the metadata service and to an allowed IP (the devnet's
    loopback) is dialed, by the node's own dial loop, at the allowed IP's literal only:
    the book and the peer still know it by its name."""

    async def scenario() -> None:
        wire = Wire(["169.254.169.254", "127.0.0.1"])
        with wire.installed(asyncio.get_running_loop()):
            async with cluster() as nodes:
                target = await nodes.add()
                node = await nodes.add()
                _host, port = parse_address(target.address)
                learned = f"{NAME}:{port}"
                assert node.network.book.add_discovered(learned, source="81.2.71.9")
                await wait_until_async(lambda: target.id in node.peer_ids(), what="linked")
                info = node.peer(target.id)
                assert info is not None and info.address == learned
                assert wire.lookups and set(wire.lookups) == {NAME}
                assert ("127.0.0.1", port) in wire.connects
                assert {ip for ip, _port in wire.connects} == {"127.0.0.1"}, wire.connects
                entry = node.network.book.entry(learned)
                assert entry is not None and entry.failures == 0

    run(scenario)


def test_fix27p_a_learned_name_that_does_not_resolve_fails_to_connect() -> None:
    """A failed lookup is a failed dial (counted: the book forgets a name that never
    resolves), not a refusal."""

    async def scenario() -> None:
        wire = Wire([])
        with wire.installed(asyncio.get_running_loop()):
            async with cluster() as nodes:
                node = await nodes.add()
                with pytest.raises(P2PError) as failed:
                    await node.network.connect(f"{NAME}:26600")
                assert failed.value.reason is PeerReason.CONNECT_FAILED
                assert wire.lookups and set(wire.lookups) == {NAME}
                assert wire.connects == []

    run(scenario)
