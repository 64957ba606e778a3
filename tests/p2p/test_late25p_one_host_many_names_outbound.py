"""late25p 2: one host under many DNS names takes many outbound slots.

The outbound diversity rule (`Network._dial_what_is_due`, Bitcoin Core's one outbound
connection per network group) grouped each peer by the address it was dialed at, so
`a.one-host.test`, `b.one-host.test`... (any wildcard DNS, such as sslip.io) were a
`name:` group each though they are one IP: a peer announcing its IP under four names, a
free node key at each port, held four of the node's outbound slots.

Here the test's event loop answers every `*.one-host.test` name with 127.0.0.1 (local
only, deterministic), loopback is not exempt (a public node's rules). Should: one outbound
peer for that host; the other names are held off, neither banned nor counted as failed
dials (the book would forget them), and dialed again after the backoff cap. On a devnet
(loopback exempt) every peer counts alone, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from p2p.network import Direction, Network
from p2p.peerbook import ip_ban_key
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async

NAMES = ["a.one-host.test", "b.one-host.test", "c.one-host.test", "d.one-host.test"]


def _one_host_resolver(loop: asyncio.AbstractEventLoop) -> None:
    """Every `*.one-host.test` name is 127.0.0.1, in this test's event loop only (a
    learned name is resolved by the node's own lookup, `loop.getaddrinfo`: fix27p)."""
    resolve = loop.getaddrinfo

    async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        one_host = isinstance(host, str) and host.endswith(".one-host.test")
        return await resolve("127.0.0.1" if one_host else host, *args, **kwargs)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]


def _outbound(network: Network) -> list[tuple[str, str]]:
    return sorted(
        (peer.address, peer.remote_ip)
        for peer in network._peers.values()
        if peer.direction is Direction.OUTBOUND
    )


def _scenario(uncapped: tuple[str, ...] | None, seen: dict[str, Any]) -> None:
    overrides: dict[str, Any] = {"backoff_cap": 60.0}
    if uncapped is not None:
        overrides["uncapped_networks"] = uncapped
    limits = fast_limits(**overrides)

    async def scenario() -> None:
        _one_host_resolver(asyncio.get_running_loop())
        async with cluster() as nodes:
            target = await nodes.add(limits=limits, learn_loopback=True)
            peers = [await nodes.add(limits=limits, learn_loopback=True) for _ in NAMES]
            network = target.network
            addresses = [
                f"{name}:{peer.address.rsplit(':', 1)[1]}"
                for name, peer in zip(NAMES, peers, strict=True)
            ]
            for address in addresses:
                assert network.book.add_discovered(address, source="")
            network._wake.set()

            def settled() -> bool:
                # each name connected, or held off past the backoff a dial sets
                connected = {address for address, _ in _outbound(network)}
                later = network.book._clock() + 20
                return not network._dialing and all(
                    a in connected
                    or ((entry := network.book.entry(a)) is not None and entry.next_dial_at > later)
                    for a in addresses
                )

            await wait_until_async(settled, timeout=10.0, what="the target's dials settled")
            seen["outbound"] = _outbound(network)
            seen["entries"] = {a: network.book.entry(a) for a in addresses}
            seen["ip_banned"] = network.book.is_banned(ip_ban_key("127.0.0.1"))
            seen["now"] = network.book._clock()

    run(scenario, timeout=30.0)


def test_late25p_one_host_under_many_names_takes_one_outbound_slot() -> None:
    seen: dict[str, Any] = {}
    _scenario((), seen)  # a public node's rules: loopback is one group
    outbound = seen["outbound"]
    print(f"outbound (dialed address, socket IP): {outbound}")
    assert len(outbound) == 1, (
        f"one host (127.0.0.1) holds {len(outbound)} outbound slots under names that "
        f"resolve to it, each its own group: {outbound}"
    )
    (held,) = outbound
    assert not seen["ip_banned"]
    for address, entry in seen["entries"].items():
        if address == held[0]:
            continue
        assert entry is not None, f"{address} was forgotten"
        assert entry.failures == 0, (address, entry)
        assert entry.next_dial_at > seen["now"] + 20, (address, entry, seen["now"])


def test_late25p_a_devnet_exempts_its_loopback_peers_from_the_group_rule() -> None:
    seen: dict[str, Any] = {}
    _scenario(None, seen)  # the harness's limits: loopback uncapped, as on a devnet
    outbound = seen["outbound"]
    print(f"outbound (dialed address, socket IP): {outbound}")
    assert len(outbound) == len(NAMES), outbound
