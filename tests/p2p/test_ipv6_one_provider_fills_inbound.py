"""Review of issue 17 #8: the inbound caps stop at the IPv6 /48 (8 per /48, 3 per /128).
A /48 is what a tunnel broker hands out for free (five per account, all inside one /32,
e.g. 2001:470::/32), so one attacker in one provider's /32 — one `address_group`, the
unit the peer book and outbound diversity already treat as one attacker — fills all 40
inbound slots with five /48s. There is no cap per address group on inbound.

Fixed: `Limits.max_inbound_per_group` (16) caps inbound connections per address group.
"""

from __future__ import annotations

from p2p.errors import PeerReason
from p2p.limits import Limits
from p2p.netgroup import address_group
from tests.p2p.harness import cluster, run


def test_one_ipv6_provider_group_fills_every_inbound_slot() -> None:
    limits = Limits(uncapped_networks=())

    async def scenario() -> None:
        async with cluster() as nodes:
            target = await nodes.add(limits=limits)
            network = target.network
            admitted: list[str] = []
            # Five /48s of 2001:470::/32, each host a distinct /128.
            candidates = [
                f"2001:470:{site}::{host}" for site in range(1, 6) for host in range(1, 9)
            ]
            for ip in candidates:
                if network._inbound_refusal(ip) is None:
                    network._pending_inbound[ip] += 1  # as `_accept` counts it
                    admitted.append(ip)
            refusal = network._inbound_refusal("203.0.113.7")  # an honest IPv4 peer
            groups = {address_group(ip) for ip in admitted}
            assert refusal is not PeerReason.TOO_MANY_PEERS, (
                f"{len(admitted)} of {limits.max_inbound} inbound slots held by one group {groups}"
            )
            # The group holds its share, and the next of its addresses is told why.
            assert len(admitted) == limits.max_inbound_per_group
            assert network._inbound_refusal("2001:470:6::1") is PeerReason.TOO_MANY_FROM_GROUP

    run(scenario)


def test_an_uncapped_network_is_exempt_from_the_group_cap() -> None:
    """An operator's own network listed in `uncapped_networks` is not capped per group."""
    limits = Limits(uncapped_networks=("2001:470::/32",))

    async def scenario() -> None:
        async with cluster() as nodes:
            network = (await nodes.add(limits=limits)).network
            admitted = 0
            for ip in [f"2001:470:{site}::{host}" for site in range(1, 6) for host in range(1, 9)]:
                if network._inbound_refusal(ip) is None:
                    network._pending_inbound[ip] += 1
                    admitted += 1
            assert admitted == limits.max_inbound

    run(scenario)
