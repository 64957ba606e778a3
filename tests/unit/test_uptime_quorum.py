"""Issue 26 #1: a minority of checkers marked honest nodes DOWN and took their pay.

A ten-node chain with five checkers per target: under the old rule 3 down reports of 5
made a node DOWN, whatever the other checkers said, and a false report cost nothing.
Now: more than 2/3 of all checkers mark DOWN at once; at the epoch's end more than 2/3 of
the reports do, once more than half of the checkers reported; an up report a clear
outcome contradicts, and silence, cost the node its next payout (a forfeit, whatever its
queue place); a contradicted down report is named and costs nothing (a target can make
any honest probe fail). The up reporters about a node marked DOWN are charged one epoch
later, unless it answers an up quorum then (tests/economics/test_econ26_watched_down.py).
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
from fluxchain.core.tx import Tx
from fluxchain.core.uptime import checkers_of, get_ring, targets_of, watched
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


def _attest(b: Builder, checker: bytes, verdicts: dict[bytes, bool]) -> Tx:
    """`checker`'s attestation: `verdicts`, and up about each of its other targets (an
    attestation covers every target)."""
    state = b.chain.state
    full = dict.fromkeys(targets_of(state, checker, K), True) | verdicts
    index = _index(b)
    return uptime_attest(b, node_hot_key(index[checker]), checker, state.get(META).epoch, full)


def _report(b: Builder, victim: bytes, verdicts: list[tuple[bytes, bool]]) -> None:
    """Each (checker, up) reports on `victim` in one block."""
    b.commit([_attest(b, c, {victim: up}) for c, up in verdicts])


def _the_rest_attest(b: Builder, silent: set[bytes]) -> list[Tx]:
    """Attestations (all up) of every active node that has not attested this epoch,
    but those in `silent`."""
    state = b.chain.state
    epoch = state.get(META).epoch
    out = []
    for node_id in _index(b):
        node = get_node(state, node_id)
        assert node is not None
        if node_id in silent or node.last_attest_epoch == epoch + 1:
            continue
        if node.status is NodeStatus.CONFIRMED and targets_of(state, node_id, K):
            out.append(_attest(b, node_id, {}))
    return out


def _victim(b: Builder) -> tuple[bytes, list[bytes]]:
    state = b.chain.state
    victim = sorted(_index(b))[0]
    checkers = checkers_of(state, victim, K)
    assert len(checkers) == K
    owners = {get_node(state, c).owner for c in checkers}  # type: ignore[union-attr]
    assert get_node(state, victim).owner not in owners  # type: ignore[union-attr]
    return victim, checkers


def _forfeits(b: Builder, node_ids: list[bytes]) -> dict[bytes, int]:
    """From the head block on, one full turn of the (Stratus) payment queue and more: for
    each node in `node_ids`, the payouts it was passed over in that time."""
    forfeited = dict.fromkeys(node_ids, 0)
    for e in b.chain.events(b.chain.height):  # the block that judged may have passed one
        if e.kind is EventKind.PAYOUT_FORFEITED and e.fields[0] in forfeited:
            forfeited[e.fields[0]] += 1
    for _ in range(NODES + 2):
        paid = {n: get_node(b.chain.state, n).paid_total for n in node_ids}  # type: ignore[union-attr]
        b.commit(_the_rest_attest(b, set()))  # nobody silent from here on
        for e in b.chain.events(b.chain.height):
            if e.kind is EventKind.PAYOUT_FORFEITED and e.fields[0] in forfeited:
                forfeited[e.fields[0]] += 1
                # passed over: not paid in the block that skipped it
                assert get_node(b.chain.state, e.fields[0]).paid_total == paid[e.fields[0]]  # type: ignore[union-attr]
    return forfeited


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
    DOWN in that block, and the one checker that said up is the one penalised, once the
    next epoch's checkers found it dead too."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:4]] + [(checkers[4], True)])
    assert get_node(b.chain.state, victim).status is NodeStatus.DOWN  # type: ignore[union-attr]
    assert _contradicted_at_epoch_end(b) == set()
    assert _stays_down(b, victim) == {(checkers[4], victim, True)}


def test_contradicted_down_reports_are_named_and_cost_nothing(b: Builder) -> None:
    """A checker that says down about every one of its targets, each of which four others
    saw up (an up quorum): every report is named (REPORT_CONTRADICTED, `forfeit` 0) and
    nobody loses a payout. It cannot prove what its probes saw, and its targets could have
    refused them all (test_an_honest_checker_refused_by_its_targets_keeps_its_payout)."""
    liar = sorted(_index(b))[0]
    targets = targets_of(b.chain.state, liar, K)
    assert len(targets) == K
    others = sorted({c for t in targets for c in checkers_of(b.chain.state, t, K)} - {liar})
    b.commit([_attest(b, liar, dict.fromkeys(targets, False))])
    contradicted = _contradicted_at_epoch_end(b)
    assert contradicted == {(liar, t, False) for t in targets}
    assert _forfeit_flags(b, liar) == {0}
    assert _forfeits(b, [liar, *others]) == dict.fromkeys([liar, *others], 0)


def test_one_contradicted_up_report_still_costs_a_payout(b: Builder) -> None:
    """Unlike "down", a contradicted "up" costs: a node that four of its five checkers saw
    down is DOWN, and the one checker that said up forfeits its next payout although its
    other four reports were right (a target cannot make a checker see it up; a shield
    can)."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:4]] + [(checkers[4], True)])
    assert _contradicted_at_epoch_end(b) == set()
    assert _stays_down(b, victim) == {(checkers[4], victim, True)}
    assert _forfeit_flags(b, checkers[4]) == {1}
    assert _forfeits(b, checkers) == {c: int(c == checkers[4]) for c in checkers}


def _forfeit_flags(b: Builder, node_id: bytes) -> set[int]:
    """The `forfeit` fields of the head block's REPORT_CONTRADICTED events about
    `node_id`'s reports."""
    return {
        e.fields[3]
        for e in b.chain.events(b.chain.height)
        if e.kind is EventKind.REPORT_CONTRADICTED and e.fields[0] == node_id
    }


@pytest.mark.parametrize("refused", [1, 2, 3, 4, 5])
def test_an_honest_checker_refused_by_its_targets_keeps_its_payout(
    b: Builder, refused: int
) -> None:
    """red23d, rev24e: `refused` of an honest checker's five targets drop its probes and
    each keeps its up quorum (the other four checkers saw it), so it says down about them.
    Its reports are contradicted and named, and it keeps its payout, however many of its
    targets refused it, up to all of them: a target cannot make its checkers pay for
    its refusal, and neither can many targets together (one owner's nodes, or the
    targets of a large operator's node, which has fewer of them)."""
    checker = sorted(_index(b))[0]
    targets = targets_of(b.chain.state, checker, K)
    assert len(targets) == K
    refusing = targets[:refused]
    b.commit([_attest(b, checker, dict.fromkeys(refusing, False))])
    contradicted = _contradicted_at_epoch_end(b)
    assert contradicted == {(checker, t, False) for t in refusing}
    assert _forfeit_flags(b, checker) == {0}
    assert _forfeits(b, [checker, *refusing]) == dict.fromkeys([checker, *refusing], 0)


def test_a_contradicted_up_costs_a_payout_beside_free_down_reports(b: Builder) -> None:
    """A checker that says down about four of its targets (all seen up by the others:
    free) and up about a dead one that its other four checkers saw down forfeits its
    next payout: the down reports neither cost it nor cover its false "up"."""
    state = b.chain.state
    checker = sorted(_index(b))[0]
    targets = targets_of(state, checker, K)
    assert len(targets) == K
    dead, alive = targets[0], targets[1:]
    others = [c for c in checkers_of(state, dead, K) if c != checker]
    assert len(others) == K - 1
    txs = [_attest(b, checker, dict.fromkeys(alive, False) | {dead: True})]
    txs += [_attest(b, c, {dead: False}) for c in others]
    b.commit(txs)
    assert get_node(state, dead).status is NodeStatus.DOWN  # type: ignore[union-attr]
    contradicted = _contradicted_at_epoch_end(b)
    assert {(checker, t, False) for t in alive} <= contradicted
    assert _forfeit_flags(b, checker) == {0}
    assert (checker, dead, True) in _stays_down(b, dead)
    assert _forfeit_flags(b, checker) == {1}
    assert _forfeits(b, [checker]) == {checker: 1}


def test_a_split_report_judges_nobody(b: Builder) -> None:
    """3 down and 2 up: neither side is a 2/3 quorum of the reports, so the node is not
    DOWN and no reporter is judged (nothing proves which side told the truth: a node's
    own NODE_CONFIRM is no proof of service)."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:3]] + [(c, True) for c in checkers[3:]])
    assert _contradicted_at_epoch_end(b) == set()
    assert get_node(b.chain.state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]


def _stays_down(b: Builder, victim: bytes) -> set[tuple[bytes, bytes, bool]]:
    """In the epoch after `victim` was marked DOWN (it is watched: a target, no checker),
    its checkers find it dead again; `_contradicted_at_epoch_end` of that epoch."""
    state = b.chain.state
    assert victim in watched(state)
    b.commit([_attest(b, c, {victim: False}) for c in checkers_of(state, victim, K)])
    return _contradicted_at_epoch_end(b)


def _contradicted_at_epoch_end(
    b: Builder, silent: set[bytes] | frozenset[bytes] = frozenset()
) -> set[tuple[bytes, bytes, bool]]:
    """Every node but those `silent` attests (up) if it has not yet; commit up to and
    including the next epoch's first block; the REPORT_CONTRADICTED events of that block
    as (reporter, target, said_up)."""
    epoch_length = b.chain.params.epoch_length
    b.commit(_the_rest_attest(b, set(silent)))
    while b.chain.height % epoch_length != 0:
        b.commit()
    return {
        (e.fields[0], e.fields[1], bool(e.fields[2]))
        for e in b.chain.events(b.chain.height)
        if e.kind is EventKind.REPORT_CONTRADICTED
    }


def test_a_node_is_checked_by_k_nodes_its_owner_does_not_run(b: Builder) -> None:
    """An operator registers five more nodes under one owner address. Every node is one
    checker slot whoever runs it (an address costs nothing: counting operators instead
    would shrink the honest side, tests/economics/test_uptime_capture.py), but no target
    is checked by a node of its own owner, and every target has k checkers."""
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
    mine = address_of(operator.public_key)
    shared = 0
    for target in ring:
        checkers = checkers_of(state, target, K)
        assert len(checkers) == K
        assert owner[target] not in [owner[c] for c in checkers]
        assert all(target in targets_of(state, c, K) for c in checkers)
        shared += sum(owner[c] == mine for c in checkers) > 1
    assert shared, "some target should have two of the operator's nodes among its checkers"


def test_silent_checkers_do_not_keep_a_dead_node_confirmed(b: Builder) -> None:
    """Review of issue 26: a dead node whose checkers say down in every report they send
    (3 of its 5: a majority of the checkers, and all of the reports) stays CONFIRMED,
    because the other two sent nothing and silence counts as neither. Its owner needs
    only more than 1/3 of a node's checkers silent (its own nodes among them, or honest
    nodes that skip the unpaid probe work) to be paid for a node that serves nothing."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:3]])
    _contradicted_at_epoch_end(b, set(checkers[3:]))
    status = get_node(b.chain.state, victim).status  # type: ignore[union-attr]
    assert status is NodeStatus.DOWN, f"every report received said down; the node is {status.name}"
    down = [e for e in b.chain.events(b.chain.height) if e.kind is EventKind.NODE_DOWN]
    assert [e.fields[0] for e in down] == [victim]


def test_checkers_that_never_attest_forfeit_their_next_payout(b: Builder) -> None:
    """Review of issue 26: a false report cost its sender, but sending no report at all
    cost nothing. Two checkers of a dead node stay silent for the whole epoch (shielding
    it, or saving the probe work): each is named CHECKER_SILENT at the next epoch start
    and passed over at its next turn in the payment queue."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:3]])
    silent = checkers[3:]
    _contradicted_at_epoch_end(b, set(silent))
    named = {
        e.fields[0] for e in b.chain.events(b.chain.height) if e.kind is EventKind.CHECKER_SILENT
    }
    assert set(silent) <= named, "checkers that never attested were not named"
    assert not set(checkers[:3]) & named
    forfeits = _forfeits(b, checkers)
    assert all(forfeits[c] == 1 for c in silent), forfeits
    assert all(forfeits[c] == 0 for c in checkers[:3]), forfeits


def test_honest_checkers_of_a_shielded_dead_node_are_penalised(b: Builder) -> None:
    """Review of issue 26: the same dead node, shielded by two silent checkers, keeps
    confirming (a NODE_CONFIRM is a fee-free tx its key sends, no proof of service), so at
    the next epoch start "it kept confirming" contradicts the three checkers that told the
    truth: they go to the back of the payment queue, and the silent ones do not. The rule
    punishes the honest report and not the shield."""
    victim, checkers = _victim(b)
    _report(b, victim, [(c, False) for c in checkers[:3]])
    contradicted = _contradicted_at_epoch_end(b, set(checkers[3:]))
    truthful = {(c, victim, False) for c in checkers[:3]}
    assert not contradicted & truthful, (
        f"{len(contradicted & truthful)} checkers that truthfully said down about a node no "
        "other checker contradicted lost their queue place"
    )


def test_a_false_up_report_from_a_node_paid_before_the_epoch_ends_still_costs_a_payout(
    b: Builder,
) -> None:
    """Review of issue 26: the old penalty sent a contradicted reporter to the back of the
    queue at the next epoch start, which costs nothing to the node paid in the epoch's
    last block (it is at the back already). The forfeit is a whole payout wherever the
    node stands: the liar, paid in that block, says up about a node its four other
    checkers saw down, and is passed over at its next turn. (A false "down" now costs
    nothing at all: test_contradicted_down_reports_are_named_and_cost_nothing.)"""
    epoch_length = b.chain.params.epoch_length
    while b.chain.height % epoch_length != epoch_length - 2:
        b.commit()
    state = b.chain.state
    head = min(
        (get_node(state, n) for n in _index(b)),
        key=lambda n: n.queue_ticket,  # type: ignore[union-attr]
    )
    assert head is not None
    liar = head.node_id  # paid in the next block, the epoch's last
    target = targets_of(state, liar, K)[0]
    others = [c for c in checkers_of(state, target, K) if c != liar]
    reports = [_attest(b, liar, {target: True})]
    reports += [_attest(b, c, {target: False}) for c in others]
    paid = head.paid_total
    b.commit(reports + _the_rest_attest(b, {liar, *others}))
    assert get_node(state, liar).paid_total > paid  # type: ignore[union-attr]
    assert get_node(state, target).status is NodeStatus.DOWN  # type: ignore[union-attr]
    b.commit()  # the next epoch's first block: the judgement, which waits one epoch
    assert (liar, target, True) in _stays_down(b, target)
    assert _forfeit_flags(b, liar) == {1}
    assert _forfeits(b, [liar]) == {liar: 1}
