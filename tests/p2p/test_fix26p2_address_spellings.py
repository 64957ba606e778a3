"""fix26p2: one address, one spelling: what the wire carries, what the book keys on and
what an IP ban names (rev26h findings 3-6)."""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import SigningKey
from p2p.errors import FrameError, PeerReason
from p2p.messages import Peers, canonical_address, decode, encode, format_address, parse_ip
from p2p.network import Network
from p2p.peerbook import ip_ban_key
from tests.p2p.harness import RecordingHost, cluster, link, run
from tests.support.ports import lease_ports


def wire_refusal(addresses: tuple[str, ...]) -> PeerReason:
    with pytest.raises(FrameError) as caught:
        decode(encode(Peers(addresses)))
    return caught.value.reason


@pytest.mark.parametrize("mapped", ["::ffff:127.0.0.1", "::ffff:7f00:1", "::FFFF:7F00:1"])
def test_an_ipv4_mapped_address_is_its_ipv4_in_every_key(mapped: str) -> None:
    assert str(parse_ip(mapped)) == "127.0.0.1"
    assert canonical_address(f"[{mapped}]:9000") == "127.0.0.1:9000"
    assert format_address(mapped, 9000) == "127.0.0.1:9000"  # an inbound peer's address
    assert ip_ban_key(mapped) == ip_ban_key("127.0.0.1") == "ip:127.0.0.1"
    assert wire_refusal((f"[{mapped}]:9000",)) is PeerReason.BAD_FIELD


def test_a_host_name_is_spelled_in_lower_case() -> None:
    assert canonical_address("Seed.Example.ORG:26600") == "seed.example.org:26600"
    assert format_address("Node3", 26600) == "node3:26600"  # a listen host from config
    assert wire_refusal(("Node3:26600",)) is PeerReason.BAD_FIELD


def test_a_node_advertising_its_name_in_capitals_sends_it_in_lower_case() -> None:
    """The operator's `p2p_advertise` may write the name as its DNS record does; the
    HELLO carries it in lower case, the only spelling peers take."""
    lease = lease_ports(1)
    port = lease.ports[0]

    async def scenario() -> None:
        async with cluster() as nodes:
            listener = await nodes.add(port=port, advertise=f"LocalHost:{port}")
            assert listener.address == f"localhost:{port}"
            await link(await nodes.add(), listener)  # its HELLO accepted

    try:
        run(scenario, timeout=30.0)
    finally:
        lease.release()


def test_an_inbound_link_local_peer_with_a_zone_has_no_address_to_share() -> None:
    """Its socket IP carries our own zone; shared in PEERS, every peer would refuse the
    frame (and score us for it)."""
    key = SigningKey.generate()
    network = Network(RecordingHost(), key, chain_id="fix26p2", genesis_hash=bytes(32))
    assert network._dialable("fe80::1%eth0", "127.0.0.1:26600") == ""
    assert network._dialable("::ffff:10.0.0.7", "127.0.0.1:26600") == "10.0.0.7:26600"


@pytest.mark.parametrize(
    "zoned", ["[fe80::1%eth0]:9000", "[2001:db8::7%1]:9000", "[2001:db8::7%x\nevent=forged]:9000"]
)
def test_an_ipv6_zone_is_refused_in_a_peer_address(zoned: str) -> None:
    with pytest.raises(ValueError, match="IPv6 zone"):
        canonical_address(zoned)
    assert wire_refusal((zoned,)) is PeerReason.BAD_FIELD
