"""rev27e: a liar whose "up" waits escapes its forfeit by being marked DOWN at the same
epoch start that put its report on hold.

Attack: V (node 0) is dead and sends nothing; its checkers 1..5 say down (DOWN at once),
L (node 6, the shield of V's owner) says "up". In the same epoch L's own checkers 7..10
say down about L and 11 says up: 4 down of 5 reports, a down quorum at the epoch's end
but not at once, so epoch 2's start marks L DOWN in the block that judges V's reports.
rev26e settled that a checker the same epoch start marks DOWN still owes the forfeit of a
contradicted up (`_judged` reads the statuses the ended epoch left), and L's report about
V is not charged there: it waits in UP_PENDING for V's watch epoch.

Now: at epoch 3's start V is not cleared (it sent no attestation in epoch 1), so L's up
is charged, but `_judged` reads L as DOWN since an earlier block and names nobody: L owes
no forfeit and no REPORT_CONTRADICTED names it. Its failed shield of a real outage is
free, the one thing econ27 says costs (docs/economics.md, uptime.py docstring).
Should: L is charged as it would have been at epoch 2's start (named, forfeit owed).
Fixed (fix27e): a held reporter is judged against the statuses of the epoch start that
put it on hold (`UpPending.height`, `uptime._charge_held`).
"""

from __future__ import annotations

from fluxchain.core import nodes, uptime
from fluxchain.core.crypto import sha256
from fluxchain.core.records import META, RING, UP_PENDING, Meta, NodeStatus, Ring
from tests.economics.test_econ26_watched_down import (
    _attest_all,
    _contradicted,
    _next_epoch,
    _owes,
)
from tests.support.state import StateRunner, make_params, node_id_of

K = 6
NODES = 12
V, L, W = node_id_of(0), node_id_of(6), node_id_of(11)
V_DOWN = frozenset(node_id_of(i) for i in range(1, 6))
L_DOWN = frozenset(node_id_of(i) for i in range(7, 11))


def test_rev27e_a_waiting_up_reporter_downed_at_the_same_epoch_start_still_pays() -> None:
    chain = StateRunner(make_params(checkers_per_node=K))
    for i in range(NODES):
        chain.add_node(i)
    origin = sha256(b"rev27e")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(node_id_of(i) for i in range(NODES))))
    assert uptime.checkers_of(chain.state, V, K) == [node_id_of(i) for i in range(1, 7)]
    assert uptime.checkers_of(chain.state, L, K) == [*(node_id_of(i) for i in range(7, 12)), V]

    def says_up(checker: bytes, target: bytes) -> bool:
        if target == V:
            return checker == L  # V is dead: only its owner's shield says up
        if target == L:
            return checker not in L_DOWN
        return True

    _attest_all(chain, 1, says_up, {V})  # V is dark: it sends nothing
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    assert nodes.get_node(chain.state, L).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    _next_epoch(chain, 2)
    l_node = nodes.get_node(chain.state, L)
    assert l_node is not None and l_node.status is NodeStatus.DOWN  # downed by this block
    assert chain.state.get(UP_PENDING + V).up == (L,)  # L's "up" about V waits
    assert not _owes(chain, L)

    # Epoch 2: V is watched and still dark; every checker on duty tells the truth.
    _attest_all(chain, 2, lambda c, t: t != V, set())
    _next_epoch(chain, 3)
    v_node = nodes.get_node(chain.state, V)
    assert v_node is not None and v_node.last_attest_epoch != 2  # V sent nothing in epoch 1
    assert list(chain.state.items(UP_PENDING)) == []  # the wait is over: L was judged
    assert (L, V, 1) in _contradicted(chain), "L's failed shield of dead V was not named"
    assert _owes(chain, L), "L escaped the forfeit of its contradicted up about V"
