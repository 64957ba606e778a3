"""Eclipse: one IP, one subnet or one source cannot take a node's inbound slots, its
peer book, or its outbound choices.

Real sockets on loopback: Linux answers on all of 127.0.0.0/8, so a client bound to
127.0.0.2 or 127.0.1.7 is, to the node, another host in the same or another subnet.
"""

from __future__ import annotations

import random
from collections import Counter

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import FluxError
from fluxchain.node.home import NodeConfig
from p2p.messages import Hello
from p2p.netgroup import LOOPBACK_NETWORKS, Netgroups, address_group, subnet_of
from p2p.network import P2P_PATH, Direction
from p2p.peerbook import (
    NEW_BUCKETS_PER_SOURCE_GROUP,
    TRIED_BUCKETS_PER_GROUP,
    MemoryPeerStore,
    PeerBook,
)
from tests.p2p.harness import RawPeer, cluster, fast_limits, run
from tests.support.wait import wait_until_async

CAPPED = fast_limits(
    uncapped_networks=(), max_inbound=10, max_inbound_per_ip=2, max_inbound_per_subnet=3
)


async def refusal_of(address: str, local_ip: str) -> tuple[int, str]:
    """What the node answers a new connection from `local_ip`: (HTTP status, reason).

    A plain GET reaches the same admission check as a websocket upgrade; the body of a
    refusal is the reason code.
    """
    connector = aiohttp.TCPConnector(local_addr=(local_ip, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://{address}{P2P_PATH}") as response,
    ):
        return response.status, await response.text()


async def joined(address: str, local_ip: str) -> RawPeer:
    """A raw peer from `local_ip` with a freshly generated key, past the handshake."""
    peer = await RawPeer.connect(address, SigningKey.generate(), local_ip=local_ip)
    assert isinstance(await peer.handshake(), Hello)
    return peer


def test_one_ip_cannot_fill_inbound_slots() -> None:
    """One IP with generated keys gets its per-IP share of inbound slots; its subnet gets
    the per-subnet share; a peer from another subnet still gets in."""

    async def scenario() -> None:
        async with cluster() as nodes:
            target = await nodes.add(limits=CAPPED, learn_loopback=True)
            attackers = [await joined(target.address, "127.0.0.1") for _ in range(2)]
            try:
                # Against the old code the next eight keys took every remaining slot.
                for _ in range(8):
                    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                        await RawPeer.connect(target.address, local_ip="127.0.0.1")
                    assert refused.value.status == 503
                assert await refusal_of(target.address, "127.0.0.1") == (503, "too_many_from_ip")
                # Another IP of the same /24: one more slot (3 per subnet), then none.
                attackers.append(await joined(target.address, "127.0.0.2"))
                assert await refusal_of(target.address, "127.0.0.3") == (
                    503,
                    "too_many_from_subnet",
                )
                # An honest node elsewhere is not shut out.
                honest = await joined(target.address, "127.0.1.7")
                attackers.append(honest)
                await wait_until_async(lambda: len(target.network.peers()) == 4, what="4 inbound")
                assert Counter(subnet_of(p.address) for p in target.network.peers()) == {
                    "127.0.0.0/24": 3,
                    "127.0.1.0/24": 1,
                }
                # A slot freed by a leaving peer is free again for that IP.
                await attackers.pop(0).close()
                await wait_until_async(lambda: len(target.network.peers()) == 3, what="a peer gone")
                attackers.append(await joined(target.address, "127.0.0.1"))
            finally:
                for peer in attackers:
                    await peer.close()

    run(scenario)


def test_uncapped_networks_let_a_devnet_share_one_ip() -> None:
    """The devnet's setting (loopback uncapped): many peers from 127.0.0.1 are admitted."""

    async def scenario() -> None:
        async with cluster() as nodes:
            limits = fast_limits(
                uncapped_networks=LOOPBACK_NETWORKS, max_inbound=10, max_inbound_per_ip=2
            )
            target = await nodes.add(limits=limits, learn_loopback=True)
            peers = [await joined(target.address, "127.0.0.1") for _ in range(6)]
            try:
                await wait_until_async(lambda: len(target.network.peers()) == 6, what="6 inbound")
            finally:
                for peer in peers:
                    await peer.close()

    run(scenario)


def test_a_slow_handshake_still_holds_its_ip_slot() -> None:
    """Connections that never finish the handshake count against the caps too."""

    async def scenario() -> None:
        async with cluster() as nodes:
            target = await nodes.add(limits=CAPPED, learn_loopback=True)
            silent = [await RawPeer.connect(target.address, local_ip="127.0.0.9") for _ in range(2)]
            try:
                assert await refusal_of(target.address, "127.0.0.9") == (503, "too_many_from_ip")
            finally:
                for peer in silent:
                    await peer.close()

    run(scenario)


# -- the peer book ---------------------------------------------------------------------

SEED = 20261205


def book(seed: int = SEED, **kwargs: object) -> PeerBook:
    rng = random.Random(seed)
    return PeerBook(
        clock=lambda: 1_700_000_000.0,
        rng=rng,
        secret=rng.randbytes(32),
        **kwargs,  # type: ignore[arg-type]
    )


def honest_addresses(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """(address, source) pairs from all over the IPv4 space."""
    out = []
    for _ in range(count):
        a, b = rng.randrange(1, 224), rng.randrange(256)
        address = f"{a}.{b}.{rng.randrange(256)}.{rng.randrange(1, 255)}:26600"
        source = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.0.1"
        out.append((address, source))
    return out


def test_one_subnet_cannot_fill_the_peer_book() -> None:
    """An attacker holding 203.0.113.0/24 advertises 10,000 addresses from it and runs a
    node on 1,000 of them that we connect to: it ends up with a few buckets of the book,
    and the honest addresses known before are still there."""
    rng = random.Random(SEED)
    peers = book()
    honest = honest_addresses(rng, 400)
    for address, source in honest:
        assert peers.add_discovered(address, source=source)
    for address, _ in honest[:100]:
        peers.record_success(address, b"\x02" * 33)

    attacker = [f"203.0.113.{i % 254 + 1}:{20000 + i}" for i in range(10_000)]
    for i, address in enumerate(attacker):
        peers.add_discovered(address, source=f"203.0.113.{i % 254 + 1}")
        if i % 10 == 0:  # we dial it, and it answers
            peers.record_success(address, b"\x03" * 33)

    held = [e for e in peers.entries() if e.address.startswith("203.0.113.")]
    bound = (NEW_BUCKETS_PER_SOURCE_GROUP + TRIED_BUCKETS_PER_GROUP) * peers.bucket_size
    assert len(held) <= bound, f"seed {SEED}: the attacker holds {len(held)} > {bound}"
    assert len(held) < peers.capacity // 10
    # New addresses never push out untested or working ones, and the attacker's tried
    # entries share only its own group's tried buckets: honest addresses stay known
    # unless they were demoted from one of those buckets into a full one.
    group = address_group("203.0.113.1")
    attacker_tried = {peers.tried_bucket(a, group) for a in attacker}
    lost = [a for a, _ in honest if a not in peers]
    assert len(lost) <= 2 * peers.bucket_size, f"seed {SEED}: lost {lost}"
    for address, _ in honest[:100]:
        entry = peers.entry(address)
        if entry is None or not entry.tried:
            assert peers.tried_bucket(address, address_group(address.split(":")[0])) in (
                attacker_tried
            ), f"seed {SEED}: {address} lost its tried slot outside the attacker's buckets"


def test_one_source_cannot_fill_the_new_table() -> None:
    """A single peer sending addresses from every network fills at most its own buckets;
    addresses from other sources still find room."""
    rng = random.Random(SEED + 1)
    peers = book(SEED + 1)
    flood = honest_addresses(rng, 20_000)
    accepted = sum(peers.add_discovered(a, source="198.51.100.7") for a, _ in flood)
    assert accepted <= NEW_BUCKETS_PER_SOURCE_GROUP * peers.bucket_size
    later = honest_addresses(rng, 300)
    source_buckets = {
        peers.new_bucket(address_group(a.split(":")[0]), "198.51.0.0/16") for a, _ in flood
    }
    refused = [(a, s) for a, s in later if not peers.add_discovered(a, source=s)]
    for address, source in refused:
        bucket = peers.new_bucket(address_group(address.split(":")[0]), address_group(source))
        assert bucket in source_buckets or len(peers._new[bucket]) == peers.bucket_size, (
            f"seed {SEED + 1}: {address} refused from a bucket the flood does not reach"
        )
    assert len(refused) < len(later) // 5


def test_a_full_bucket_gives_way_to_failed_addresses_only() -> None:
    peers = book(new_buckets=1, tried_buckets=1, bucket_size=2)
    assert peers.add_discovered("10.1.0.1:1", source="10.9.0.1")
    assert peers.add_discovered("10.2.0.1:1", source="10.9.0.1")
    assert not peers.add_discovered("10.3.0.1:1", source="10.9.0.1")
    peers.record_failure("10.2.0.1:1")
    assert peers.add_discovered("10.3.0.1:1", source="10.9.0.1")
    assert "10.2.0.1:1" not in peers
    # The tried bucket is full after two successes; a third sends the least recently
    # seen back to the new table (which has room after the promotions).
    for address in ("10.1.0.1:1", "10.3.0.1:1"):
        peers.record_success(address, b"\x02" * 33)
    assert peers.add_discovered("10.4.0.1:1", source="10.9.0.1")
    peers.record_success("10.4.0.1:1", b"\x02" * 33)
    first = peers.entry("10.1.0.1:1")
    assert first is not None and not first.tried
    assert [e.address for e in peers.entries() if e.tried] == ["10.3.0.1:1", "10.4.0.1:1"]


@settings(max_examples=50, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    groups=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=200),
    source=st.text(min_size=1, max_size=20),
)
def test_buckets_are_bounded_per_source_and_per_group(
    secret: bytes, groups: list[str], source: str
) -> None:
    peers = PeerBook(clock=lambda: 0.0, rng=random.Random(0), secret=secret)
    new = {peers.new_bucket(g, source) for g in groups}
    assert len(new) <= NEW_BUCKETS_PER_SOURCE_GROUP
    assert all(0 <= b < len(peers._new) for b in new)
    tried = {peers.tried_bucket(f"{g}:{i}", source) for i, g in enumerate(groups)}
    assert len(tried) <= TRIED_BUCKETS_PER_GROUP
    assert all(0 <= b < len(peers._tried) for b in tried)
    again = PeerBook(clock=lambda: 0.0, rng=random.Random(1), secret=secret)
    assert {again.new_bucket(g, source) for g in groups} == new


def test_the_bucket_layout_is_secret_and_survives_a_restart() -> None:
    """Two nodes place the same addresses in different buckets (an attacker cannot aim
    at everyone's), and a restarted node puts each back where it was."""
    store = MemoryPeerStore()
    first = PeerBook(clock=lambda: 1.0, rng=random.Random(0), store=store)
    other = PeerBook(clock=lambda: 1.0, rng=random.Random(0))
    groups = [f"10.{i}.0.0/16" for i in range(64)]
    assert [first.new_bucket(g, "s") for g in groups] != [other.new_bucket(g, "s") for g in groups]
    for address, source in honest_addresses(random.Random(SEED), 200):
        first.add_discovered(address, source=source)
    first.record_success(first.entries()[0].address, b"\x02" * 33)
    first.save()
    restored = PeerBook(clock=lambda: 1.0, rng=random.Random(0), store=store)
    restored.load()
    assert {(e.address, e.tried, e.bucket) for e in restored.entries()} == {
        (e.address, e.tried, e.bucket) for e in first.entries()
    }


def test_netgroups() -> None:
    assert subnet_of("203.0.113.9") == "203.0.113.0/24"
    assert subnet_of("::ffff:203.0.113.9") == "203.0.113.0/24"
    assert subnet_of("2001:db8:1:2::1") == "2001:db8:1::/48"
    assert address_group("203.0.113.9") == "203.0.0.0/16"
    assert address_group("2001:db8:1:2::1") == "2001:db8::/32"
    assert address_group("127.0.0.5") == "local"
    assert address_group("Node3") == "name:node3"
    groups = Netgroups(LOOPBACK_NETWORKS)
    assert groups.is_exempt("127.0.0.1") and not groups.is_exempt("10.0.0.1")
    assert groups.group("127.0.0.1:26600") != groups.group("127.0.0.1:26601")
    assert groups.group("10.0.0.1:1") == groups.group("10.0.200.1:2") == "10.0.0.0/16"
    with pytest.raises(ValueError, match="CIDR"):
        Netgroups(["not a network"])


# -- outbound diversity ----------------------------------------------------------------


def test_outbound_dials_take_one_peer_per_group() -> None:
    """Four reachable nodes in one group (loopback): a capped node dials one of them and
    leaves the others for other groups; the devnet setting dials all four."""

    async def scenario() -> None:
        async with cluster() as nodes:
            others = [await nodes.add() for _ in range(4)]
            capped = await nodes.add(limits=CAPPED, learn_loopback=True)
            devnet = await nodes.add()
            for node in (capped, devnet):
                for other in others:
                    assert node.network.book.add_discovered(other.address, source="10.0.0.1")
            await wait_until_async(
                lambda: len(devnet.network.peers()) >= 4, what="the devnet node's 4 dials"
            )
            await wait_until_async(
                lambda: any(p.direction is Direction.OUTBOUND for p in capped.network.peers()),
                what="one outbound peer",
            )
            outbound = [p for p in capped.network.peers() if p.direction is Direction.OUTBOUND]
            assert len(outbound) == 1
            assert len(capped.network.book.due(persistent=False)) >= 3  # could be dialed
            capped.network._dial_what_is_due()
            assert not capped.network._dialing  # but the group is taken

    run(scenario)


def test_the_uncapped_networks_of_config_toml_are_checked() -> None:
    config = NodeConfig(p2p_uncapped_networks=LOOPBACK_NETWORKS)
    assert NodeConfig.from_toml(config.to_toml()) == config
    assert NodeConfig().p2p_uncapped_networks == ()  # public nodes are capped
    with pytest.raises(FluxError, match="p2p_uncapped_networks: 'everyone'"):
        NodeConfig.from_toml('p2p_uncapped_networks = ["everyone"]\n')
