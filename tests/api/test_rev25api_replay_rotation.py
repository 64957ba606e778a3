"""rev25api 1: five client groups still hold every /ws replay slot, for good.

Attack: the reserve (api25 1) refuses a group's second replay only while 2 of the 8
slots or fewer are free. Three groups take two replays each and two more groups one
each: 8 of 8, with 5 groups (docs/security.md says 7 groups hold 7 of 8). Before any
of its replays reaches `replay_s` (when the node would close it), the attacker closes
three at once (a group's two, and a group's one) and reconnects in the order the rule
lets through: first the second replay of a group holding one (3 free, more than the
reserve), then a first replay for each emptied group. The shape is the same after it
(three groups with two, two with one), so it repeats every `replay_s` / 5, and no
replay is ever older than 4/5 of `replay_s`.

Now: a group with no replay (an explorer) asking between two rotations is refused 429
`replay_limited` every time: the slots are held for good by 5 groups.
Should: an attacker with this few groups cannot keep every slot from a group that
holds none (the reserve is meant to be left for such groups).
"""

from __future__ import annotations

import contextlib

from fluxchain.api.budget import REPLAY_LIMITED, ReadBudget, ReadLimits
from fluxchain.api.queries import ApiError

LIMITS = ReadLimits(replays_per_client=2, replays_per_node=8)
ROUNDS = 50  # ten times replay_s


def honest_refused(budget: ReadBudget) -> bool:
    try:
        with budget.replay("honest"):
            return False
    except ApiError as error:
        assert error.reason == REPLAY_LIMITED
        return True


def test_rev25api_five_groups_keep_all_eight_replay_slots_from_an_honest_group() -> None:
    budget = ReadBudget(LIMITS)
    step = LIMITS.replay_s / 5
    # group -> its replays: (the context holding the slot, the time it started)
    held: dict[str, list[tuple[contextlib.ExitStack, float]]] = {}

    def take(group: str, now: float) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(budget.replay(group))  # raises if the node refuses it
        held.setdefault(group, []).append((stack, now))

    def close_all(group: str) -> None:
        for stack, _ in held.pop(group):
            stack.close()

    for group in ("a", "a", "b", "b", "c", "c", "d", "e"):
        take(group, 0.0)
    assert budget.replays == LIMITS.replays_per_node
    refused_at = []
    for round_ in range(1, ROUNDS + 1):
        now = round_ * step
        # Every replay held is younger than replay_s: the node closed none of them.
        oldest = min(start for replays in held.values() for _, start in replays)
        assert now - oldest < LIMITS.replay_s
        twos = sorted((g for g in held if len(held[g]) == 2), key=lambda g: held[g][0][1])
        ones = sorted((g for g in held if len(held[g]) == 1), key=lambda g: held[g][0][1])
        emptied, halved, doubled = twos[0], ones[0], ones[1]
        close_all(emptied)
        close_all(halved)
        take(doubled, now)  # 3 free: more than the reserve
        take(emptied, now)
        take(halved, now)
        assert len(held) == 5 and budget.replays == LIMITS.replays_per_node
        if honest_refused(budget):
            refused_at.append(now)
    print(f"honest group refused at {len(refused_at)} of {ROUNDS} rounds by 5 groups")
    assert not refused_at, (
        f"5 address groups held all {LIMITS.replays_per_node} replay slots for "
        f"{ROUNDS * step:.0f} s; a group with none was refused {len(refused_at)} times"
    )
