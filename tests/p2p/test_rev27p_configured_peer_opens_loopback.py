"""rev27p: a configured peer's network is opened to every stranger's PEERS answer.

Attack: a public node (`--p2p-host 0.0.0.0 --p2p-advertise <public>`, docs/p2p.md's
public set-up) keeps its validator on the same machine as a persistent peer
(`127.0.0.1:26601`), or on its LAN (`10.0.0.5:26600`): the usual sentry layout. Any
stranger that connects answers GET_PEERS with `127.0.0.1:26700` (the node's own API),
`127.0.0.1:6379` or `10.0.0.1:80` (the LAN's router).

Now: `LearnRule.of_node` counts the configured peer's address (or the IP its dial
reached, `configured_peer_at`) as "where the node is", so loopback (or every private
range) becomes learnable for *every* peer, and the node dials its own loopback services
and its LAN on a stranger's word, what pex26/pex27 set out to close.

Should: a node that advertises a public address learns no loopback or private address
from peers, whatever its configured peers are (those are dialed as configured, never by
this rule); the devnets (which advertise nothing or a loopback/private address) keep
learning theirs.
"""

from __future__ import annotations

import pytest

from p2p.netgroup import LearnRule

PUBLIC = "81.2.69.5:26600"


@pytest.mark.parametrize(
    ("configured", "learned"),
    [
        ("127.0.0.1:26601", "127.0.0.1:26700"),
        ("localhost:26601", "127.0.0.1:6379"),
        ("10.0.0.5:26600", "10.0.0.1:80"),
        ("192.168.1.20:26600", "192.168.1.1:80"),
    ],
)
def test_rev27p_public_node_with_a_local_sentry_peer_learns_no_local_address(
    configured: str, learned: str
) -> None:
    # fix27p2: the rule takes no configured peer at all (the decision): the node's own
    # address is all it is given, whatever `configured` is.
    rule = LearnRule.of_node("0.0.0.0", PUBLIC)
    assert not rule.allows(learned), (
        f"a node advertising {PUBLIC} keeps {learned} from a stranger's PEERS because its "
        f"configured peer is at {configured}"
    )


def test_rev27p_public_node_whose_peer_name_reaches_loopback_learns_no_loopback() -> None:
    """The same through a name: the configured peer `validator.internal` resolves to
    127.0.0.1 (an /etc/hosts entry); once dialed, loopback was opened to everyone."""
    # fix27p2: no `configured_peer_at` any more; what a node's dials reach never reaches
    # its rule (tests/p2p/test_pex27_learn_rule_hardening.py links one by name).
    rule = LearnRule.of_node("0.0.0.0", PUBLIC)
    assert not hasattr(rule, "configured_peer_at")
    assert not rule.allows("127.0.0.1:26700")
