"""Brief api25 1: /ws?from= replay slots were first-come. Four client groups, two replays
each, held the node's eight; each replay is closed after `replay_s` and its client
reconnects at once, so a freed slot went back to the group that had just lost it, and
no other group ever got one. The last slots are kept for groups that hold none."""

from __future__ import annotations

import pytest

from fluxchain.api.budget import REPLAY_LIMITED, ReadBudget, ReadLimits
from fluxchain.api.queries import ApiError

LIMITS = ReadLimits(replays_per_client=2, replays_per_node=8)


def test_api25_four_groups_cannot_hold_every_replay_slot() -> None:
    budget = ReadBudget(LIMITS)
    held = []
    refused = []
    for group in ("a", "b", "c", "d"):
        for _ in range(2):
            replay = budget.replay(group)
            try:
                replay.__enter__()
            except ApiError as error:
                assert error.reason == REPLAY_LIMITED
                refused.append(group)
            else:
                held.append(replay)
    # A group's second replay needs more than the reserve (2 of 8) free after it.
    assert refused == ["d"] and budget.replays == 7
    # Closed after replay_s, a holder reconnects at once: it still holds one, and the
    # slot it freed is in the reserve, so it waits; groups with none take the last two.
    held.pop(0).__exit__(None, None, None)
    with pytest.raises(ApiError):
        budget.replay("a").__enter__()
    with budget.replay("e"), budget.replay("f"):
        assert budget.replays == LIMITS.replays_per_node
        # Full, a group with none takes the oldest replay of a group holding two (rev25api
        # 1: this asserted a refusal, which let five rotating groups hold every slot).
        with budget.replay("g"), budget.replay("h"):
            assert budget.replays == LIMITS.replays_per_node
            with pytest.raises(ApiError):  # eight groups with one each: full for good
                budget.replay("i").__enter__()
    for replay in held:
        replay.__exit__(None, None, None)
    assert budget.replays == 0
    assert budget.refusals[REPLAY_LIMITED] == 3


def test_api25_a_group_with_no_replay_takes_the_last_slot() -> None:
    """Eight groups with one replay each hold the node's eight: each group its own."""
    budget = ReadBudget(LIMITS)
    held = [budget.replay(str(group)) for group in range(8)]
    for replay in held:
        replay.__enter__()
    assert budget.replays == 8
    with pytest.raises(ApiError):
        budget.replay("9").__enter__()
    for replay in held:
        replay.__exit__(None, None, None)
