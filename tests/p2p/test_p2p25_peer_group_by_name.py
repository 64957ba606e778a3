"""p2p25 2: the source a peer's votes count against in the strangers' share is its address
group (`Network.peer_group`). An outbound link kept the host it was dialed by as its
"remote IP": one dialed as `localhost:port` was the group `name:localhost`, so one host
reachable under several names (or a name and its IP) counted as several sources, and its
bans were keyed on the name. The group of every link is now the IP its socket reached
(inbound: the client's; outbound: the peer's, whatever name was dialed), IPv6 and
IPv4-mapped addresses included."""

from __future__ import annotations

import pytest

from p2p.messages import parse_ip
from p2p.netgroup import address_group
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async


def test_one_host_dialed_by_name_and_by_ip_is_one_source() -> None:
    groups: dict[str, str | None] = {}
    remotes: dict[str, str] = {}

    async def scenario() -> None:
        limits = fast_limits(uncapped_networks=())  # the caps of a public node
        async with cluster() as nodes:
            a = await nodes.add(limits=limits, learn_loopback=True)
            b = await nodes.add(limits=limits, learn_loopback=True)
            c = await nodes.add(limits=limits, learn_loopback=True)
            d = await nodes.add(limits=limits, learn_loopback=True)
            port_b = b.address.rsplit(":", 1)[1]
            await a.network.connect(f"localhost:{port_b}")  # by name
            await a.network.connect(c.address)  # by IP
            await d.network.connect(a.address)  # inbound at a
            await wait_until_async(
                lambda: {b.id, c.id, d.id} <= a.peer_ids(), what="a linked to b, c and d"
            )
            for name, node in (("by_name", b), ("by_ip", c), ("inbound", d)):
                groups[name] = a.network.peer_group(node.id)
                peer = a.network._peers[node.id]
                remotes[name] = peer.remote_ip

    run(scenario, timeout=30.0)
    print(f"groups={groups} remote ips={remotes}")
    assert groups["by_ip"] is not None
    assert groups["by_name"] == groups["by_ip"] == groups["inbound"], (
        "one host (127.0.0.1) is several sources in the strangers' share: an outbound link "
        f"dialed by name is grouped by the name ({groups})"
    )
    assert all(parse_ip(ip) is not None for ip in remotes.values()), remotes


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("203.0.113.7", "203.0.0.0/16"),
        ("::ffff:203.0.113.7", "203.0.0.0/16"),  # IPv4-mapped: its IPv4 address
        ("2001:db8:1:2::5", "2001:db8::/32"),
        ("[2001:db8:1:2::5]", "2001:db8::/32"),  # as an address's host part
        ("fe80::1%eth0", "fe80::/32"),  # a socket's link-local peer, with its zone
        ("::1", "local"),
        ("127.0.0.2", "local"),
    ],
)
def test_the_group_of_a_socket_address(host: str, group: str) -> None:
    assert address_group(host) == group
