"""fix25p2 (rev25p2 1): inside RFC 8215's local-use NAT64 prefix 64:ff9b:1::/48 a site's
translator may use a /48, /56, /64 or /96 prefix, and RFC 6052 2.2 puts the IPv4 at other
bits for each: the gateway cannot tell which, so it reads only the /96 form (the one whose
bits 48-95 are zero, which every other length reads as 0.0.0.0/8) and refuses the rest."""

from __future__ import annotations

import pytest

from p2p.netgroup import routable


# 169.254.169.254, 127.0.0.1 at a /48's bits 48-63 and 72-87; and a public IPv4 so.
@pytest.mark.parametrize(
    "host", ["64:ff9b:1:a9fe:a9:fe00::", "64:ff9b:1:7f00:0:100::", "64:ff9b:1:cb00:71:700::"]
)
def test_a_local_use_nat64_address_outside_its_96_form_is_not_routed(host: str) -> None:
    assert not routable(host, loopback_is_one_host=False), f"{host} is routable"


def test_the_96_form_is_judged_by_its_ipv4_like_the_well_known_prefix() -> None:
    assert routable("64:ff9b:1::808:808", loopback_is_one_host=False)
    assert not routable("64:ff9b:1::a00:1", loopback_is_one_host=False, private_is_routable=False)
    assert routable("64:ff9b:1::a00:1", loopback_is_one_host=False, private_is_routable=True)
