"""rev25p 2 (its helper shared): the gateway judges an endpoint by the IPv4 address an IPv6
one carries, NAT64 (64:ff9b::/96) and IPv4-translated forms too: on a gateway host behind
NAT64 a translator that does not refuse non-global IPv4 delivers `64:ff9b::7f00:1` to
127.0.0.1 and `64:ff9b::a9fe:a9fe` to the cloud's metadata service, so the gateway must
not route an app there, as it does not for `::ffff:127.0.0.1`."""

from __future__ import annotations

import pytest

from p2p.netgroup import routable


@pytest.mark.parametrize(
    "host", ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "::ffff:0:7f00:1", "64:ff9b::"]
)
def test_a_translated_loopback_or_link_local_endpoint_is_not_routed(host: str) -> None:
    assert not routable(host, loopback_is_one_host=False), f"{host} is routable"


def test_a_translated_public_endpoint_is_routed() -> None:
    assert routable("64:ff9b::cb00:7107", loopback_is_one_host=False)
