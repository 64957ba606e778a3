"""rev27e: in a full network (`max_active`) the slot a false DOWN frees is taken before the
next epoch starts, so the watch epoch never happens and the honest "up" reporter pays.

Attack: twelve nodes fill the network (max_active = 12, epoch_length 25, one tx a
block). Liars 1..5 say down about V (DOWN at once), H says up, truthfully. V's DOWN frees
a slot mid-epoch, and a node that already holds its rank key (the liar's own expired node,
or any operator's) confirms into it with a real NODE_CONFIRM: its bound sees 11 < 12.

Now: at epoch 2's start twelve nodes are confirmed, `_watch` finds no room for V
(`len(watchable) <= max_active - confirmed` is 1 <= 0) and charges H at once for a true
report, exactly as before econ26. In any full network with a waiting node the watch epoch
is void, and the liar can make it so at will.
Should: a node marked DOWN in the ended epoch was counted in the ring that epoch was
sized for; its watch should not depend on a confirm the DOWN itself made room for (H owes
nothing, V is watched in epoch 2).
Fixed (fix27e): a watched node needs no active slot (it sends no attestation); the
watched are bounded by `max_active` and the ring by `MAX_ACTIVE_NODES` (`uptime._watch`).
"""

from __future__ import annotations

from dataclasses import replace

from fluxchain.core import nodes, uptime
from fluxchain.core.crypto import sha256
from fluxchain.core.records import META, RING, Meta, NodeStatus, Ring, node_key
from fluxchain.core.tx import NodeConfirm, Tx
from tests.economics.test_econ26_watched_down import (
    LIARS,
    H,
    V,
    _attest_all,
    _contradicted,
    _next_epoch,
    _owes,
)
from tests.support.state import CHAIN, StateRunner, make_params, node_id_of

K = 6
NODES = 12


def test_rev27e_a_full_network_charges_the_honest_up_reporter_of_a_false_down() -> None:
    chain = StateRunner(make_params(checkers_per_node=K, max_block_txs=1, epoch_length=25))
    for i in range(NODES):
        chain.add_node(i)
    cap = nodes.max_active(chain.params)
    assert cap == NODES  # the network is full
    origin = sha256(b"rev27e full")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(node_id_of(i) for i in range(NODES))))
    _attest_all(chain, 1, lambda c, t: not (c in LIARS and t == V), set())
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    # V's DOWN freed a slot: a keyed node that had expired confirms into it (the block
    # rule, NODE_CONFIRM: admitted while fewer than `max_active` nodes are active).
    back = chain.add_node(NODES, status=NodeStatus.EXPIRED)
    back = replace(back, collateral=chain.params.tier(back.tier).collateral, status_height=2)
    chain.state.put(node_key(back.node_id), back)
    assert back.benchmark is not None
    confirm = NodeConfirm(back.node_id, back.benchmark, "test")
    chain.apply(
        nodes.process_node_confirm,
        Tx(CHAIN, confirm.KIND, back.node_key, 0, 0, confirm, b""),
    )
    assert nodes.get_node(chain.state, back.node_id).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    _next_epoch(chain, 2)
    assert (H, V, 1) not in _contradicted(chain), "H was charged for a true up at once"
    assert not _owes(chain, H)
    assert uptime.watched(chain.state) == {V}
