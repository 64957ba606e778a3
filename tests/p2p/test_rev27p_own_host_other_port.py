"""rev27p: a peer points the node at its own host, on another port.

Attack: a node advertises its public address `81.2.69.5:26600`. A stranger answers
GET_PEERS with `81.2.69.5:26700` (the node's own API), `81.2.69.5:22` or the port of
any service the machine binds on every interface (an app's, the agent's): the node's
own public IP is routable, so the learn rule keeps it, and `PeerExchange` drops only the
node's exact own address. The node then opens a websocket GET to its own services, by
a hairpin through its public IP (Bitcoin Core refuses to connect to its own local
addresses, `IsLocal`).

Now: every such address enters the book and is dialed as a peer.

Should: a learned address on the node's own advertised host (any port but its own,
which is already dropped) never enters the book.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from p2p.messages import Peers
from p2p.netgroup import LOOPBACK_NETWORKS, LearnRule
from p2p.peer import Peer
from tests.p2p.harness import cluster, fast_limits, run

OWN = "81.2.69.5:26600"


def test_rev27p_a_peer_cannot_point_a_node_at_its_own_host() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            # No outbound dial in this test: 81.2.69.5 is nobody's here.
            node = await nodes.add(advertise=OWN, limits=fast_limits(max_outbound=0))
            network = node.network
            peer = cast(
                Peer, SimpleNamespace(peers_requested=True, remote_ip="81.2.71.9", short="p")
            )
            own_services = ["81.2.69.5:26700", "81.2.69.5:22", "[::ffff:81.2.69.5]:6379"]
            cast(Any, network._exchange).on_peers(
                peer, Peers((*own_services, OWN, "81.2.70.20:26600"))
            )
            assert "81.2.70.20:26600" in network.book
            kept = [address for address in own_services if address in network.book]
            assert kept == [], f"a node advertising {OWN} keeps its own host's {kept}"

    run(scenario)


def test_fix27p2_own_listen_ip_is_refused_and_loopback_stays_shared() -> None:
    """The specific listen IP is the node's own too (a WAN validator on 10.32.0.2), and a
    name resolving there is refused at its dial (`allows_ip`); a one-machine devnet's
    nodes all share 127.0.0.1, which is never counted as the node's own."""
    validator = LearnRule.of_node("10.32.0.2", None)
    assert not validator.allows("10.32.0.2:22")
    assert not validator.allows_ip("10.32.0.2")
    assert validator.allows("10.32.0.3:26600")
    assert LearnRule.of_node("127.0.0.1", None, LOOPBACK_NETWORKS).allows("127.0.0.1:26601")
