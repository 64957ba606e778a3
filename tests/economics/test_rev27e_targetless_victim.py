"""rev27e: a ring node with no targets cannot attest, so if liars down it its honest "up"
reporters are charged for a true report: the watch epoch's clearance needs an attestation
the chain refuses it to send.

Attack: sixteen nodes, six checkers a target, the ring in node order. One operator runs
the seven nodes 0..6 in a row, so V (node 6, the run's end) checks nobody: every node
before it within the walk has six of the operator's nodes after it first, and its owner's
nodes never check their own (`targets_of` is empty, its UPTIME_ATTEST is refused
`not_a_checker`). The liars 7..11 say V is down (DOWN at once), H (node 12) says up,
truthfully; in epoch 2, V's watch epoch, every checker sees it up.

Now: `uptime.cleared` asks that V attested in epoch 1 (`last_attest_epoch`), which it had
no way to do, so H is charged at epoch 3's start: a forfeit for a true report, the
charge the watch epoch was built to lift (docs/state.md, "The watch epoch").
Should: a node that had no duty to attest is not held to an attestation (H owes
nothing).
Fixed (fix27e): the wait records whether the node had targets (`UpPending.attest_due`),
and `uptime.cleared` asks its attestation only then.
"""

from __future__ import annotations

import pytest

from fluxchain.core import nodes, uptime
from fluxchain.core.crypto import sha256
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.records import META, RING, UP_PENDING, Meta, NodeStatus, Ring
from fluxchain.core.tx import Tx, UptimeAttest, UptimeReport
from tests.economics.test_econ26_watched_down import (
    _attest_all,
    _contradicted,
    _next_epoch,
    _owes,
)
from tests.support.state import CHAIN, StateRunner, make_params, node_id_of

K = 6
NODES = 16
OPERATOR = sha256(b"rev27e operator")[:20]
V, H = node_id_of(6), node_id_of(12)
LIARS = frozenset(node_id_of(i) for i in range(7, 12))


def test_rev27e_the_up_reporters_of_a_targetless_node_are_charged_for_the_truth() -> None:
    chain = StateRunner(make_params(checkers_per_node=K))
    for i in range(NODES):
        chain.add_node(i, owner=OPERATOR if i <= 6 else None)
    origin = sha256(b"rev27e targetless")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(node_id_of(i) for i in range(NODES))))
    assert uptime.checkers_of(chain.state, V, K) == [node_id_of(i) for i in range(7, 13)]
    assert uptime.targets_of(chain.state, V, K) == []  # V checks nobody this epoch
    v_node = nodes.get_node(chain.state, V)
    assert v_node is not None
    payload = UptimeAttest(V, 1, (UptimeReport(node_id_of(5), True, 10),))
    with pytest.raises(TxError) as refused:  # V has no way to attest in epoch 1
        chain.apply(
            uptime.process_uptime_attest,
            Tx(CHAIN, payload.KIND, v_node.node_key, 0, 0, payload, b""),
        )
    assert refused.value.reason is Reason.NOT_A_CHECKER

    _attest_all(chain, 1, lambda c, t: not (c in LIARS and t == V), set())
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    _next_epoch(chain, 2)
    assert chain.state.get(UP_PENDING + V).up == (H,)
    assert uptime.watched(chain.state) == {V}
    _attest_all(chain, 2, lambda c, t: True, set())  # V answers every epoch-2 checker
    _next_epoch(chain, 3)
    assert list(chain.state.items(UP_PENDING)) == []
    assert (H, V, 1) not in _contradicted(chain), "H was charged for its true up about V"
    assert not _owes(chain, H)
