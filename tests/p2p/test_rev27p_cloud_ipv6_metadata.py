"""rev27p: the IPv6 metadata services of Google Cloud and Oracle Cloud stay learnable.

Attack: a node in a VPC learns private addresses (its advertised address is 10.x, or its
configured peers are there: `LearnRule.private`). A stranger answers GET_PEERS with
`[fd20:ce::254]:80` (Google Compute Engine's metadata server over IPv6) or
`[fd00:c1::a9fe:a9fe]:80` (Oracle Cloud's IMDS over IPv6): both are in fc00::/7, so
"private", and neither is link-local.

Now: pex27 put AWS's IPv6 metadata `fd00:ec2::254` in `CLOUD_HOST_SERVICES` for exactly
this case, but not these two: the node keeps them and dials them (a websocket GET to
its cloud's metadata service). Worse, the gateway's `routable` (private addresses on
by default) routes app traffic to a node registered at `[fd20:ce::254]:80`: a client
of a gateway on GCE sends `Metadata-Flavor: Google` through it and reads the gateway
machine's service-account token.

Should: every cloud's metadata address is never routable, whatever the private setting,
as `fd00:ec2::254` already is.
"""

from __future__ import annotations

import pytest

from p2p.netgroup import LearnRule, routable


@pytest.mark.parametrize("host", ["fd00:ec2::254", "fd20:ce::254", "fd00:c1::a9fe:a9fe"])
def test_rev27p_a_vpc_node_never_learns_a_clouds_ipv6_metadata_service(host: str) -> None:
    rule = LearnRule.of_node("10.0.1.7", None)
    assert rule.allows("10.0.1.8:26600")  # it is on a private network
    assert not rule.allows(f"[{host}]:80"), f"{host} (a cloud's metadata) learned"
    assert not routable(host, loopback_is_one_host=False, private_is_routable=True)
