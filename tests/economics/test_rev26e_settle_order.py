"""rev26e: an up reporter that is itself watched escaped its forfeit, by node-id order.

The attack: in epoch 1 node H says "up" about V, and H is itself marked DOWN by a down
quorum in the same epoch (its own "up" reporter: V). Both are watched in epoch 2. V stays
dead there (its checkers say down), so H's "up" about V was false; H answers its own
checkers (they say up).

What happened (econ26): `_settle_pending` walked the waiting records in key order. When
V's record came first, H was charged while still DOWN, and `_judged` charges only active
nodes: H's forfeit was dropped, then H's own record confirmed it again. Had the ids been
ordered the other way, H would have paid. Node ids come from register txs, which an owner
can re-sign until it likes them.

What happens now (econ27): no node is confirmed again by the watch epoch, and every
charge of an epoch's start is judged against the statuses the ended epoch left. H was
DOWN when epoch 2 ended (since epoch 1): it has no payout to forfeit, as on main, and sits
out its 32-epoch cooldown, whatever the ids' order. The test plays both orders;
tests/property/test_uptime_settle_order.py plays every order of a history where the
reporter is downed by the same epoch start that charges it (it pays in every order).

Deterministic: the ring is fixed in node order (no seed).
"""

from __future__ import annotations

import pytest

from fluxchain.core import nodes, rewards
from fluxchain.core.crypto import sha256
from fluxchain.core.records import META, RING, UP_PENDING, Meta, NodeStatus, Ring
from tests.economics.test_econ26_watched_down import NODES, K, _attest_all, _next_epoch
from tests.support.state import StateRunner, make_params, node_id_of


@pytest.mark.parametrize(("v_at", "h_at"), [(6, 0), (0, 6)], ids=["v-first", "h-first"])
def test_rev26e_a_watched_up_reporter_is_judged_the_same_whatever_the_id_order(
    v_at: int, h_at: int
) -> None:
    # Ring in node order, K = 6: the node at 6 is checked by 7..11 and the one at 0; the
    # node at 0 by 1..5 and the one at 6. Node 6's id sorts before node 0's.
    v, h = node_id_of(v_at), node_id_of(h_at)
    v_downers = {node_id_of((v_at + i) % NODES) for i in range(1, 6)}
    h_downers = {node_id_of((h_at + i) % NODES) for i in range(1, 6)}
    chain = StateRunner(make_params(checkers_per_node=K))
    for i in range(NODES):
        chain.add_node(i)
    origin = sha256(b"rev26e")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(node_id_of(i) for i in range(NODES))))

    def epoch_1(checker: bytes, target: bytes) -> bool:
        if target == v:
            return checker not in v_downers  # h says up
        if target == h:
            return checker not in h_downers  # v says up
        return True

    _attest_all(chain, 1, epoch_1, set())
    for node_id in (v, h):
        assert nodes.get_node(chain.state, node_id).status is NodeStatus.DOWN  # type: ignore[union-attr]
    _next_epoch(chain, 2)
    assert chain.state.get(UP_PENDING + v).up == (h,)
    assert chain.state.get(UP_PENDING + h).up == (v,)
    # Epoch 2: v is dead (its checkers say down), h answers (its checkers say up).
    _attest_all(chain, 2, lambda c, t: t != v, set())
    _next_epoch(chain, 3)
    for node_id in (v, h):
        assert nodes.get_node(chain.state, node_id).status is NodeStatus.DOWN  # type: ignore[union-attr]
        assert chain.state.get(rewards.FORFEIT + node_id) is None
