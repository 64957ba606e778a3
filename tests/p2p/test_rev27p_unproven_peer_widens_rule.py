"""rev27p: a configured peer's dial widens the learn rule before the peer is proven.

Attack: an operator configures a seed by key and name (`KEY@seed.example.org:26600`),
as the WAN testnet and docs/operations.md do. The name resolves where it should not: a
hijacked or stale DNS record, or a host's own name that /etc/hosts maps to 127.0.1.1
(Debian's default) copied into every node's peer list. Whatever answers there (another
node, this node itself) is not the configured key.

Now: `connect` calls `LearnRule.configured_peer_at(remote_ip)` as soon as the websocket
is up, before `_establish` checks the key: the handshake is refused `wrong_node_key`,
yet the node on a public address has learned it "is on loopback" for the rest of the
run, and every stranger's `127.0.0.1:<port>` in PEERS is kept and dialed.

Should: only a configured peer that proved its key (or, unpinned, completed the
handshake as another node than this one) tells the node where it is; a refused dial
changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluxchain.core.crypto import SigningKey
from p2p.errors import P2PError, PeerReason
from p2p.messages import parse_address
from p2p.netgroup import LearnRule
from tests.p2p.harness import cluster, fast_limits, run

PUBLIC = "81.2.69.5:26600"


def test_rev27p_a_configured_peer_answering_with_the_wrong_key_does_not_open_loopback() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        resolve = loop.getaddrinfo

        async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            # (This test's event loop only: the seed's name resolves to loopback.)
            return await resolve("127.0.0.1" if host == "seed.test" else host, *args, **kwargs)

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        async with cluster() as nodes:
            impostor = await nodes.add(limits=fast_limits(max_outbound=0))
            _host, port = parse_address(impostor.address)
            seed_key = SigningKey.generate().public_key.hex()
            node = await nodes.add(
                persistent=[f"{seed_key}@seed.test:{port}"],
                advertise=PUBLIC,
                limits=fast_limits(max_outbound=0),
            )
            # Its configuration alone learns no loopback (its peer is known by name).
            # (fix27p2: the rule takes no configured peers any more.)
            assert not LearnRule.of_node("127.0.0.1", PUBLIC).allows("127.0.0.1:1")
            rule = node.network._learn_rule
            with pytest.raises(P2PError) as refused:
                await node.network.connect(f"seed.test:{port}")
            assert refused.value.reason is PeerReason.WRONG_NODE_KEY
            assert not rule.allows("127.0.0.1:26700"), (
                "a dial refused wrong_node_key made a public node learn loopback addresses"
            )

    run(scenario)
