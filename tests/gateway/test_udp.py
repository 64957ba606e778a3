"""The gateway's UDP relay on real sockets: a client's datagrams reach one instance and
its replies come back; an instance that leaves the table takes its sessions with it."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from typing import cast

from fluxchain.gateway.routes import Server
from fluxchain.gateway.udp import UdpRelay
from tests.support.ports import lease_ports
from tests.support.wait import wait_until_async


class _Echo(asyncio.DatagramProtocol):
    """An instance: answers `<name>:<datagram>`."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


async def _settled(relay: UdpRelay, sent: int) -> None:
    """Wait until the relay has read every datagram sent and opened its sessions."""
    await wait_until_async(
        lambda: relay.received >= sent and relay.opening == 0,
        timeout=20,
        what=f"the relay to read {sent} datagrams and open their sessions",
    )


async def _ask(sock: socket.socket, relay_port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    sock.sendto(data, ("127.0.0.1", relay_port))
    return await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)


def test_udp_is_relayed_to_an_instance_and_follows_the_table() -> None:
    async def scenario() -> None:
        with lease_ports(3) as lease:
            relay_port, a_port, b_port = lease.ports
            loop = asyncio.get_running_loop()
            a, _ = await loop.create_datagram_endpoint(
                lambda: _Echo(b"a"), local_addr=("127.0.0.1", a_port)
            )
            b, _ = await loop.create_datagram_endpoint(
                lambda: _Echo(b"b"), local_addr=("127.0.0.1", b_port)
            )
            relay = UdpRelay("127.0.0.1", relay_port)
            await relay.start()
            server_a = Server("127.0.0.1", a_port, "n1", 0)
            server_b = Server("127.0.0.1", b_port, "n2", 1)
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for c in clients:
                    c.setblocking(False)
                    c.bind(("127.0.0.1", 0))
                relay.set_servers([server_a, server_b])
                first = await _ask(clients[0], relay_port, b"hello")
                second = await _ask(clients[1], relay_port, b"hello")
                assert {first, second} == {b"a:hello", b"b:hello"}  # round-robin per client
                assert await _ask(clients[0], relay_port, b"again") == first[:2] + b"again"
                # the first client's instance leaves: its next datagram goes to the other
                gone = server_a if first.startswith(b"a") else server_b
                relay.set_servers([s for s in (server_a, server_b) if s != gone])
                moved = await _ask(clients[0], relay_port, b"still")
                assert moved != first[:2] + b"still" and moved.endswith(b":still")
            finally:
                for c in clients:
                    c.close()
                relay.stop()
                a.close()
                b.close()

    asyncio.run(scenario())


def test_a_client_with_many_source_addresses_cannot_hold_more_than_the_session_bound() -> None:
    """The attack: datagrams from ever new source ports, each opening a relay socket."""

    async def scenario() -> None:
        with lease_ports(2) as lease:
            relay_port, echo_port = lease.ports
            loop = asyncio.get_running_loop()
            echo, _ = await loop.create_datagram_endpoint(
                lambda: _Echo(b"a"), local_addr=("127.0.0.1", echo_port)
            )
            relay = UdpRelay("127.0.0.1", relay_port, max_sessions=3)
            await relay.start()
            relay.set_servers([Server("127.0.0.1", echo_port, "n1", 0)])
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
            try:
                for c in clients:
                    c.setblocking(False)
                    c.bind(("127.0.0.1", 0))
                    assert await _ask(c, relay_port, b"x") == b"a:x"
                    assert relay.sessions <= 3
                assert relay.sessions == 3
                # an evicted client is served again, on a new session
                assert await _ask(clients[0], relay_port, b"y") == b"a:y"
            finally:
                for c in clients:
                    c.close()
                relay.stop()
                echo.close()

    asyncio.run(scenario())


def test_a_udp_flood_from_many_addresses_leaves_the_gateway_descriptors_to_work() -> None:
    """The attack: an internet client sends one datagram from each of many source
    addresses (an IPv6 /64, a botnet, or spoofed IPv4) to an app's UDP port. Each opens a
    relay session, a socket of the gateway's own process; the bound is 4,096 per port
    and there may be 50 UDP ports per app, with no bound across them, so the sessions take
    every descriptor the process may open. The gateway then cannot reach its node, its
    HAProxy admin socket or even write status.json (an OSError its loop does not catch:
    it exits and stops HAProxy). Here the process may open 256 more descriptors than it
    holds, and 400 addresses send to one relay with the default bound."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def scenario() -> None:
        with lease_ports(2) as lease:
            relay_port, sink_port = lease.ports
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # an instance, silent
            sink.bind(("127.0.0.1", sink_port))
            relay = UdpRelay("127.0.0.1", relay_port)
            await relay.start()
            relay.set_servers([Server("127.0.0.1", sink_port, "n1", 0)])
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(400)]
            for i, client in enumerate(clients):
                client.bind((f"127.0.{1 + i // 200}.{1 + i % 200}", 0))
            budget = len(os.listdir("/proc/self/fd")) + 256
            resource.setrlimit(resource.RLIMIT_NOFILE, (budget, hard))
            try:
                for client in clients:
                    client.sendto(b"x", ("127.0.0.1", relay_port))
                    await asyncio.sleep(0)  # the relay reads and opens its session
                await _settled(relay, len(clients))
                # what the gateway does next on each pass: reach its node, write its status
                try:
                    socket.socket().close()
                    with open(os.devnull, "rb"):
                        pass
                except OSError as exc:
                    raise AssertionError(
                        f"{relay.sessions} UDP sessions left the gateway no descriptor: {exc}"
                    ) from None
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                for client in clients:
                    client.close()
                relay.stop()
                sink.close()

    asyncio.run(scenario())


def test_one_apps_udp_port_flooded_from_many_addresses_does_not_starve_another_apps_udp() -> None:
    """The attack: an app owner (or anyone) sends one datagram from each of a few hundred
    source addresses (an IPv6 /64 per prefix is free, or spoofed IPv4) to ITS OWN app's
    UDP port on a gateway, and repeats every minute. Every session draws on the one
    process-wide DescriptorBudget; when it is spent, a new client of another app's port
    can only take that port's own least recently used session, and a port with none has
    its datagram dropped. So the victim app's UDP answers nobody on that gateway, for as
    long as the attacker refreshes its sessions. What should happen: a port's sessions
    cannot take the budget another app's port needs (a fair share per port or app, or
    eviction across ports). Here the process may open 256 descriptors more than it
    holds (the reserve keeps 128 of them), as in test_udp.py's descriptor test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def scenario() -> None:
        with lease_ports(4) as lease:
            evil_port, evil_instance, victim_port, victim_instance = lease.ports
            loop = asyncio.get_running_loop()
            evil_echo, _ = await loop.create_datagram_endpoint(
                lambda: _Echo(b"evil"), local_addr=("127.0.0.1", evil_instance)
            )
            victim_echo, _ = await loop.create_datagram_endpoint(
                lambda: _Echo(b"victim"), local_addr=("127.0.0.1", victim_instance)
            )
            evil, victim = UdpRelay("127.0.0.1", evil_port), UdpRelay("127.0.0.1", victim_port)
            await evil.start()
            await victim.start()
            evil.set_servers([Server("127.0.0.1", evil_instance, "n1", 0)])
            victim.set_servers([Server("127.0.0.1", victim_instance, "n2", 0)])
            flood = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(400)]
            for i, client in enumerate(flood):
                client.bind((f"127.0.{1 + i // 200}.{1 + i % 200}", 0))
            user = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            user.bind(("127.0.9.1", 0))
            user.setblocking(False)
            budget = len(os.listdir("/proc/self/fd")) + 256
            resource.setrlimit(resource.RLIMIT_NOFILE, (budget, hard))
            try:
                for client in flood:
                    client.sendto(b"x", ("127.0.0.1", evil_port))
                    await asyncio.sleep(0)  # the relay reads and opens its session
                await _settled(evil, len(flood))
                user.sendto(b"hello", ("127.0.0.1", victim_port))
                try:
                    answer = await asyncio.wait_for(loop.sock_recv(user, 2048), 3)
                except TimeoutError:
                    answer = b""
                assert answer == b"victim:hello", (
                    f"the victim's UDP port answered nothing: the attacker's port holds "
                    f"{evil.sessions} sessions, the victim's {victim.sessions}"
                )
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                for client in flood:
                    client.close()
                user.close()
                evil.stop()
                victim.stop()
                evil_echo.close()
                victim_echo.close()

    asyncio.run(scenario())
