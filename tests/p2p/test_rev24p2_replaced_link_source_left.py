"""rev24p2: a link replaced as a duplicate tells the strangers' share its source left.

The attack: the strangers' share (fix24p, rev24p C) gives a source whose links are all gone
a part of 0, so its buffered stranger votes are the first to give way to any other source
under its part, an attacker's included (`Driver.source_left`, `_take_place`).
`Node.on_peer_disconnected` means to skip a link replaced as a duplicate ("the peer is
still here", checked by `Network.is_connected`). But `Network._establish` detaches the old
link (`_detach`, which deletes the peer from `_peers` and calls the host) before it puts
the new link in `_peers`: at that call the peer is not connected, so the node pops its
source and calls `source_left` for an honest relay that never left. Two honest nodes
dialing each other (the only case a link is replaced) is enough; from then until that
relay sends another stranger vote, its whole holding counts as over its part, so once it
is the source most over its part, one vote of an attacker's group under its part takes
back every place the relay held (the next epoch's newcomers' votes it relayed).

What happens now: the host's `source_left` is called with the relay's source while the
relay is connected. What should happen: a replaced link is not a source leaving.
"""

from __future__ import annotations

from types import SimpleNamespace

from fluxchain.core.crypto import SigningKey
from fluxchain.node.node import Node
from tests.p2p.harness import RecordingHost, cluster, run
from tests.support.wait import wait_until_async


class SourceHost(RecordingHost):
    """A host that counts sources with the node's own peer callbacks (`Node`'s)."""

    def __init__(self) -> None:
        super().__init__()
        self._sources: dict[str, str] = {}
        self._announced = None
        self.left: list[str] = []
        self.driver = SimpleNamespace(source_left=self.left.append)

    def on_peer_connected(self, peer_id: str) -> None:
        super().on_peer_connected(peer_id)
        Node.on_peer_connected(self, peer_id)  # type: ignore[arg-type]

    def on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        super().on_peer_disconnected(peer_id, reason)
        Node.on_peer_disconnected(self, peer_id, reason)  # type: ignore[arg-type]

    _forget_source = Node._forget_source


def test_a_replaced_link_does_not_mark_its_source_gone() -> None:
    async def scenario() -> None:
        low, high = sorted((SigningKey.generate() for _ in range(2)), key=lambda k: k.public_key)
        async with cluster() as nodes:
            a_host = SourceHost()
            a = await nodes.add(host=a_host, key=high)
            b = await nodes.add(key=low)
            await a.network.connect(b.address)  # dialed by the larger key: replaceable
            await wait_until_async(lambda: a.id in b.peer_ids(), what="a linked to b")
            await b.network.connect(a.address)  # dialed by the smaller key: replaces it
            await wait_until_async(
                lambda: (
                    (b.id, "duplicate_peer") in a_host.disconnected
                    and a_host.connected == [b.id, b.id]
                ),
                what="the link replaced",
            )
            assert a.network.is_connected(b.id)
            source = a_host._sources.get(b.id)
            assert a_host.left == [], (
                f"a's link to b was replaced, b never left, yet the strangers' share was told "
                f"its source {a_host.left} left (now {source!r}): its votes give way first"
            )

    run(scenario, timeout=30.0)
