"""rev25p 2: every IPv6 form that carries an IPv4 host is grouped as that host's IPv4 /16
(`address_group`): NAT64, IPv4-translated, 6to4 and Teredo, as IPv4-mapped ones were. A
tunnel's claimed IPv4 passes no exemption: the operator's uncapped networks and the
inbound caps' subnet read the IPv6 address itself."""

from __future__ import annotations

import pytest

from p2p.netgroup import Netgroups, address_group, subnet_of

IPV4 = "203.0.113.7"
FORMS = {
    "nat64": "64:ff9b::cb00:7107",
    "ipv4-translated": "::ffff:0:cb00:7107",
    "6to4": "2002:cb00:7107::1",
    "teredo": "2001:0:4136:e378:8000:63bf:34ff:8ef8",  # client 203.0.113.7, obfuscated
    "ipv4-mapped": "::ffff:203.0.113.7",
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_an_ipv6_form_carrying_an_ipv4_host_is_grouped_as_that_host(form: str) -> None:
    assert address_group(FORMS[form]) == address_group(IPV4) == "203.0.0.0/16", form


def test_another_ipv4_host_in_the_same_form_is_another_group() -> None:
    assert address_group("2002:c633:6409::1") == "198.51.0.0/16"
    assert address_group("2001:db8::1") == "2001:db8::/32"  # plain IPv6: its /32


def test_a_claimed_ipv4_passes_no_exemption_and_keeps_its_ipv6_subnet() -> None:
    loopback_nat64 = "64:ff9b::7f00:1"
    assert not Netgroups(["127.0.0.0/8"]).is_exempt(loopback_nat64)
    assert subnet_of(FORMS["nat64"]) == "64:ff9b::/48"
