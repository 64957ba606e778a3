"""fix25e: the checkers of an epoch are fixed by its ring. A node marked DOWN during the
epoch keeps its checker duty for that epoch: its UPTIME_ATTEST is admitted (pool and
block alike), its node sends it, and its reports count in the tallies, so the order the
epoch's reports come in cannot decide which of them count (rev25e). A node that is not
in the epoch's ring, or that is jailed, expired, unbonding or released, has no duty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from fluxchain.core import history, nodes, uptime
from fluxchain.core.admission import check_fee_free
from fluxchain.core.crypto import SigningKey, address_of, sha256
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.records import META, RING, UPTIME, Meta, NodeStatus, Ring
from fluxchain.core.tx import NodeUnregister, Tx, UptimeAttest, UptimeReport
from fluxchain.node.duties import attest_due
from tests.support.state import CHAIN, StateRunner, make_params, node_id_of

K = 6
NODES = 12
EPOCH = 1
# Ring positions: T at 0, its checkers 1..6. C (position 1) is one of them; the liars at
# 2..5 hold 4 of T's 6 checkers: short of the 5 that down it at once, and short of an
# epoch-end quorum too while C's "up" counts (4 down of 6 reports), not without it (4 of 5).
T, C = 0, 1
LIARS_END = 6
LIARS = frozenset(range(2, LIARS_END))
OWNER_KEY = SigningKey(sha256(b"fix25e owner"))


def _ring() -> StateRunner:
    chain = StateRunner(make_params(checkers_per_node=K))
    for i in range(NODES):
        # C's owner holds a key, so that it can unregister C
        node = chain.add_node(i, owner=address_of(OWNER_KEY.public_key) if i == C else None)
        history.name_key(chain.ctx, node.node_key, node.node_id)  # as its register tx would
    origin = sha256(b"fix25e")
    chain.state.put(META, Meta(chain.height, EPOCH, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(EPOCH, tuple(node_id_of(i) for i in range(NODES))))
    return chain


def _attest_tx(chain: StateRunner, position: int) -> Tx:
    """The attestation of the checker at `position`: a liar says down about T, every
    other verdict is up (every node is alive)."""
    node_id = node_id_of(position)
    node = nodes.get_node(chain.state, node_id)
    assert node is not None
    reports = tuple(
        UptimeReport(t, not (position in LIARS and t == node_id_of(T)), 10)
        for t in uptime.targets_of(chain.state, node_id, K)
    )
    payload = UptimeAttest(node_id, EPOCH, reports)
    return Tx(CHAIN, UptimeAttest.KIND, node.node_key, 0, 0, payload, b"")


def _down(chain: StateRunner, position: int) -> None:
    node = nodes.get_node(chain.state, node_id_of(position))
    assert node is not None
    nodes.set_status(chain.ctx, node, NodeStatus.DOWN, "down")


def test_fix25e_the_ring_is_the_one_described() -> None:
    chain = _ring()
    assert uptime.checkers_of(chain.state, node_id_of(T), K) == [
        node_id_of(i) for i in range(1, K + 1)
    ]
    assert node_id_of(T) in uptime.targets_of(chain.state, node_id_of(C), K)


def test_fix25e_a_checker_downed_mid_epoch_still_attests_and_its_up_keeps_its_target_up() -> None:
    """The liars report first; C is then marked DOWN (here by its own targets' reports,
    as an attacker holding them would). C's node still owes its attestation, the pool
    admits it, the block applies it, and its "up" about T counts: T ends the epoch
    CONFIRMED with 4 down of 6 reports, and no honest checker is contradicted."""
    chain = _ring()
    for position in sorted(LIARS):
        chain.apply(uptime.process_uptime_attest, _attest_tx(chain, position))
    _down(chain, C)
    c_node = nodes.get_node(chain.state, node_id_of(C))
    assert c_node is not None and c_node.status is NodeStatus.DOWN
    assert uptime.on_duty(chain.state, c_node)

    due = attest_due(chain.state, chain.params, c_node.node_key)
    assert due is not None and due[0].node_id == node_id_of(C) and due[1] == EPOCH
    tx = _attest_tx(chain, C)
    assert check_fee_free(chain.state, chain.params, chain.height + 1, tx) == node_id_of(C)
    chain.apply(uptime.process_uptime_attest, tx)
    tally = chain.state.get(UPTIME + node_id_of(T))
    assert node_id_of(C) in tally.up
    for position in range(LIARS_END, NODES):  # the honest rest, T last
        chain.apply(uptime.process_uptime_attest, _attest_tx(chain, position))
    chain.apply(uptime.process_uptime_attest, _attest_tx(chain, T))

    uptime._judge_ended_epoch(chain.ctx, EPOCH)
    t_node = nodes.get_node(chain.state, node_id_of(T))
    assert t_node is not None and t_node.status is NodeStatus.CONFIRMED
    assert [e.fields[0] for e in chain.events(EventKind.NODE_DOWN)] == []
    assert chain.events(EventKind.REPORT_CONTRADICTED) == []


def _jail(chain: StateRunner) -> None:
    node = nodes.get_node(chain.state, node_id_of(C))
    assert node is not None
    nodes.slash(chain.ctx, node)


def _expire(chain: StateRunner) -> None:
    node = nodes.get_node(chain.state, node_id_of(C))
    assert node is not None
    nodes.set_status(chain.ctx, node, NodeStatus.EXPIRED, "expired")


def _unregister(chain: StateRunner) -> None:
    chain.apply(nodes.process_node_unregister, chain.tx(OWNER_KEY, NodeUnregister(node_id_of(C))))


def _release(chain: StateRunner) -> None:
    _unregister(chain)
    node = nodes.get_node(chain.state, node_id_of(C))
    assert node is not None
    chain.height = node.unbond_height
    chain.new_ctx()
    nodes.process_unbonding(chain.ctx)
    assert nodes.get_node(chain.state, node_id_of(C)) is None


def _down_then_next_ring(chain: StateRunner) -> None:
    """C is marked DOWN in epoch 1 and the next epoch's ring is built without it."""
    _down(chain, C)
    next_epoch = EPOCH + 1
    uptime.start_epoch(chain.ctx, next_epoch, sha256(b"fix25e next"))
    meta: Meta = chain.state.get(META)
    chain.state.put(META, replace(meta, epoch=next_epoch))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_jail, Reason.NODE_WRONG_STATE),
        (_expire, Reason.NODE_WRONG_STATE),
        (_unregister, Reason.NODE_WRONG_STATE),
        (_release, Reason.UNKNOWN_NODE),
        (_down_then_next_ring, Reason.NODE_WRONG_STATE),
    ],
    ids=["jailed", "expired", "unbonding", "released", "down-out-of-the-ring"],
)
def test_fix25e_a_checker_off_duty_cannot_attest(
    change: Callable[[StateRunner], None], reason: Reason
) -> None:
    """Jailed, expired or unbonding during the epoch, released, or DOWN and left out of
    the current ring: the attestation is refused by the pool and the block alike, and the
    node does not try."""
    chain = _ring()
    key = nodes.get_node(chain.state, node_id_of(C)).node_key  # type: ignore[union-attr]
    change(chain)
    meta: Meta = chain.state.get(META)
    reports = (UptimeReport(node_id_of(T), True, 10),)
    payload = UptimeAttest(node_id_of(C), meta.epoch, reports)
    tx = Tx(CHAIN, UptimeAttest.KIND, key, 0, 0, payload, b"")
    assert attest_due(chain.state, chain.params, key) is None
    with pytest.raises(TxError) as pooled:
        check_fee_free(chain.state, chain.params, chain.height + 1, tx)
    assert pooled.value.reason is reason
    with pytest.raises(TxError) as applied:
        chain.apply(uptime.process_uptime_attest, tx)
    assert applied.value.reason is reason
