"""rev26e: a failed shield of a node that is dark for one epoch costs its liars nothing.

The attack: an operator's node V goes dark for epoch 1 (it answers no probe). Its
checkers are nodes its owner does not run, but an owner address costs nothing, so the
operator runs checker A under another address; A says "up" about V (a shield), the five
honest checkers say down: V is DOWN at once. In epoch 2 V answers every probe again.

What happens now (econ26): the watch epoch reads V answering as proof that epoch 1's
"up" was true, so A's false "up" is never charged, and V is CONFIRMED again at epoch 3's
start, its 32-epoch `down_cooldown` skipped. The operator can repeat this whenever its
node goes dark: every failed shield is free, and real downtime costs one epoch.

What should happen (docs/security.md, econ25 row, still in the branch: "a failed shield
still costs each up a forfeit"; nodes.check_node_confirm: "a node marked down sits out its
cooldown"): A, whose "up" about a node that was dark was false, owes a forfeit. Nothing
in epoch 2 tells a node that was up in epoch 1 from one that came back: the rule has to
charge the shield some other way (or the docs have to drop the guarantee).

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
    # Epoch 1 (fixture): V dark, honest checkers 1..5 say down, A says up: V DOWN at once.
    chain = _v_falsely_downed()
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    # Epoch 2: V answers every probe again; every checker reports it up.
    _epoch_2(chain, down=0)
    # At epoch 3's start A's false "up" of epoch 1 has cost nothing.
    assert chain.state.get(rewards.FORFEIT + A) is not None, (
        "A's failed shield of V (dark in epoch 1) cost no forfeit; "
        f"V is {nodes.get_node(chain.state, V).status.name} again, "  # type: ignore[union-attr]
        f"in epoch 3's ring: {V in uptime.get_ring(chain.state).nodes}"
    )
