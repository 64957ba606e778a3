"""rev25p 2: since p2p25 2 an outbound link is grouped (`Network.peer_group`, the source
the strangers' share counts) by the IP its socket reached, not the name it was dialed by.
On an IPv6-only host behind DNS64/NAT64 (an IPv6-only cloud subnet, a mobile carrier)
every IPv4 peer dialed by name is reached at the well-known prefix 64:ff9b::/96 (RFC
6052) with its IPv4 address in the low 32 bits.

What happens now: `address_group` takes the IPv6 /32 of that address, 64:ff9b::/32, so
every outbound peer of such a node is one group: distinct honest hosts (different
providers, different /16s) are merged into one source, where before p2p25 2 each name
was its own. What should happen: an IPv4-embedded address counts as the IPv4 address it
carries (as IPv4-mapped ones already do, and as Bitcoin Core's netgroup does for RFC 6052
and 6145), so two hosts are one source only if their IPv4 /16 is one.
"""

from __future__ import annotations

import pytest

from p2p.netgroup import address_group

# Two honest hosts in different providers' IPv4 ranges, as a NAT64 gateway presents them.
HOSTS = [("203.0.113.7", "64:ff9b::cb00:7107"), ("198.51.100.9", "64:ff9b::c633:6409")]


@pytest.mark.parametrize(("ipv4", "nat64"), HOSTS)
def test_a_peer_reached_through_nat64_is_grouped_by_its_ipv4_address(ipv4: str, nat64: str) -> None:
    assert address_group(nat64) == address_group(ipv4), (
        f"{nat64} (NAT64 of {ipv4}) is grouped {address_group(nat64)}, not as {ipv4} "
        f"({address_group(ipv4)}): every IPv4 peer of an IPv6-only node is one source"
    )


def test_two_hosts_reached_through_nat64_are_two_sources() -> None:
    (_, first), (_, second) = HOSTS
    assert address_group(first) != address_group(second), (
        f"two hosts in different /16s, both behind NAT64, are one group {address_group(first)}"
    )
