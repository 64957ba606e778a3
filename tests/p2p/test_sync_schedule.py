"""The block sync schedule without sockets: which peer is asked for which heights, how
each answer is judged against the range it answers, and who is punished for what."""

from __future__ import annotations

from p2p.messages import MAX_BLOCKS_RESPONSE_BYTES
from p2p.sync import BlockRequest, Fault, Penalty, SyncSchedule

PAIR = 1_000  # bytes of one (block, commit) in these tests
HONEST, LIAR, OTHER = "aa" * 33, "bb" * 33, "cc" * 33


def schedule(next_height: int = 1, **overrides: int | float) -> SyncSchedule[int]:
    return SyncSchedule(next_height, max_pair_bytes=4 * 1024 * 1024, **overrides)  # type: ignore[arg-type]


def serve(request: BlockRequest) -> tuple[int, ...]:
    """An honest answer: every height asked for (items are the heights themselves)."""
    return tuple(range(request.start, request.start + request.count))


def test_ranges_rotate_over_peers_not_to_the_highest_claimer() -> None:
    plan = schedule(batch=50, max_per_peer=2)
    plan.update_peers([(HONEST, 300, 1), (LIAR, 10**9, 1), (OTHER, 300, 1)])
    requests = plan.next_requests(now=0.0)
    assert [(r.start, r.count) for r in requests] == [(h, 50) for h in range(1, 301, 50)]
    first_three = {r.peer_id for r in requests[:3]}
    assert first_three == {HONEST, LIAR, OTHER}  # one each before anyone gets a second
    assert all(sum(r.peer_id == p for r in requests) == 2 for p in (HONEST, LIAR, OTHER))


def test_an_empty_answer_for_a_claimed_range_is_punished_and_asked_elsewhere() -> None:
    plan = schedule(batch=50, max_per_peer=1)
    plan.update_peers([(HONEST, 120, 1), (LIAR, 200, 1)])
    requests = {r.peer_id: r for r in plan.next_requests(now=0.0)}
    penalty = plan.on_answer(requests[LIAR], (), 0, now=0.0)
    assert penalty is not None and (penalty.peer_id, penalty.fault) == (LIAR, Fault.EMPTY)
    assert penalty.points == 50
    # The honest answer to the other range is judged on its own, never "out of order".
    assert plan.on_answer(requests[HONEST], serve(requests[HONEST]), 50 * PAIR, 0.0) is None
    # The liar's range goes to the honest peer; the liar rests and lost its claim.
    again = plan.next_requests(now=0.1)
    assert [(r.peer_id, r.start) for r in again] == [(HONEST, requests[LIAR].start)]
    assert plan.target(now=0.1) == 120


def test_a_late_answer_to_an_old_request_is_judged_against_its_own_range() -> None:
    """The attack of issue 25 #3: the honest peer's batch came after a liar's failed one
    and was punished as "out of order". Each answer is held by its own range."""
    plan = schedule(batch=50, max_per_peer=2)
    plan.update_peers([(HONEST, 120, 1), (LIAR, 10**9, 1)])
    requests = plan.next_requests(now=0.0)
    liar_first = next(r for r in requests if r.peer_id == LIAR)
    honest = [r for r in requests if r.peer_id == HONEST]
    # The honest peer answers its later range first; the liar times out on the first.
    assert plan.on_answer(honest[-1], serve(honest[-1]), 50 * PAIR, now=0.5) is None
    penalty = plan.on_timeout(liar_first, now=10.0)
    assert penalty is not None and penalty.fault is Fault.TIMEOUT
    for request in honest[:-1]:
        assert plan.on_answer(request, serve(request), 50 * PAIR, now=10.0) is None
    for request in plan.next_requests(now=10.0):
        assert request.peer_id == HONEST
        assert plan.on_answer(request, serve(request), PAIR * request.count, 10.0) is None
    assert [item for _peer, item in plan.ready()] == list(range(1, 121))
    assert {peer for peer, _item in plan.ready()} == {HONEST}


def test_a_short_answer_is_a_fault_unless_the_frame_was_full() -> None:
    plan = schedule(batch=50, max_per_peer=1)
    plan.update_peers([(HONEST, 100, 1), (LIAR, 100, 1)])
    requests = {r.peer_id: r for r in plan.next_requests(now=0.0)}
    # Cut by the server's byte budget: the next pair might not have fit. Not a fault;
    # the heights it did not carry are asked for again.
    full = MAX_BLOCKS_RESPONSE_BYTES - 1024
    honest = requests[HONEST]
    assert plan.on_answer(honest, serve(honest)[:3], full, now=0.0) is None
    liar = requests[LIAR]
    penalty = plan.on_answer(liar, serve(liar)[:3], 3 * PAIR, now=0.0)
    assert penalty is not None and penalty.fault is Fault.SHORT
    again = plan.next_requests(now=0.0)
    assert (again[0].peer_id, again[0].start) == (HONEST, honest.start + 3)
    assert plan.target(now=0.0) == 100  # the liar's claim is cut to what it served…
    assert plan._peers[LIAR].usable_height(now=0.0) == liar.start + 2
    assert plan._peers[LIAR].usable_height(now=5.0) == 100  # …until its rest is over


def test_a_peer_claiming_height_1e9_cannot_stall_the_lower_ranges() -> None:
    plan = schedule(batch=50, max_per_peer=4, window=400)
    plan.update_peers([(HONEST, 120, 1), (LIAR, 10**9, 1)])
    requests = plan.next_requests(now=0.0)
    assert max(r.start + r.count for r in requests) <= 1 + 400  # never beyond the window
    for request in requests:
        if request.peer_id == LIAR:
            plan.on_answer(request, (), 0, now=0.0)
        else:
            plan.on_answer(request, serve(request), PAIR * request.count, now=0.0)
    for _ in range(5):  # what the liar failed goes to the honest peer, until done
        for request in plan.next_requests(now=0.1):
            assert request.peer_id == HONEST
            plan.on_answer(request, serve(request), PAIR * request.count, now=0.1)
    assert [item for _peer, item in plan.ready()] == list(range(1, 121))
    plan.advance(121)
    assert plan.target(now=0.2) == 120  # the liar rests: its claim does not count


def test_a_block_refused_at_import_drops_what_that_peer_holds() -> None:
    plan = schedule(batch=10, max_per_peer=2)
    plan.update_peers([(HONEST, 40, 1), (LIAR, 40, 1)])
    for request in plan.next_requests(now=0.0):
        plan.on_answer(request, serve(request), PAIR * request.count, now=0.0)
    held = plan.ready()
    assert [item for _peer, item in held] == list(range(1, 41))
    liar_heights = [item for peer, item in held if peer == LIAR]
    penalty = plan.on_import_failed(LIAR, liar_heights[0], Fault.BAD_COMMIT, "forged", 0.0)
    assert penalty.points == 100
    plan.advance(liar_heights[0])  # the blocks below it were imported
    again = plan.next_requests(now=0.0)
    assert again and {r.peer_id for r in again} == {HONEST}
    assert sorted(h for r in again for h in range(r.start, r.start + r.count)) == liar_heights


def test_a_peer_that_left_loses_nothing_but_its_requests() -> None:
    plan = schedule(batch=10, max_per_peer=1)
    plan.update_peers([(HONEST, 20, 1), (OTHER, 20, 1)])
    requests = {r.peer_id: r for r in plan.next_requests(now=0.0)}
    plan.update_peers([(HONEST, 20, 1)])
    plan.on_lost(requests[OTHER])  # p2p failed it with not_connected: no penalty
    plan.on_answer(requests[HONEST], serve(requests[HONEST]), 10 * PAIR, now=0.0)
    again = plan.next_requests(now=0.0)
    assert [(r.peer_id, r.start) for r in again] == [(HONEST, requests[OTHER].start)]


SYNCED = "dd" * 33  # a state-synced peer: no block below its base


def test_a_state_synced_peer_is_not_asked_for_blocks_below_its_base() -> None:
    """A node syncing from genesis next to a state-synced peer (base 101): every range
    below 101 goes to a peer that has it; the synced peer serves only from its base."""
    plan = schedule(batch=50, max_per_peer=4)
    plan.update_peers([(HONEST, 300, 1), (SYNCED, 300, 101)])
    requests = plan.next_requests(now=0.0)
    assert {r.peer_id for r in requests if r.start < 101} == {HONEST}
    assert all(r.start >= 101 for r in requests if r.peer_id == SYNCED)
    assert any(r.peer_id == SYNCED for r in requests)  # it still serves what it has


def test_a_pruned_answer_below_the_peers_base_is_not_a_fault() -> None:
    """The synced peer was asked before its STATUS named its base (it was state-synced
    meanwhile); it sends its STATUS ahead of the empty answer. No fault: the range is
    asked of a peer that has it, and the synced peer is not asked below its base again."""
    plan = schedule(batch=50, max_per_peer=1)
    plan.update_peers([(HONEST, 120, 1), (SYNCED, 120, 1)])
    requests = {r.peer_id: r for r in plan.next_requests(now=0.0)}
    asked = requests[SYNCED]
    plan.update_peers([(HONEST, 120, 1), (SYNCED, 120, 101)])  # its STATUS, then its answer
    assert plan.on_answer(asked, (), 0, now=0.0) is None
    assert plan.on_answer(requests[HONEST], serve(requests[HONEST]), 50 * PAIR, 0.0) is None
    again = plan.next_requests(now=0.1)
    assert (HONEST, asked.start) in [(r.peer_id, r.start) for r in again]
    assert all(r.start >= 101 for r in again if r.peer_id == SYNCED), again


def test_a_peer_that_lowers_its_base_again_after_a_pruned_answer_is_punished() -> None:
    """Attack (a pruned answer as a free pass): the liar's STATUS says base 1, so it
    is asked for blocks; just before each answer it sends a STATUS naming a base just
    above the range asked, then answers nothing, which is judged "pruned" (no fault);
    then its STATUS says base 1 again and it is asked again. A node's base never goes
    down while it stays connected (blocks below it are gone: state sync or pruning), so
    the lowering is a lie; today the liar loops forever, each of its empty answers
    costing the syncing node a round trip and never a point, while it keeps its share
    of the ranges.

    What should happen: a peer whose base goes back down after a pruned answer is
    punished (it lied in one STATUS or the other)."""
    plan = schedule(batch=50, max_per_peer=1)
    penalties: list[Penalty] = []
    named_base = 1  # the highest base the liar has named
    pruned_answers = 0
    for cycle in range(10):
        plan.update_peers([(HONEST, 10_000, 1), (LIAR, 10_000, 1)])  # "base 1" again
        now = float(cycle)
        for request in plan.next_requests(now=now):
            if request.peer_id == LIAR:
                pruned_answers += 1
                # Its STATUS, naming a base just above the range, ahead of an empty answer.
                named_base = max(named_base, request.start + request.count)
                plan.update_peers([(HONEST, 10_000, 1), (LIAR, 10_000, named_base)])
                penalty = plan.on_answer(request, (), 0, now=now)
            else:
                penalty = plan.on_answer(request, serve(request), 50 * PAIR, now=now)
            if penalty is not None:
                penalties.append(penalty)
    punished = [p for p in penalties if p.peer_id == LIAR]
    assert pruned_answers >= 3  # it lowered its base again at least twice
    assert punished, (
        f"{pruned_answers} empty answers, each after a STATUS naming a higher base and"
        f" followed by one naming base 1 again; never punished ({penalties})"
    )


def test_a_claim_whose_base_is_above_its_height_does_not_count_as_the_chain_ahead() -> None:
    """Attack (a claim that is never tested): the liar's STATUS claims height 10^9 with
    base 10^9 + 1, i.e. that it holds no block at all. STATUS accepts any base in
    [1, 2^64), so it is never asked for a block (nothing is at or above its base and at
    or below its height) and so never fails to serve its claim: before the base field a
    claim too high was asked for, failed, and was capped. Its claim stays the schedule's
    target forever: the node reports itself `syncing` (GET /status) for as long as the
    liar stays connected, without a single fault.

    What should happen: a base above the claimed height is a lie (an honest node's base
    is at most its height): the claim is not believed (and the peer punished), so the
    target is what the honest peer claims."""
    plan = schedule(batch=50, max_per_peer=1)
    plan.update_peers([(HONEST, 100, 1), (LIAR, 10**9, 10**9 + 1)])
    for request in plan.next_requests(now=0.0):
        assert request.peer_id == HONEST, request  # the liar is never asked anything
    assert plan.target(now=0.0) == 100, f"target {plan.target(now=0.0)}: the liar's claim"
