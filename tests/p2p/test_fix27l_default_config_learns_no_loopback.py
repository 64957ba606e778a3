"""fix27l 2: a node on the default config learns no loopback address from peers.

Bug: the default config listens on 127.0.0.1 and advertises nothing (`NodeConfig`), and
the learn rule read that listen address as "this node is on loopback": a production
node that only dials out learned a stranger's `127.0.0.1:26700` or `localhost:26700`
from PEERS and dialed its own API and other loopback services. Loopback is now learned
only on an explicit signal: the node advertises a loopback address, or its config says
it is a one-machine devnet (its uncapped networks hold loopback, as `flux devnet`, the
integration harness and the p2p test harness set)."""

from __future__ import annotations

import pytest

from fluxchain.node.home import NodeConfig
from p2p.errors import HandshakeError, PeerReason
from p2p.netgroup import LOOPBACK_NETWORKS, LearnRule
from tests.p2p.harness import cluster, fast_limits, run

STRANGERS = ["127.0.0.1:26700", "localhost:26700", "api.localhost:26700", "[::1]:26700"]


def test_fix27l_the_default_config_learns_no_loopback() -> None:
    config = NodeConfig()
    rule = LearnRule.of_node(config.p2p_host, config.p2p_advertise or None)
    for address in STRANGERS:
        assert not rule.allows(address), f"{address} learned on the default config"
    rule = LearnRule.of_node(
        config.p2p_host, config.p2p_advertise or None, config.p2p_uncapped_networks
    )
    assert not any(rule.allows(address) for address in STRANGERS)


@pytest.mark.parametrize(
    ("listen", "advertise", "uncapped"),
    [
        ("127.0.0.1", None, LOOPBACK_NETWORKS),  # flux devnet, the harnesses
        ("127.0.0.1", None, ("127.0.0.0/8",)),
        ("0.0.0.0", "127.0.0.1:26601", ()),  # it says it is reached on loopback
        ("0.0.0.0", "localhost:26601", ()),
        ("::1", "[::1]:26601", ()),
    ],
)
def test_fix27l_loopback_is_learned_on_an_explicit_signal(
    listen: str, advertise: str | None, uncapped: tuple[str, ...]
) -> None:
    rule = LearnRule.of_node(listen, advertise, uncapped)
    assert all(rule.allows(address) for address in STRANGERS)
    assert not rule.allows("10.0.0.1:26600")


def test_fix27l_a_public_node_with_uncapped_loopback_learns_no_loopback() -> None:
    """A devnet's uncapped networks say nothing of a node that advertises a public
    address (a sentry exempting its own validator on loopback from the caps)."""
    rule = LearnRule.of_node("0.0.0.0", "81.2.69.5:26600", LOOPBACK_NETWORKS)
    assert not any(rule.allows(address) for address in STRANGERS)


def test_fix27l_a_default_config_node_never_dials_a_learned_loopback_address() -> None:
    """The node as a user runs it: listening on 127.0.0.1, nothing advertised, the caps
    of a public node; a stranger's loopback address is refused before any dial."""

    async def scenario() -> None:
        async with cluster() as nodes:
            target = await nodes.add()
            node = await nodes.add(limits=fast_limits(uncapped_networks=()))
            # However it entered the book (PEERS are judged on arrival), its dial is refused.
            assert node.network.book.add_discovered(target.address, source="81.2.71.9")
            with pytest.raises(HandshakeError) as refused:
                await node.network.connect(target.address)
            assert refused.value.reason is PeerReason.UNROUTABLE_ADDRESS
            assert target.id not in node.peer_ids()

    run(scenario)
