"""pex27: the review of pex26's rule for addresses learned from peers (`netgroup.LearnRule`).

a. A node listening on 0.0.0.0 or :: (which Python calls private) learned private
   addresses, the documented public set-up too (AWS's metadata at fd00:ec2::254): the
   rule is decided by the advertised address (fix27p2: never by the configured peers and
   seeds); an unspecified listen host says nothing. The devnets keep learning.
b. aiohttp's `ws_connect` follows redirects: a peer address answering `302 Location:
   http://169.254.169.254/` got that URL fetched. A dial never follows a redirect.
c. `localhost` and `*.localhost` (RFC 6761: always loopback) are loopback at learn time.
d. A stored book was loaded unfiltered, and a learned IP was judged only once its socket
   had connected (the websocket GET already sent).
e. 100.64.0.0/10 (Alibaba's metadata at 100.100.100.200) is judged like private;
   168.63.129.16 (Azure's wire server) and fd00:ec2::254 are never routable; an
   IPv4-compatible `::a.b.c.d` is judged by its IPv4.
f. The per-IP inbound cap compared raw socket strings (`::ffff:1.2.3.4` and `1.2.3.4`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from p2p.errors import HandshakeError, P2PError, PeerReason
from p2p.limits import Limits
from p2p.messages import parse_address
from p2p.netgroup import LOOPBACK_NETWORKS, LearnRule, routable
from p2p.peerbook import MemoryPeerStore, PeerBook
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async

PUBLIC = "81.2.69.5:26600"  # (203.0.113.0/24, documentation, is private to Python)


# -- a. the rule is decided by the node's own address ------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0", "::"])
def test_pex27_a_public_node_on_every_interface_learns_no_private_address(listen: str) -> None:
    """docs/operations.md's public set-up: `--p2p-host 0.0.0.0 --p2p-advertise <public>`."""
    rule = LearnRule.of_node(listen, PUBLIC)
    for address in ["10.0.0.1:26600", "172.16.0.3:26600", "192.168.1.4:26600",
                    "[fd00:ec2::254]:80", "[fd12::1]:26600", "127.0.0.1:26601"]:  # fmt: skip
        assert not rule.allows(address), f"{address} learned by a public node on {listen}"
    assert rule.allows("81.2.70.20:26600")


def test_pex27_the_wan_testnet_keeps_learning_its_private_addresses() -> None:
    """tests/wan/testnet.py: validators listen on their 10.R.0.2 and advertise nothing;
    full nodes and seeds listen on 0.0.0.0 and advertise 10.R.0.2; every node knows a
    seed by key@10.R.0.2:26600."""
    validator = LearnRule.of_node("10.32.0.2", None)
    full = LearnRule.of_node("0.0.0.0", "10.33.0.2:26600")
    for rule in (validator, full):
        assert rule.allows("10.96.0.2:26600")
        assert not rule.allows("169.254.169.254:80")


def test_pex27_the_local_devnet_keeps_learning_loopback() -> None:
    rule = LearnRule.of_node("127.0.0.1", None, LOOPBACK_NETWORKS)
    assert rule.allows("127.0.0.1:26602")
    assert not rule.allows("10.0.0.1:26600")


def test_pex27_the_docker_devnet_learns_no_private_address_from_peers() -> None:
    """scripts/devnet-docker-init.sh: every node listens on 0.0.0.0, advertises nothing and
    knows the validators by service name (`node0:26600`): its configured peers form the
    devnet, and (fix27p2) neither they nor the IPs their dials reach widen the rule."""
    rule = LearnRule.of_node("0.0.0.0", None)
    assert not rule.allows("172.18.0.5:26600")
    assert rule.allows("node2:26600")  # a name, judged by its IPs at its dial


def test_pex27_a_node_advertising_localhost_learns_loopback() -> None:
    assert LearnRule.of_node("0.0.0.0", "localhost:26601").allows("127.0.0.1:26602")


def test_pex27_a_configured_peer_reached_by_name_is_dialed_and_widens_nothing() -> None:
    """A node that advertises a public address knows its peer by a name (`peer.test`,
    resolved to 127.0.0.1 in this test's event loop only): the configured peer is dialed
    and linked (never judged), and (fix27p2) learned loopback addresses stay refused."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        resolve = loop.getaddrinfo

        async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            return await resolve("127.0.0.1" if host == "peer.test" else host, *args, **kwargs)

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        async with cluster() as nodes:
            # (It dials nothing back: the node's advertised port is no test's.)
            target = await nodes.add(limits=fast_limits(max_outbound=0))
            _host, port = parse_address(target.address)
            node = await nodes.add(persistent=[f"peer.test:{port}"], advertise=PUBLIC)
            assert not node.network._learn_rule.allows("127.0.0.1:26601")
            await wait_until_async(lambda: target.id in node.peer_ids(), what="the peer linked")
            assert not node.network._learn_rule.allows("127.0.0.1:26601")

    run(scenario)


# -- b. no redirect is followed ----------------------------------------------------------


async def _http_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


@pytest.mark.parametrize("configured", [False, True])
def test_pex27_a_dial_never_follows_a_redirect(configured: bool) -> None:
    async def scenario() -> None:
        seen: list[str] = []

        async def target(request: web.Request) -> web.StreamResponse:
            seen.append(request.path)
            return web.Response(text="the metadata service")

        target_runner, target_port = await _http_server(target)

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"http://127.0.0.1:{target_port}/latest/meta-data/")

        redirect_runner, redirect_port = await _http_server(redirect)
        address = f"127.0.0.1:{redirect_port}"
        try:
            async with cluster() as nodes:
                node = await nodes.add(persistent=[address] if configured else [])
                if not configured:
                    assert node.network.book.add_discovered(address, source="127.0.0.1")
                with pytest.raises(P2PError) as failed:
                    await node.network.connect(address)
                assert failed.value.reason is PeerReason.CONNECT_FAILED
                assert "302" in str(failed.value)
                assert not seen, f"the redirect was followed: {seen}"
        finally:
            await redirect_runner.cleanup()
            await target_runner.cleanup()

    run(scenario)


# -- c. localhost names ------------------------------------------------------------------


def test_pex27_localhost_names_are_loopback_at_learn_time() -> None:
    public = LearnRule.of_node("0.0.0.0", PUBLIC)
    names = ["localhost:26600", "metadata.localhost:80", "a.b.localhost:26600"]
    for address in names:
        assert not public.allows(address), f"{address} learned by a public node"
    assert public.allows("localhost.example.org:26600")  # a name like any other
    devnet = LearnRule.of_node("127.0.0.1", None, LOOPBACK_NETWORKS)
    assert all(devnet.allows(address) for address in names)


# -- d. a stored book, and an IP judged before any byte is sent ----------------------------


def test_pex27_a_stored_book_is_loaded_through_the_rule() -> None:
    """A book written before the rule existed (or by a node whose rule was wider) holds
    addresses a peer put there: they are dropped at load, never dialed."""
    hostile = ["169.254.169.254:80", "10.0.0.1:26600", "[::ffff:169.254.169.254]:80",
               "127.0.0.1:22", "localhost:6379"]  # fmt: skip
    old = PeerBook(clock=lambda: 0.0, rng=random.Random(27))
    for address in [*hostile, "81.2.70.20:26600"]:
        assert old.add_discovered(address, source="81.2.71.9")

    async def scenario() -> None:
        async with cluster() as nodes:
            node = await nodes.add(
                store=MemoryPeerStore(old.to_bytes()),
                advertise=PUBLIC,
                limits=fast_limits(max_outbound=0),  # no dial: 81.2.70.20 is not ours
            )
            book = node.network.book
            for address in hostile:
                assert address not in book, f"{address} loaded from the stored book"
            assert "81.2.70.20:26600" in book

    run(scenario)


def test_pex27_a_learned_ip_is_judged_before_the_websocket_get() -> None:
    async def scenario() -> None:
        seen: list[str] = []

        async def service(request: web.Request) -> web.StreamResponse:
            seen.append(request.path)
            return web.Response(text="a loopback service")

        runner, port = await _http_server(service)
        try:
            async with cluster() as nodes:
                node = await nodes.add()
                node.network._learn_rule = LearnRule(loopback=False, private=False)
                learned = f"127.0.0.1:{port}"
                assert node.network.book.add_discovered(learned, source="81.2.71.9")
                with pytest.raises(HandshakeError) as refused:
                    await node.network.connect(learned)
                assert refused.value.reason is PeerReason.UNROUTABLE_ADDRESS
                assert not seen, f"{learned} was sent {seen}"
        finally:
            await runner.cleanup()

    run(scenario)


# -- e. shared address space, cloud host services, IPv4-compatible -------------------------


def test_pex27_shared_address_space_is_judged_like_private() -> None:
    for ip in ["100.64.0.1", "100.127.255.254", "::ffff:100.64.0.1"]:
        assert not routable(ip, loopback_is_one_host=False, private_is_routable=False), ip
        assert routable(ip, loopback_is_one_host=False, private_is_routable=True), ip
    assert not LearnRule.of_node("0.0.0.0", PUBLIC).allows("100.64.0.1:26600")


@pytest.mark.parametrize(
    "ip", ["168.63.129.16", "100.100.100.200", "fd00:ec2::254", "::ffff:168.63.129.16"]
)
def test_pex27_a_clouds_host_service_is_never_routable(ip: str) -> None:
    """Azure's wire server (a public address reached only from inside Azure), Alibaba's
    and AWS's IPv6 metadata services: not for the gateway, not for a learned address,
    whatever the private flag says (a node in a VPC learns private addresses)."""
    assert not routable(ip, loopback_is_one_host=True, private_is_routable=True)
    private_node = LearnRule.of_node("10.0.0.5", None)
    host = f"[{ip}]" if ":" in ip else ip
    assert not private_node.allows(f"{host}:80")


@pytest.mark.parametrize(
    "ip", ["::a9fe:a9fe", "::7f00:1", "::a00:1", "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:1::1"]
)
def test_pex27_ipv6_forms_are_judged_by_their_ipv4(ip: str) -> None:
    """IPv4-compatible `::a.b.c.d` (169.254.169.254, 127.0.0.1, 10.0.0.1) and the
    local-use NAT64 prefix (its /96 form as its IPv4, the rest never)."""
    assert not LearnRule.of_node("0.0.0.0", PUBLIC).allows(f"[{ip}]:80")
    assert not routable(ip, loopback_is_one_host=False, private_is_routable=False)


def test_pex27_ipv6_loopback_and_unspecified_stay_themselves() -> None:
    assert routable("::1", loopback_is_one_host=True)
    assert not routable("::1", loopback_is_one_host=False)
    assert not routable("::", loopback_is_one_host=True)


# -- f. the per-IP inbound cap counts one IP in every spelling ----------------------------


def test_pex27_the_inbound_cap_counts_one_ip_in_every_spelling() -> None:
    limits = Limits(uncapped_networks=())

    async def scenario() -> None:
        async with cluster() as nodes:
            network = (await nodes.add(limits=limits)).network
            spellings = ["81.2.69.5", "::ffff:81.2.69.5", "::ffff:5102:4505", "81.2.69.5"]
            admitted = []
            for ip in spellings:
                if network._inbound_refusal(ip) is None:
                    network._pending_inbound[ip] += 1  # as `_accept` counts it
                    admitted.append(ip)
            assert len(admitted) == limits.max_inbound_per_ip, admitted
            assert network._inbound_refusal("81.2.69.5") is PeerReason.TOO_MANY_FROM_IP

    run(scenario)
