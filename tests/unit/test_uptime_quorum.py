"""Issue 26 #1: a minority of checkers marked honest nodes DOWN and took their pay.

A ten-node chain with five checkers per target: under the old rule 3 down reports of 5
made a node DOWN, whatever the other checkers said, and a false report cost nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.events import EventKind
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.params import Tier
from fluxchain.core.records import META, NodeStatus
from fluxchain.core.uptime import checkers_of, get_ring, targets_of
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from tests.support.chain import (
    Builder,
    node_confirm,
    node_hot_key,
    node_register,
    open_chain,
    owner_key,
    uptime_attest,
)

NODES = 10
K = 5


@pytest.fixture
def b(tmp_path: Path) -> Builder:
    params = replace(devnet_params(), checkers_per_node=K)
    genesis = new_devnet_genesis(NODES, genesis_time_ms=1_000_000, params=params)
    builder = Builder(open_chain(tmp_path / "home", genesis))
    builder.node_keys.update({node_hot_key(i).public_key: node_hot_key(i) for i in range(NODES)})
    while builder.chain.height < params.epoch_length:  # the first epoch boundary builds a ring
        builder.commit()
    return builder


def _index(b: Builder) -> dict[bytes, int]:
    """node_id -> genesis index of every node."""
    state = b.chain.state
    return {
        get_node_by_key(state, node_hot_key(i).public_key).node_id: i  # type: ignore[union-attr]
        for i in range(NODES)
    }


def _report(b: Builder, victim: bytes, verdicts: list[tuple[bytes, bool]]) -> None:
    """Each (checker, up) reports on `victim` in one block."""
    index = _index(b)
    epoch = b.chain.state.get(META).epoch
    b.commit(
        [uptime_attest(b, node_hot_key(index[c]), c, epoch, {victim: up}) for c, up in verdicts]
    )


def _victim(b: Builder) -> tuple[bytes, list[bytes]]:
    state = b.chain.state
    victim = sorted(_index(b))[0]
    checkers = checkers_of(state, victim, K)
    assert len(checkers) == K
    owners = {get_node(state, c).owner for c in checkers}  # type: ignore[union-attr]
    assert len(owners) == K and get_node(state, victim).owner not in owners  # type: ignore[union-attr]
    return victim, checkers


def test_minority_of_checkers_reporting_an_honest_node_down_does_not_mark_it_down(
    b: Builder,
) -> None:
    """A 20 % minority (1 of 5 checkers) says down, and so does the old rule's quorum
    (3 of 5) when the other checkers say up: the node stays CONFIRMED."""
    victim, checkers = _victim(b)
    _report(b, victim, [(checkers[0], False)])
    assert get_node(b.chain.state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    _report(b, victim, [(c, False) for c in checkers[1:3]] + [(c, True) for c in checkers[3:]])
    assert get_node(b.chain.state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    assert not any(e.kind is EventKind.NODE_DOWN for e in b.chain.events(b.chain.height))


def test_dead_node_reported_down_by_the_honest_majority_is_down(b: Builder) -> None:
    """A node that really is dead: 4 of its 5 checkers (more than 2/3) say down; it is
    DOWN in that block, and the one checker that said up is the one penalised."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:4]] + [(checkers[4], True)])
    assert get_node(b.chain.state, victim).status is NodeStatus.DOWN  # type: ignore[union-attr]
    contradicted = _contradicted_at_epoch_end(b)
    assert contradicted == {(checkers[4], victim, True)}


def test_false_down_reporters_lose_their_payment_queue_place(b: Builder) -> None:
    """The three checkers that said down about a node that kept confirming go to the back
    of their tier's payment queue at the next epoch start (a new, later ticket); the two
    that said up move only when they are paid, as every node does."""
    victim, checkers = _victim(b)
    state = b.chain.state
    _report(b, victim, [(c, False) for c in checkers[:3]] + [(c, True) for c in checkers[3:]])
    before = {c: get_node(state, c) for c in checkers}
    contradicted = _contradicted_at_epoch_end(b)
    assert contradicted == {(c, victim, False) for c in checkers[:3]}
    after = {c: get_node(state, c) for c in checkers}
    first_ticket = max(n.queue_ticket for n in before.values())  # type: ignore[union-attr]
    unpaid_honest = []
    for c in checkers[3:]:
        old, new = before[c], after[c]
        assert old is not None and new is not None
        if new.paid_total == old.paid_total:
            assert new.queue_ticket == old.queue_ticket  # not penalised
            unpaid_honest.append(new.queue_ticket)
    for c in checkers[:3]:
        new = after[c]
        assert new is not None and new.queue_ticket > first_ticket
        assert all(new.queue_ticket > ticket for ticket in unpaid_honest)


def _contradicted_at_epoch_end(b: Builder) -> set[tuple[bytes, bytes, bool]]:
    """Commit up to and including the next epoch's first block; the REPORT_CONTRADICTED
    events of that block as (reporter, target, said_up)."""
    epoch_length = b.chain.params.epoch_length
    while b.chain.height % epoch_length != epoch_length - 1:
        b.commit()
    b.commit()
    return {
        (e.fields[0], e.fields[1], bool(e.fields[2]))
        for e in b.chain.events(b.chain.height)
        if e.kind is EventKind.REPORT_CONTRADICTED
    }


def test_one_operator_with_many_nodes_is_one_checker_per_target(b: Builder) -> None:
    """An operator registers five more nodes under one owner address: in the ring they
    sit next to targets several at a time (as the old next-k rule would have counted
    them), but each target has at most one of them among its checkers, and no target is
    checked by its own operator."""
    operator = owner_key(NODES)  # a funded dev account, no node yet
    registers = [
        node_register(b, operator, node_hot_key(100 + j), Tier.CUMULUS, "DE", "EU")
        for j in range(5)
    ]
    b.commit(registers)
    epoch_length = b.chain.params.epoch_length
    registered_epoch = b.chain.height // epoch_length
    b.commit(
        [
            node_confirm(b, node_hot_key(100 + j), tx.id[:20], Tier.CUMULUS)
            for j, tx in enumerate(registers)
        ]
    )
    # The ring of the epoch two after registration holds the new nodes: their rank keys
    # come from the mix at the end of the epoch after it (core/nodes.py).
    while b.chain.height < (registered_epoch + 2) * epoch_length:
        b.commit()
    state = b.chain.state
    ring = get_ring(state).nodes
    assert len(ring) == NODES + 5
    owner = {n: get_node(state, n).owner for n in ring}  # type: ignore[union-attr]
    crowded = 0
    for i, target in enumerate(ring):
        following = [ring[(i + d) % len(ring)] for d in range(1, K + 1)]
        crowded += sum(owner[n] == address_of(operator.public_key) for n in following) > 1
        checkers = checkers_of(state, target, K)
        assert len(checkers) == K
        owners = [owner[c] for c in checkers]
        assert len(set(owners)) == K and owner[target] not in owners
        assert all(target in targets_of(state, c, K) for c in checkers)
    assert crowded, "the old rule would have given some target two checkers of one operator"


def test_silent_checkers_keep_a_dead_node_confirmed(b: Builder) -> None:
    """Review of issue 26: a dead node whose checkers say down in every report they send
    (3 of its 5: a majority of the checkers, and all of the reports) stays CONFIRMED,
    because the other two sent nothing and silence counts as neither. Its owner needs
    only more than 1/3 of a node's checkers silent (its own nodes among them, or honest
    nodes that skip the unpaid probe work) to be paid for a node that serves nothing."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:3]])
    status = get_node(b.chain.state, victim).status  # type: ignore[union-attr]
    assert status is NodeStatus.DOWN, f"every report received said down; the node is {status.name}"


def test_checkers_that_never_attest_lose_nothing(b: Builder) -> None:
    """Review of issue 26: a false report sends its sender to the back of the payment
    queue, but sending no report at all costs nothing. Two checkers of a dead node stay
    silent for the whole epoch (shielding it, as above, or saving the probe work): at the
    next epoch start they keep their queue place, while a checker that had said up would
    have lost it. Silence is the free version of a false "up"."""
    victim, checkers = _victim(b)
    state = b.chain.state
    _report(b, victim, [(c, False) for c in checkers[:3]])
    silent = checkers[3:]
    before = {c: get_node(state, c) for c in silent}
    _contradicted_at_epoch_end(b)
    unpenalised = []
    for c in silent:
        old, new = before[c], get_node(state, c)
        assert old is not None and new is not None
        if new.paid_total == old.paid_total and new.queue_ticket == old.queue_ticket:
            unpenalised.append(c.hex())
    assert not unpenalised, f"checkers that never attested kept their queue place: {unpenalised}"


def test_honest_checkers_of_a_shielded_dead_node_are_penalised(b: Builder) -> None:
    """Review of issue 26: the same dead node, shielded by two silent checkers, keeps
    confirming (a NODE_CONFIRM is a fee-free tx its key sends, no proof of service), so at
    the next epoch start "it kept confirming" contradicts the three checkers that told the
    truth: they go to the back of the payment queue, and the silent ones do not. The rule
    punishes the honest report and not the shield."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:3]])
    contradicted = _contradicted_at_epoch_end(b)
    truthful = {(c, victim, False) for c in checkers[:3]}
    assert not contradicted & truthful, (
        f"{len(contradicted & truthful)} checkers that truthfully said down about a node no "
        "other checker contradicted lost their queue place"
    )


def _queue_order(b: Builder) -> list[bytes]:
    """The confirmed nodes (all Stratus here) in payment-queue order."""
    state = b.chain.state
    confirmed = [get_node(state, n) for n in _index(b)]
    return [
        n.node_id
        for n in sorted(confirmed, key=lambda n: n.queue_ticket)  # type: ignore[union-attr]
        if n is not None and n.status is NodeStatus.CONFIRMED
    ]


def test_a_false_down_report_from_a_node_paid_before_the_epoch_ends_costs_nothing(
    b: Builder,
) -> None:
    """Review of issue 26: a contradicted reporter goes to the back of its tier's queue at
    the next epoch start, which the docs price at half a payout on average. But the queue
    is public and deterministic: the attacker lies from the node that is paid in the
    epoch's last block. It is at the back already when the penalty sends it there, so it
    loses no place at all: a false down report is free for that node."""
    epoch_length = b.chain.params.epoch_length
    while b.chain.height % epoch_length != epoch_length - 2:
        b.commit()
    state = b.chain.state
    liar = _queue_order(b)[0]  # paid in the next block, the epoch's last
    target = targets_of(state, liar, K)[0]
    epoch = state.get(META).epoch
    paid = get_node(state, liar).paid_total  # type: ignore[union-attr]
    b.commit([uptime_attest(b, node_hot_key(_index(b)[liar]), liar, epoch, {target: False})])
    assert get_node(state, liar).paid_total > paid  # type: ignore[union-attr]
    order = _queue_order(b)
    behind_before = set(order[order.index(liar) + 1 :])
    b.commit()  # the next epoch's first block: the penalty
    assert any(
        e.kind is EventKind.REPORT_CONTRADICTED and e.fields[0] == liar
        for e in b.chain.events(b.chain.height)
    )
    order = _queue_order(b)
    overtaken_by = behind_before & set(order[: order.index(liar)])
    assert overtaken_by, "the contradicted reporter lost no queue place: the penalty cost nothing"
