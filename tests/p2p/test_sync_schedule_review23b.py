"""Review of issue 23's STATUS base in block sync (p2p/sync.py): a peer that lies about
its base (review23b). Fails on main as built."""

from __future__ import annotations

from p2p.sync import Penalty
from tests.p2p.test_sync_schedule import HONEST, LIAR, PAIR, schedule, serve


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
