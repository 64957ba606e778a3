"""rev26e: a failed shield of a node that is dark for one epoch costs its liars nothing.

The attack: an operator's node V goes dark for epoch 1 (it answers no probe). Its
checkers are nodes its owner does not run, but an owner address costs nothing, so the
operator runs checker A under another address; A says "up" about V (a shield), the five
honest checkers say down: V is DOWN at once. In epoch 2 V answers every probe again.

What happened (econ26): the watch epoch read V answering as proof that epoch 1's "up" was
true, so A's false "up" was never charged, and V was CONFIRMED again at epoch 3's start,
its 32-epoch `down_cooldown` skipped: every failed shield was free, and real downtime
cost one epoch.

What happens now (econ27): V sits out its cooldown whatever the watch epoch says (no
reinstatement), and the up reporters are cleared only if V itself attested in epoch 1:
a ring node marked DOWN stays on duty, and a node that was really dark sent nothing. So
A pays for the failed shield of a real outage. The second test pins what stays open:
an owner who keeps signing V's attestations from elsewhere while V refuses every probe
is not told from a falsely downed node; its failed shield is free, and gains it nothing
(V sits out its cooldown, as without the shield; bench.economics `--attack shield
--dark-attests`, docs/economics.md).

Deterministic: the ring is fixed in node order (no seed).
"""

from __future__ import annotations

from fluxchain.core import nodes, rewards, uptime
from fluxchain.core.records import NodeStatus
from tests.economics.test_econ26_watched_down import _epoch_2, _v_falsely_downed
from tests.support.state import node_id_of

V = node_id_of(0)  # the operator's node, dark in epoch 1
A = node_id_of(6)  # the operator's checker under another address: said "up" about V


def test_rev26e_a_failed_shield_of_a_node_back_the_next_epoch_still_costs_a_forfeit() -> None:
    # Epoch 1: V dark (no answer, no attestation), honest 1..5 say down, A up: V DOWN.
    chain = _v_falsely_downed(silent=frozenset({V}))
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    # Epoch 2: V answers every probe again; every checker reports it up.
    _epoch_2(chain, down=0)
    assert chain.state.get(rewards.FORFEIT + A) is not None, (
        "A's failed shield of V (dark in epoch 1) cost no forfeit"
    )
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    assert V not in uptime.get_ring(chain.state).nodes


def test_rev26e_a_shield_of_a_node_that_kept_attesting_is_cleared_and_gains_nothing() -> None:
    """V refuses every probe in epoch 1 but its owner signs its attestation elsewhere:
    the chain sees what it sees of a falsely downed node, so A is cleared (the price of
    not charging honest up reporters). V still sits out its cooldown: the shield failed,
    and its owner is where telling the truth would have left it."""
    chain = _v_falsely_downed()
    _epoch_2(chain, down=0)
    assert chain.state.get(rewards.FORFEIT + A) is None
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    assert V not in uptime.get_ring(chain.state).nodes
