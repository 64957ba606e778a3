"""The handshake: two nodes of one chain connect; every kind of stranger is refused, and
both the refusing node and the refused party learn the reason."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from fluxchain.core.crypto import sha256
from p2p.errors import HandshakeError, P2PError, PeerReason
from p2p.handshake import LocalNode, new_hello
from p2p.messages import Auth, Hello
from p2p.network import CLOSE_REFUSED, Direction, Network
from p2p.peerbook import ip_ban_key, node_ban_key
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, RawPeer, cluster, fast_limits, raw_peer, run
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_two_nodes_connect_and_see_each_other() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            b = await nodes.add()
            assert await b.network.connect(a.address) == a.id
            await wait_until_async(lambda: a.peer_ids() == {b.id}, what="a sees b")
            assert b.peer_ids() == {a.id}
            info_a, info_b = a.peer(b.id), b.peer(a.id)
            assert info_a is not None and info_a.direction is Direction.INBOUND
            assert info_b is not None and info_b.direction is Direction.OUTBOUND
            assert info_b.address == a.address
            # The dialer advertised its listen address; a shares it with the observed IP.
            assert info_a.address == b.address
            assert a.host.connected == [b.id] and b.host.connected == [a.id]

    run(scenario)


async def refused(dialer_network: Network, address: str) -> PeerReason:
    with pytest.raises(P2PError) as caught:
        await dialer_network.connect(address)
    return caught.value.reason


def test_wrong_chain_and_wrong_genesis_are_refused() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            other_chain = await nodes.add(chain_id="another-chain")
            other_genesis = await nodes.add(genesis_hash=sha256(b"another genesis"))
            assert await refused(other_chain.network, a.address) is PeerReason.WRONG_CHAIN
            assert await refused(other_genesis.network, a.address) is PeerReason.WRONG_GENESIS
            # An honest mistake: no ban, no peer on either side.
            assert not a.network.book.ban_count
            assert a.peer_ids() == set()
            assert a.host.connected == []

    run(scenario)


def test_self_connection_is_refused_and_remembered() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            assert await refused(a.network, a.address) is PeerReason.SELF_CONNECTION
            assert a.peer_ids() == set()

    run(scenario)


def test_a_second_connection_to_the_same_node_is_refused() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            b = await nodes.add()
            await b.network.connect(a.address)
            assert await refused(b.network, a.address) is PeerReason.DUPLICATE_PEER
            # The first connection is untouched.
            assert b.peer_ids() == {a.id}
            await wait_until_async(lambda: a.peer_ids() == {b.id}, what="a keeps b")
            assert a.host.connected == [b.id] and a.host.disconnected == []

    run(scenario)


def test_simultaneous_dials_settle_on_one_connection() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            b = await nodes.add()
            # Both dial at once, as two devnet nodes listing each other do at start-up.
            await asyncio.gather(
                a.network.connect(b.address), b.network.connect(a.address), return_exceptions=True
            )
            await wait_until_async(
                lambda: a.peer_ids() == {b.id} and b.peer_ids() == {a.id}, what="one link"
            )
            info_a, info_b = a.peer(b.id), b.peer(a.id)
            assert info_a is not None and info_b is not None
            assert {info_a.direction, info_b.direction} == {Direction.INBOUND, Direction.OUTBOUND}
            # Both sides kept the connection dialed by the smaller key.
            a_dials = a.key.public_key < b.key.public_key
            assert (info_a.direction is Direction.OUTBOUND) == a_dials
            # The host saw connects and disconnects in an order that ends "connected".
            for node, other in ((a, b), (b, a)):
                events = len(node.host.connected) - len(node.host.disconnected)
                assert events == 1 and node.host.connected[-1] == other.id

    run(scenario)


def test_bad_auth_signature_is_refused() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            async with raw_peer(a.address) as raw:
                await raw.handshake(corrupt_signature=True)
                assert await raw.closed_with() == (CLOSE_REFUSED, "bad_auth")
            assert a.peer_ids() == set()
            # The key in the HELLO was never proven: it must not be banned.
            assert not a.network.book.is_banned(node_ban_key(raw.key.public_key))

    run(scenario)


def test_incompatible_version_and_wrong_first_frame_are_refused() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            async with raw_peer(a.address) as raw:
                await raw.secure()
                hello = await raw.receive()
                assert isinstance(hello, Hello)
                local = LocalNode(raw.key, CHAIN_ID, GENESIS_HASH, "")
                await raw.send(replace(new_hello(local, b"\x01" * 32), version=0))
                assert await raw.closed_with() == (CLOSE_REFUSED, "incompatible_version")
            async with raw_peer(a.address) as raw:
                await raw.secure()
                await raw.send(Auth(b"\x01" * 64))
                # The node sends its HELLO first, then refuses our AUTH-before-HELLO.
                hello = await raw.receive()
                assert isinstance(hello, Hello)
                assert await raw.closed_with() == (CLOSE_REFUSED, "unexpected_message")

    run(scenario)


def test_a_plaintext_version_3_node_is_told_its_version_is_too_old() -> None:
    """A node of the unencrypted protocol opens with its HELLO in the clear: it is
    refused as too old, not banned as a sender of garbage."""

    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add(limits=fast_limits(ban_loopback=True))
            async with raw_peer(a.address) as raw:
                local = LocalNode(raw.key, CHAIN_ID, GENESIS_HASH, "")
                await raw.send(replace(new_hello(local, b"\x01" * 32), version=3))
                assert await raw.closed_with() == (CLOSE_REFUSED, "incompatible_version")
            assert not a.network.book.is_banned(ip_ban_key("127.0.0.1"))

    run(scenario)


def test_a_silent_peer_times_out() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add(limits=fast_limits(handshake_timeout=0.3))
            async with raw_peer(a.address) as raw:  # silent from the start
                assert await raw.closed_with() == (CLOSE_REFUSED, "handshake_timeout")
            async with raw_peer(a.address) as raw:  # silent after the key exchange
                await raw.secure()
                assert isinstance(await raw.receive(), Hello)
                assert await raw.closed_with() == (CLOSE_REFUSED, "handshake_timeout")

    run(scenario)


def test_the_dialer_learns_why_it_was_refused() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            b = await nodes.add()
            a.network.book.ban(node_ban_key(b.key.public_key), 60.0, "test")
            with pytest.raises(HandshakeError) as caught:
                await b.network.connect(a.address)
            assert caught.value.reason is PeerReason.BANNED
            assert a.peer_ids() == set() and b.peer_ids() == set()

    run(scenario)


def test_stop_closes_peers_with_going_away() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add()
            raw = await RawPeer.connect(a.address)
            try:
                await raw.handshake()
                await wait_until_async(lambda: a.peer_ids() == {raw.id}, what="raw peer connected")
                await nodes.stop(a)
                assert await raw.closed_with() == (1001, "shutdown")
            finally:
                await raw.close()

    run(scenario)


def test_inbound_slots_are_limited() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            a = await nodes.add(limits=fast_limits(max_inbound=1))
            async with raw_peer(a.address) as first:
                await first.handshake()
                await wait_until_async(lambda: first.id in a.peer_ids(), what="first peer in")
                # A slot is taken: the next node is only answered (its GET_PEERS, so a
                # node joining through a full seed still learns the network) and closed.
                frozen = 1_700_000_000.0  # b's wall clock, for its book's backoff
                b = await nodes.add(persistent=[a.address], clock=lambda: frozen)
                await wait_until_async(
                    lambda: (a.id, "too_many_peers") in b.host.disconnected,
                    what="b told that a is full",
                )
                assert a.peer_ids() == {first.id} and a.host.connected == [first.id]
                # b waits the longest backoff before asking the full node again.
                entry = b.network.book.entry(a.address)
                assert entry is not None and entry.failures == 1
                assert entry.next_dial_at == frozen + b.network.limits.backoff_cap
            await wait_until_async(lambda: a.peer_ids() == set(), what="the slot is free again")
            try:
                await b.network.connect(a.address)
            except HandshakeError as exc:  # b's own redial of a may have come first
                assert exc.reason is PeerReason.DUPLICATE_PEER
            await wait_until_async(lambda: b.id in a.peer_ids(), what="b takes the free slot")

    run(scenario)


def test_a_persistent_peer_given_by_key_is_never_linked_to_an_impostor_at_its_address() -> None:
    """`persistent_peers = ["node_key@host:port"]` (what `--seeds`/`--peer` write): the
    node redials the address but refuses every other key answering there, before it
    signs anything (`wrong_node_key`), and links to the real node once it is there."""

    async def scenario() -> None:
        async with cluster() as nodes:
            seed, impostor = await nodes.add(), await nodes.add()
            joining = await nodes.add(persistent=[f"{seed.id}@{impostor.address}"])
            with pytest.raises(HandshakeError) as caught:
                await joining.network.connect(impostor.address)  # pinned by the book too
            assert caught.value.reason is PeerReason.WRONG_NODE_KEY
            assert joining.peer_ids() == set() and impostor.host.connected == []
            other = await nodes.add(persistent=[f"{seed.id}@{seed.address}"])
            await wait_until_async(lambda: other.peer_ids() == {seed.id}, what="pinned link")

    run(scenario)
