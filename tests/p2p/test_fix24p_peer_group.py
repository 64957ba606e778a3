"""rev24p C: the node counts a peer's part of the strangers' share by its address group
(`Network.peer_group`), as the inbound caps do: two node keys on one host are one source;
a peer in an uncapped network, or not connected, has none (the node falls back on its
id, so each counts alone)."""

from __future__ import annotations

from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async


def _groups(capped: bool) -> tuple[str | None, str | None, str | None]:
    result: list[str | None] = []

    async def scenario() -> None:
        # Every test node is on 127.0.0.1, uncapped unless the caps are asked for.
        limits = fast_limits(uncapped_networks=()) if capped else fast_limits()
        async with cluster() as nodes:
            a = await nodes.add(limits=limits, learn_loopback=True)
            b = await nodes.add(limits=limits, learn_loopback=True)
            c = await nodes.add(limits=limits, learn_loopback=True)
            await b.network.connect(a.address)
            await c.network.connect(a.address)
            await wait_until_async(
                lambda: b.id in a.peer_ids() and c.id in a.peer_ids(), what="b and c linked"
            )
            result.extend(a.network.peer_group(peer) for peer in (b.id, c.id, "02" + "00" * 32))

    run(scenario, timeout=30.0)
    return result[0], result[1], result[2]


def test_peers_of_one_host_share_an_address_group() -> None:
    group_b, group_c, stranger = _groups(capped=True)
    print(f"b={group_b} c={group_c} not connected={stranger}")
    assert group_b is not None and group_b == group_c
    assert stranger is None


def test_peers_in_an_uncapped_network_have_no_group() -> None:
    assert _groups(capped=False) == (None, None, None)
