"""Issue 26 review: the uptime quorum against an attacker that splits its nodes over many
addresses, while honest nodes are run by a few large operators (a hosting market).

The checkers of a target are its next `checkers_per_node` ring nodes *of distinct owner
addresses*, looked for among at most `WALK_FACTOR * k` ring positions, and DOWN needs
down reports from more than 2/3 of the checkers found. An address costs nothing, so the
attacker gives each node its own and every one of its nodes in the walk is a checker;
an honest operator with many nodes is one checker per target however many of its nodes
the walk passes. The walk then ends with fewer checkers than k, and the attacker's share
of them is far above its share of the nodes.

Now every node is one checker slot whoever runs it (only the target's own owner is left
out), so splitting over addresses buys nothing.
"""

from __future__ import annotations

import hashlib

from fluxchain.core import uptime
from fluxchain.core.uptime import checkers_of, quorum_reached
from tests.support.state import StateRunner, node_id_of

NODES = 1_000
HONEST_OPERATORS = 5
ATTACKER_SHARE_PERCENT = 20


def test_one_address_per_node_captures_down_quorums_over_large_honest_operators() -> None:
    """1,000 Cumulus nodes, mainnet-shaped params (k = 21): 800 honest nodes run by five
    operators (160 nodes each), 200 attacker nodes under one address each. The docs
    promise a 20 % minority a DOWN quorum on a target with probability below 1e-6; here
    the attacker holds more than 2/3 of the checkers of hundreds of honest nodes, every
    epoch, with reports that nothing contradicts (its DOWN wins, and the honest checkers
    that said up are the ones penalised)."""
    chain = StateRunner()
    operators = [hashlib.sha256(b"operator%d" % i).digest()[:20] for i in range(HONEST_OPERATORS)]
    attackers = NODES * ATTACKER_SHARE_PERCENT // 100
    honest = NODES - attackers
    for i in range(honest):
        chain.add_node(i, owner=operators[i % HONEST_OPERATORS])
    for i in range(honest, NODES):
        chain.add_node(i)  # an address of its own per node (make_node's default owner)
    attacker_ids = {node_id_of(i) for i in range(honest, NODES)}
    uptime.start_epoch(chain.ctx, 1, hashlib.sha256(b"any seed").digest())

    k = chain.params.checkers_per_node
    captured, sizes = [], []
    for i in range(honest):
        checkers = checkers_of(chain.state, node_id_of(i), k)
        sizes.append(len(checkers))
        lying = sum(c in attacker_ids for c in checkers)  # down; the honest say up
        if quorum_reached(lying, len(checkers) - lying, len(checkers)):
            captured.append(i)
    mean_checkers = sum(sizes) / len(sizes)
    assert not captured, (
        f"a {ATTACKER_SHARE_PERCENT} % attacker holds a DOWN quorum over {len(captured)} of "
        f"{honest} honest nodes (checkers per target: {mean_checkers:.1f} of k = {k})"
    )
