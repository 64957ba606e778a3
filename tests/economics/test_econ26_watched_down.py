"""econ26: the forfeits of the checkers who said "up" about a node marked DOWN wait for
the next epoch's outcome on it.

A falsely downed node answers in the next epoch and a dead one does not: the node is
watched there (a target of that epoch's ring, never a checker). If more than half of its
checkers report and more of them say up than down, and it attested in the epoch it was
downed, its up reporters owe nothing; anything else (more down, a tie, too few reports,
a node that sent nothing) charges them one epoch late, as before. Either way the node
sits out its cooldown (econ27: confirming it again let a real outage skip it, rev26e).
A simple majority, not the 2/3 quorum: the liar holding a third of the new checkers
would block any 2/3 verdict. The record of the waiting reporters holds at most a
target's checkers, for one epoch.

Twelve nodes, six checkers a target. In epoch 1 the ring is in node order: V (position
0) is checked by positions 1..6; the liars at 1..5 say down about it (5 of 6: DOWN at
once) and H (position 6) says up.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fluxchain.core import nodes, rewards, uptime
from fluxchain.core.crypto import sha256
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.records import META, RING, UP_PENDING, WATCHED, Meta, NodeStatus, Ring
from fluxchain.core.tx import Tx, UptimeAttest, UptimeReport
from tests.support.state import CHAIN, StateRunner, make_params, node_id_of

K = 6
NODES = 12
V, H = node_id_of(0), node_id_of(6)
LIARS = frozenset(node_id_of(i) for i in range(1, 6))

Verdict = Callable[[bytes, bytes], bool]  # (checker, target) -> says up


def _attest_all(chain: StateRunner, epoch: int, says_up: Verdict, silent: set[bytes]) -> None:
    """Every checker on duty but those `silent` reports on each of its targets, in ring
    order."""
    for node_id in uptime.get_ring(chain.state).nodes:
        node = nodes.get_node(chain.state, node_id)
        assert node is not None
        targets = uptime.targets_of(chain.state, node_id, K)
        if node_id in silent or not targets or not uptime.on_duty(chain.state, node):
            continue
        reports = tuple(UptimeReport(t, says_up(node_id, t), 10) for t in targets)
        payload = UptimeAttest(node_id, epoch, reports)
        chain.apply(
            uptime.process_uptime_attest, Tx(CHAIN, payload.KIND, node.node_key, 0, 0, payload, b"")
        )


def _next_epoch(chain: StateRunner, epoch: int) -> None:
    """The first block of `epoch`: the ended epoch is judged and the new ring built."""
    chain.end_block()
    uptime.start_epoch(chain.ctx, epoch, sha256(b"econ26 %d" % epoch))
    meta: Meta = chain.state.get(META)
    chain.state.put(META, Meta(chain.height, epoch, meta.epoch_seed, 0, 0, meta.mix, meta.mix))


def _v_falsely_downed(silent: frozenset[bytes] = frozenset()) -> StateRunner:
    """Epoch 1 as the module's docstring says (the nodes `silent` send nothing), judged:
    the chain is at epoch 2's start."""
    chain = StateRunner(make_params(checkers_per_node=K))
    for i in range(NODES):
        chain.add_node(i)
    origin = sha256(b"econ26")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(node_id_of(i) for i in range(NODES))))
    assert uptime.checkers_of(chain.state, V, K) == [node_id_of(i) for i in range(1, K + 1)]
    _attest_all(chain, 1, lambda c, t: not (c in LIARS and t == V), set(silent))
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    _next_epoch(chain, 2)
    return chain


def _contradicted(chain: StateRunner) -> set[tuple[bytes, bytes, int]]:
    return {
        (e.fields[0], e.fields[1], e.fields[3]) for e in chain.events(EventKind.REPORT_CONTRADICTED)
    }


def _owes(chain: StateRunner, node_id: bytes) -> bool:
    return chain.state.get(rewards.FORFEIT + node_id) is not None


def test_econ26_the_downed_node_is_watched_a_target_and_no_checker() -> None:
    """At epoch 2's start H is not charged: its "up" waits (one record, its reporters
    only). V is in the new ring, checked by K nodes that are not watched, each of which
    lists it among its targets; V itself checks nobody and may not attest."""
    chain = _v_falsely_downed()
    state = chain.state
    assert not _owes(chain, H)
    assert (H, V, 1) not in _contradicted(chain)
    pending = state.get(UP_PENDING + V)
    assert (pending.epoch, pending.up) == (1, (H,))
    assert [key for key, _ in state.items(UP_PENDING)] == [UP_PENDING + V]
    assert uptime.watched(state) == {V}
    assert V in uptime.get_ring(state).nodes
    checkers = uptime.checkers_of(state, V, K)
    assert len(set(checkers)) == K and V not in checkers
    assert all(V in uptime.targets_of(state, c, K) for c in checkers)
    assert all(V not in uptime.checkers_of(state, t, K) for t in uptime.get_ring(state).nodes)
    v_node = nodes.get_node(state, V)
    assert v_node is not None and not uptime.on_duty(state, v_node)
    assert uptime.targets_of(state, V, K) == []
    payload = UptimeAttest(V, 2, (UptimeReport(node_id_of(1), True, 10),))
    with pytest.raises(TxError) as refused:
        chain.apply(
            uptime.process_uptime_attest,
            Tx(CHAIN, payload.KIND, v_node.node_key, 0, 0, payload, b""),
        )
    assert refused.value.reason is Reason.NODE_WRONG_STATE


def _epoch_2(chain: StateRunner, down: int, silent: int = 0) -> None:
    """In epoch 2, `down` of V's checkers say it is down, `silent` of the others send
    nothing, the rest say up; every other verdict is up."""
    checkers = uptime.checkers_of(chain.state, V, K)
    downs = set(checkers[:down])
    _attest_all(
        chain, 2, lambda c, t: not (t == V and c in downs), set(checkers[down : down + silent])
    )
    _next_epoch(chain, 3)


@pytest.mark.parametrize("down", [0, 2])
def test_econ26_an_up_majority_in_the_next_epoch_clears_the_up_reporters(down: int) -> None:
    """V answers its epoch-2 checkers: H's "up" was true. All of them say up, or the liars
    hold 2 of the 6 and say down (4 up of 6 reports: no 2/3 quorum, a majority): H is
    never charged, and the record and the watch are gone. V sits out its cooldown (econ27):
    DOWN, out of the ring and the payment queue, confirmed by nobody."""
    chain = _v_falsely_downed()
    down_height = nodes.get_node(chain.state, V).status_height  # type: ignore[union-attr]
    _epoch_2(chain, down)
    assert (H, V, 1) not in _contradicted(chain)
    assert not _owes(chain, H)
    assert list(chain.state.items(UP_PENDING)) == []
    assert uptime.watched(chain.state) == frozenset()
    v_node = nodes.get_node(chain.state, V)
    assert v_node is not None and v_node.status is NodeStatus.DOWN
    assert v_node.status_height == down_height and v_node.queue_ticket == 0
    assert V not in uptime.get_ring(chain.state).nodes
    assert chain.all_events(EventKind.NODE_CONFIRMED) == []


def test_econ27_waiting_reporters_that_do_not_all_fit_are_all_charged_at_once() -> None:
    """Two nodes wait (V and W, each downed by liars over H's "up") and at most one may
    be watched (`max_active` is 1 here: the watched nodes are bounded by the checkers of
    the ended epoch's ring, fix27e): neither is watched and H is charged at once for
    both. A cut in key order would let ids an owner grinds choose whose wait is kept."""
    w = node_id_of(3)  # checked by 4..9: the liars 4, 5, 7, 8, 9 say down, H (6) up
    w_liars = {node_id_of(i) for i in (4, 5, 7, 8, 9)}
    chain = StateRunner(make_params(checkers_per_node=K, max_block_txs=1, epoch_length=3))
    for i in range(NODES):
        chain.add_node(i)  # more than the cap: the test puts them in the state
    assert nodes.max_active(chain.params) == 1  # room for one watched node
    origin = sha256(b"econ27")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(node_id_of(i) for i in range(NODES))))
    _attest_all(
        chain, 1, lambda c, t: not ((c in LIARS and t == V) or (c in w_liars and t == w)), set()
    )
    _next_epoch(chain, 2)
    for downed in (V, w):
        assert nodes.get_node(chain.state, downed).status is NodeStatus.DOWN  # type: ignore[union-attr]
    assert chain.state.get(WATCHED) is None and uptime.watched(chain.state) == frozenset()
    assert list(chain.state.items(UP_PENDING)) == []
    assert {(H, V, 1), (H, w, 1)} <= _contradicted(chain)
    assert _owes(chain, H)


@pytest.mark.parametrize(
    ("down", "silent"),
    [(6, 0), (3, 0), (0, 3), (4, 0)],
    ids=["dead", "tie", "half-silent", "down-majority"],
)
def test_econ26_a_node_that_stays_down_charges_its_up_reporters_one_epoch_late(
    down: int, silent: int
) -> None:
    """A dead node (its epoch-2 checkers see it down: read epoch 1's "up" as a shield
    its owner's node tried), as many down as up, no more than half of its checkers
    reporting, or more down than up: H is charged at epoch 3's start, as it would have
    been at epoch 2's, V stays DOWN, and nothing waits any longer (a node is watched
    once)."""
    chain = _v_falsely_downed()
    _epoch_2(chain, down, silent)
    assert nodes.get_node(chain.state, V).status is NodeStatus.DOWN  # type: ignore[union-attr]
    assert (H, V, 1) in _contradicted(chain)
    assert _owes(chain, H)
    assert list(chain.state.items(UP_PENDING)) == []
    assert uptime.watched(chain.state) == frozenset()
    assert V not in uptime.get_ring(chain.state).nodes


def test_econ26_a_watched_node_downed_again_is_not_watched_twice() -> None:
    """A down quorum on V while it is watched charges its epoch-2 up reporters at once
    (no second wait, so a liar cannot keep forfeits waiting), and the epoch-1 ones too."""
    chain = _v_falsely_downed()
    checkers = uptime.checkers_of(chain.state, V, K)
    up = checkers[0]  # one of them says up: more than 2/3 of the reports still say down
    _attest_all(chain, 2, lambda c, t: t != V or c == up, set())
    _next_epoch(chain, 3)
    assert {(H, V, 1), (up, V, 1)} <= _contradicted(chain)
    assert _owes(chain, H) and _owes(chain, up)
    assert list(chain.state.items(UP_PENDING)) == []
    assert chain.state.get(WATCHED) is None


def _history(order: Callable[[list[bytes]], list[bytes]]) -> list[tuple[bytes, bytes | None]]:
    """Epochs 1 and 2 (V falsely downed, then cleared), epoch 2's attestations applied in
    `order`; the state's changes, encoded."""
    chain = _v_falsely_downed()
    ring = uptime.get_ring(chain.state)
    for node_id in order(list(ring.nodes)):
        node = nodes.get_node(chain.state, node_id)
        assert node is not None
        targets = uptime.targets_of(chain.state, node_id, K)
        if not targets or not uptime.on_duty(chain.state, node):
            continue
        payload = UptimeAttest(node_id, 2, tuple(UptimeReport(t, True, 10) for t in targets))
        chain.apply(
            uptime.process_uptime_attest, Tx(CHAIN, payload.KIND, node.node_key, 0, 0, payload, b"")
        )
    chain.end_block()
    uptime.start_epoch(chain.ctx, 3, sha256(b"econ26 3"))
    return chain.state.pending_changes()


def test_econ26_the_outcome_does_not_depend_on_the_order_of_the_reports() -> None:
    """Every node computes the same state: the watch epoch's reports in ring order or
    reversed give the same records, byte for byte."""
    assert _history(lambda ids: ids) == _history(lambda ids: ids[::-1])
