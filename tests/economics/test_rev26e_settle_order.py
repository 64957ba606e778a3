"""rev26e: an up reporter that is itself watched escapes its forfeit, by node-id order.

The attack: in epoch 1 node H says "up" about V, and H is itself marked DOWN by a down
quorum in the same epoch (its own "up" reporter: V). Both are watched in epoch 2. V stays
dead there (its checkers say down), so H's "up" about V was false; H answers its own
checkers (they say up), so H is cleared and confirmed again.

What happens now: `_settle_pending` walks the waiting records in key order. When V's
record comes first, H is charged while still DOWN, and `_judged` names and charges only
active nodes: H's forfeit is dropped, then H's own record reinstates it. Had the ids been
ordered the other way, H would pay. Node ids come from register txs, which an owner can
re-sign until it likes them, so the attacker picks the order that frees its liars.

What should happen: H's false "up" about V costs a forfeit whatever the ids' order (the
charge should not depend on whether H was DOWN for a moment inside the same settlement).

Deterministic: the ring is fixed in node order (no seed).
"""

from __future__ import annotations

from fluxchain.core import nodes, rewards
from fluxchain.core.crypto import sha256
from fluxchain.core.records import META, RING, UP_PENDING, Meta, NodeStatus, Ring
from tests.economics.test_econ26_watched_down import NODES, K, _attest_all, _next_epoch
from tests.support.state import StateRunner, make_params, node_id_of

# Ring in node order, K = 6: V at position 6 is checked by 7..11 and H; H at position 0
# by 1..5 and V. Node 6's id sorts before node 0's (V's waiting record is settled first).
V, H = node_id_of(6), node_id_of(0)
V_DOWNERS = {node_id_of(i) for i in range(7, 12)}  # down about V in epoch 1
H_DOWNERS = {node_id_of(i) for i in range(1, 6)}  # down about H in epoch 1


def test_rev26e_a_watched_up_reporter_pays_for_a_false_up_whatever_the_id_order() -> None:
    chain = StateRunner(make_params(checkers_per_node=K))
    for i in range(NODES):
        chain.add_node(i)
    origin = sha256(b"rev26e")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(node_id_of(i) for i in range(NODES))))

    def epoch_1(checker: bytes, target: bytes) -> bool:
        if target == V:
            return checker not in V_DOWNERS  # H says up
        if target == H:
            return checker not in H_DOWNERS  # V says up
        return True

    _attest_all(chain, 1, epoch_1, set())
    for node_id in (V, H):
        assert nodes.get_node(chain.state, node_id).status is NodeStatus.DOWN  # type: ignore[union-attr]
    _next_epoch(chain, 2)
    assert chain.state.get(UP_PENDING + V).up == (H,)
    assert chain.state.get(UP_PENDING + H).up == (V,)
    assert V < H  # the order the attacker ground its ids for
    # Epoch 2: V is dead (its checkers say down), H answers (its checkers say up).
    _attest_all(chain, 2, lambda c, t: t != V, set())
    _next_epoch(chain, 3)
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    assert nodes.get_node(chain.state, H).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    assert chain.state.get(rewards.FORFEIT + H) is not None, (
        "H's false up about V (dead in the watch epoch) cost no forfeit"
    )
