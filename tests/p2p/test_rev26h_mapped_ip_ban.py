"""rev26h: a peer dialed at the IPv4-mapped spelling of its address is banned under that
spelling, and comes back from its IPv4 address under a new key.

hard26 3: "can two spellings ... dodge a ban?". A peer exchange frame (or the peer's own
HELLO) may name a node as `[::ffff:a.b.c.d]:p`: the wire takes it as canonical, and the
book keeps it apart from `a.b.c.d:p` (test_rev26h_mapped_ipv4_spelling). Dialed there,
the socket reaches the IPv4 listener and its peer name is `::ffff:a.b.c.d`, so when that
peer misbehaves the IP ban is written `ip:::ffff:a.b.c.d`. Inbound connections are
checked by `request.remote`, the plain `a.b.c.d`: the attacker makes a new node key (the
node-key ban then misses too) and dials in from the very IP that was banned. The ban by
IP exists for exactly that (an attacker changing keys behind one address).

Now: the new key is accepted. Should: refused `banned` (an IP ban keyed as the netgroups
read the IP: an IPv4-mapped address is its IPv4).
"""

from __future__ import annotations

import pytest

from p2p.errors import HandshakeError, PeerReason
from p2p.peerbook import ip_ban_key, node_ban_key
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async


def test_a_peer_banned_at_its_mapped_address_cannot_come_back_from_its_ipv4() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            # Loopback bannable: 127.0.0.1 stands in for the attacker's public IPv4.
            target = await nodes.add(limits=fast_limits(ban_loopback=True))
            attacker = await nodes.add()
            port = attacker.address.rsplit(":", 1)[1]
            # The target dials the attacker where a PEERS frame said it lives.
            await target.network.connect(f"[::ffff:127.0.0.1]:{port}")
            await wait_until_async(
                lambda: target.id in attacker.peer_ids(), what="the attacker linked"
            )
            link = attacker.network._peers[target.id]
            # A malformed frame (sealed, after the handshake): a ban at once.
            attacker.network._links.send(link, b"\xc1\xc1 not msgpack", droppable=False)
            book = target.network.book
            await wait_until_async(
                lambda: book.is_banned(node_ban_key(attacker.key.public_key)),
                what="the attacker banned",
            )
            print("bans:", [key for key in book._bans])
            # The same host, a fresh key, dialing in from its IPv4.
            again = await nodes.add()
            with pytest.raises(HandshakeError) as refused:
                await again.network.connect(target.address)
            assert refused.value.reason is PeerReason.BANNED
            assert book.is_banned(ip_ban_key("127.0.0.1"))

    run(scenario, timeout=30.0)
