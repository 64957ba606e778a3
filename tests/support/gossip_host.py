"""A stand-in for `Node` around a NodeService, for tests of its gossip handlers."""

from __future__ import annotations

from types import SimpleNamespace

from fluxchain.node.node import Node
from fluxchain.node.service import NodeService


def gossip_host(service: NodeService) -> tuple[SimpleNamespace, list[tuple[str, str]]]:
    """What `Node.on_gossip(host, ...)` and `Node._on_txs` need around `service`, and
    the list of the peers it punishes, as (peer id, reason), in order. The ids it drops
    unjudged (`Network.unreceive_txs`) go to `host.network.unreceived`."""
    punished: list[tuple[str, str]] = []
    unreceived: list[bytes] = []
    network = SimpleNamespace(
        announce_txs=lambda ids, source=None: None,
        punish=lambda peer_id, points, reason: punished.append((peer_id, reason)),
        unreceive_txs=lambda peer_id, ids: unreceived.extend(ids),
        unreceived=unreceived,
    )
    host = SimpleNamespace(service=service, network=network, genesis=SimpleNamespace(chain_id="x"))
    host._on_txs = lambda *args: Node._on_txs(host, *args)  # type: ignore[arg-type]
    return host, punished
