"""late26 1: a zoned p2p_host with no p2p_advertise is refused when the config loads.

With no p2p_advertise the HELLO carries p2p_host:p2p_port; since fix26p2 every peer
refuses an address with an IPv6 zone (`bad_field`), so such a node started and never
linked to anyone. It must fail at load with a stable reason instead."""

import pytest

from fluxchain.core.errors import FluxError, Reason
from fluxchain.node.home import NodeConfig


def test_a_zoned_listen_host_without_an_advertised_address_is_refused() -> None:
    with pytest.raises(FluxError) as err:
        NodeConfig.from_toml('p2p_host = "fe80::1%eth0"\n')
    assert err.value.reason is Reason.BAD_FIELD
    assert "p2p_host" in err.value.message and "zone" in err.value.message


def test_a_zoned_listen_host_with_a_routed_advertised_address_loads() -> None:
    config = NodeConfig.from_toml(
        'p2p_host = "fe80::1%eth0"\np2p_advertise = "203.0.113.5:26600"\n'
    )
    assert config.p2p_advertise == "203.0.113.5:26600"
