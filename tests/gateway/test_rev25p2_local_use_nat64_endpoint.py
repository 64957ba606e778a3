"""rev25p2 1: the gateway's endpoint check reads the IPv4 a NAT64 address carries only in
the well-known prefix 64:ff9b::/96, not in the local-use NAT64 prefix 64:ff9b:1::/48 that
RFC 8215 set aside for exactly this (a site's own translator, e.g. 64:ff9b:1::/96).

Attack: an app owner registers its endpoint as `64:ff9b:1::a9fe:a9fe` (or
`64:ff9b:1::7f00:1`). On a gateway host behind a translator configured with the local-use
prefix, that is 169.254.169.254 (the cloud's metadata service) or the gateway's own
loopback; and unlike the well-known prefix, which RFC 6052 3.1 forbids for non-global
IPv4, a network-specific prefix may translate them.

Now: `routable` says yes (Python sees a plain IPv6 address, not link-local, not loopback,
not even private), so HAProxy would be pointed there.
Should: be refused as its `64:ff9b::/96` twin is (tests/gateway/test_fix25p_nat64_endpoint.py),
while a public IPv4 in the same prefix stays routable."""

from __future__ import annotations

import pytest

from p2p.netgroup import routable


@pytest.mark.parametrize("host", ["64:ff9b:1::a9fe:a9fe", "64:ff9b:1::7f00:1", "64:ff9b:1::"])
def test_rev25p2_a_local_use_nat64_metadata_or_loopback_endpoint_is_not_routed(host: str) -> None:
    # The well-known prefix's form of the same target is refused on this branch.
    twin = "64:ff9b::" + host.removeprefix("64:ff9b:1::")
    assert not routable(twin, loopback_is_one_host=False), f"{twin} is routable"
    assert not routable(host, loopback_is_one_host=False), (
        f"{host} (local-use NAT64 form of a loopback/link-local IPv4) is routable"
    )


def test_rev25p2_a_local_use_nat64_public_endpoint_is_still_routed() -> None:
    assert routable("64:ff9b:1::cb00:7107", loopback_is_one_host=False)
