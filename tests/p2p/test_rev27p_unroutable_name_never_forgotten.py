"""rev27p: a learned name that resolves to a refused IP stays in the book for good.

Attack: a stranger answers GET_PEERS with host names (`evil.test:p`, each a group of
its own) that its DNS resolves to an address this node may not dial (its loopback, its
LAN, the metadata service). Names enter the book unjudged (`LearnRule.allows`), and
each dial's socket reaches the refused IP.

Now: the dial is refused `unroutable_address` and `_dial` only holds the address off
`backoff_cap`, counting no failure ("our own diversity rule"), so the book never
forgets it: the name is resolved and dialed again every `backoff_cap` forever (its
websocket GET sent to the refused service each time), kept in the stored book across
restarts, and holds its bucket slot against honest addresses. Before pex26 such a name
failed its handshake and was forgotten after `max_failures`.

Should: an address whose dial reached a refused IP is forgotten like any address that
keeps failing (at most `max_failures` dials), never kept and redialed for good.
"""

from __future__ import annotations

import asyncio
from typing import Any

from p2p.messages import parse_address
from tests.p2p.harness import cluster, fast_limits, run

PUBLIC = "81.2.69.5:26600"


def test_rev27p_a_name_reaching_a_refused_ip_is_forgotten_after_max_failures() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        resolve = loop.getaddrinfo

        async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            # (This test's event loop only: `evil.test` is the attacker's DNS name.)
            return await resolve("127.0.0.1" if host == "evil.test" else host, *args, **kwargs)

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        async with cluster() as nodes:
            # A loopback service that would answer (here another node's port).
            service = await nodes.add(limits=fast_limits(max_outbound=0))
            _host, port = parse_address(service.address)
            # A node that advertises a public address: loopback is not learnable.
            node = await nodes.add(limits=fast_limits(max_outbound=0), advertise=PUBLIC)
            network = node.network
            address = f"evil.test:{port}"
            assert network.book.add_discovered(address, source="81.2.70.9")
            dials = network.book.max_failures + 2
            for _ in range(dials):
                if network.book.entry(address) is None:
                    break
                await network._dial(address)
            assert network.book.entry(address) is None, (
                f"{address} (reaches 127.0.0.1, refused unroutable_address) still in the "
                f"book after {dials} dials: redialed every backoff_cap for good"
            )

    run(scenario)
