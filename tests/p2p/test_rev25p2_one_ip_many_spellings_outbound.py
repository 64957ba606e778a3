"""rev25p2 3: one host's IPv4 address spelled as a "name" (`0x7f000001`, `0x7f.1`,
`127.0x0.1`: hex and short forms that getaddrinfo reads as 127.0.0.1, and that aiohttp
dials) is a group
of its own for each spelling in the outbound diversity rule, so a host holds as many of a
node's outbound slots as it has node keys and spellings.

p2p25 2 made a connected peer's group and IP ban the IP its socket reached ("one host
under several names must be one source, one ban, one group"), but the rule that spreads
the peers a node dials itself (`Network._dial_what_is_due`, Bitcoin Core's one outbound
connection per network group) still groups the dialed address (`Netgroups.group`), and
`parse_address` takes these spellings as host names (`name:0x7f.1`, ...).

Attack: a peer announces in PEERS its one IP under several spellings, one node key (free)
at each port. Now: the node dials every one of them at once, all to one host, which then
holds that many outbound slots (an eclipse needs one IP, not one per network). Should: a
numeric spelling is the IP it spells (or refused as an address), and one host's
addresses take one outbound slot, as its dotted-quad addresses do."""

from __future__ import annotations

from p2p.network import Direction
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async


def test_rev25p2_one_host_under_numeric_spellings_takes_one_outbound_slot() -> None:
    outbound_remotes: list[tuple[str, str]] = []

    async def scenario() -> None:
        limits = fast_limits(uncapped_networks=())  # a public node's rules
        async with cluster() as nodes:
            target = await nodes.add(limits=limits, learn_loopback=True)
            attackers = [await nodes.add(limits=limits, learn_loopback=True) for _ in range(4)]
            ports = [node.address.rsplit(":", 1)[1] for node in attackers]
            spellings = ["0x7f000001", "0x7f.1", "127.0x0.1", "127.0.0.0x1"]  # 127.0.0.1
            for spelling, port in zip(spellings, ports, strict=True):
                assert target.network.book.add_discovered(f"{spelling}:{port}", source="")
            target.network._wake.set()
            network = target.network

            def settled() -> bool:
                outbound = [p for p in network._peers.values() if p.direction is Direction.OUTBOUND]
                return bool(outbound) and not network._dialing

            await wait_until_async(settled, what="the target's first dials settled")
            outbound_remotes.extend(
                (peer.address, peer.remote_ip)
                for peer in network._peers.values()
                if peer.direction is Direction.OUTBOUND
            )

    run(scenario, timeout=30.0)
    print(f"outbound (dialed address, socket IP): {outbound_remotes}")
    hosts = {ip for _, ip in outbound_remotes}
    assert hosts == {"127.0.0.1"}, outbound_remotes
    assert len(outbound_remotes) == 1, (
        f"one host (127.0.0.1) holds {len(outbound_remotes)} outbound slots through "
        f"numeric spellings of its IP, each its own group: {outbound_remotes}"
    )
