"""pex26: addresses a peer sends in PEERS are judged by what they point at before they
enter the peer book, as Bitcoin Core's addrman drops unroutable addresses.

Attack: a hostile peer answers GET_PEERS with 169.254.169.254:80 (a cloud's metadata
service), the node's own loopback services, or private hosts of a network the node is no
part of; the node would open a websocket GET to each. Before this branch every one went
into the book and was dialed. Now: link-local, unspecified and multicast never enter,
loopback only on a node that is on loopback itself (the devnet), private only on a node
with a private address of its own or configured; an IPv6 form is judged by the IPv4 it
carries (`netgroup.embedded_ipv4`)."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any, cast

import pytest

from p2p.errors import HandshakeError, PeerReason
from p2p.limits import Limits
from p2p.messages import Peers, parse_address
from p2p.netgroup import LOOPBACK_NETWORKS, LearnRule
from p2p.peer import Peer
from p2p.peer_exchange import PeerExchange
from p2p.peerbook import PeerBook
from tests.p2p.harness import cluster, link, run

HOSTILE = [
    "169.254.169.254:80",
    "127.0.0.1:26600",
    "10.0.0.1:26600",
    "[::ffff:169.254.169.254]:26600",
    "[fe80::1]:26600",
    "[64:ff9b::a9fe:a9fe]:80",  # the metadata service through NAT64
    "0.0.0.0:26600",
    "224.0.0.1:26600",
]


def _exchange(rule: LearnRule) -> tuple[PeerExchange, PeerBook, list[str]]:
    book = PeerBook(clock=lambda: 0.0, rng=random.Random(26))
    misbehaved: list[str] = []
    exchange = PeerExchange(
        {},
        cast(Any, None),
        book,
        Limits(),
        random.Random(26),
        lambda peer, reason, points, detail: misbehaved.append(detail),
        own_address=lambda: "81.2.69.5:26600",
        on_new_addresses=lambda: None,
        learnable=rule.allows,
    )
    return exchange, book, misbehaved


def _answer(exchange: PeerExchange, addresses: list[str]) -> None:
    peer = cast(Peer, SimpleNamespace(peers_requested=True, remote_ip="81.2.71.9", short="p"))
    exchange.on_peers(peer, Peers(tuple(addresses)))


def test_pex26_a_public_node_learns_no_unroutable_address() -> None:
    rule = LearnRule.of_node("0.0.0.0", "81.2.69.5:26600")
    exchange, book, misbehaved = _exchange(rule)
    _answer(exchange, [*HOSTILE, "81.2.70.20:26600", "seed2.example.org:26600"])
    for address in HOSTILE:
        assert address not in book, f"{address} entered the book of a public node"
    assert "81.2.70.20:26600" in book and "seed2.example.org:26600" in book
    # No misbehaviour: an honest peer relays what it heard, its own LAN's addresses too.
    assert not misbehaved


@pytest.mark.parametrize(
    ("own", "address"),
    [
        ("127.0.0.1", "127.0.0.1:26601"),  # the devnet
        ("10.1.0.2", "10.0.0.1:26600"),  # the WAN testnet's namespaces
        ("172.16.0.3", "192.168.1.4:26600"),
        ("fd00::2", "[fd00::1]:26600"),
    ],
)
def test_pex26_loopback_and_private_learned_where_the_node_is(own: str, address: str) -> None:
    exchange, book, _ = _exchange(LearnRule.of_node(own, None, LOOPBACK_NETWORKS))
    _answer(exchange, [address, "169.254.169.254:80"])
    assert address in book, f"{address} refused on a node at {own}"
    assert "169.254.169.254:80" not in book


def test_pex26_private_not_learned_by_a_loopback_node() -> None:
    rule = LearnRule.of_node("127.0.0.1", None, LOOPBACK_NETWORKS)  # a devnet's
    assert not rule.allows("10.0.0.1:26600")
    assert rule.allows("127.0.0.1:26601")
    assert rule.allows("node3:26600")  # a name is judged by what it resolves to, at its dial


def test_pex26_a_learned_name_reaching_a_refused_ip_is_not_linked() -> None:
    """A learned name is judged by the IPs it resolves to (fix27p: before any dial). The
    rule of a public node (no loopback), which a test on 127.0.0.1 can only set by hand; a
    persistent peer at the same kind of address is the operator's and links. The name
    (`peer.test`, RFC 6761's) resolves to 127.0.0.1 in this test's event loop only
    (`localhost` is refused before the dial since pex27)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        resolve = loop.getaddrinfo

        async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            return await resolve("127.0.0.1" if host == "peer.test" else host, *args, **kwargs)

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        async with cluster() as nodes:
            target = await nodes.add()
            public = await nodes.add()
            public.network._learn_rule = LearnRule(loopback=False, private=False)
            _host, port = parse_address(target.address)
            learned = f"peer.test:{port}"
            assert public.network.book.add_discovered(learned, source="81.2.71.9")
            with pytest.raises(HandshakeError) as refused:
                await public.network.connect(learned)
            assert refused.value.reason is PeerReason.UNROUTABLE_ADDRESS
            assert "resolves to 127.0.0.1" in str(refused.value)  # judged before a dial
            assert target.id not in public.peer_ids()
            configured = await nodes.add(persistent=[target.address])
            configured.network._learn_rule = LearnRule(loopback=False, private=False)
            await link(configured, target)

    run(scenario)
