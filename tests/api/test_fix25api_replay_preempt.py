"""rev25api 1 and 2, fixed: on a full node, a group holding no /ws replay takes the
oldest replay of the group holding the most (if more than one), which is closed 1013
with where to resume; so shutting a group out takes as many address groups as the node
has slots, for every size the config accepts (a quarter reserve is none below 4)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSCloseCode, WSMsgType

from fluxchain.api.budget import REPLAY_LIMITED, ReadBudget, ReadLimits
from fluxchain.api.queries import ApiError
from fluxchain.node.origins import client_origin
from tests.api.test_api import api, commit
from tests.api.test_api24_read_budget import ALICE, BOB, LOOPBACK_PROXY


def fill(budget: ReadBudget, groups: int, stack: contextlib.ExitStack) -> None:
    """An attacker with `groups` groups takes every replay it can, each group in turn."""
    progress = True
    while progress:
        progress = False
        for group in range(groups):
            with contextlib.suppress(ApiError):
                stack.enter_context(budget.replay(f"attacker{group}"))
                progress = True
            if budget.replays == budget.limits.replays_per_node:
                return


@pytest.mark.parametrize("slots", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("per_group", [1, 2, 3])
def test_fix25api_shutting_a_group_out_takes_a_group_per_slot(slots: int, per_group: int) -> None:
    limits = ReadLimits(replays_per_client=per_group, replays_per_node=slots)
    for groups in range(1, slots + 1):
        budget = ReadBudget(limits)
        with contextlib.ExitStack() as stack:
            fill(budget, groups, stack)
            refused = False
            try:
                with budget.replay("honest"):
                    assert budget.replays <= slots
            except ApiError as error:
                assert error.reason == REPLAY_LIMITED
                refused = True
            # Refused only while every slot is held by a group of its own.
            assert refused == (groups == slots == budget.replays), (slots, per_group, groups)
        assert budget.replays == 0, (slots, per_group, groups)


def test_fix25api_a_replay_whose_slot_is_taken_is_closed_with_where_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice's group holds the node's two replays, her /ws the oldest; Bob's group asks
    for one while it runs: Bob's is granted, and Alice's stream is closed 1013 naming the
    height to resume from, every block before it sent once."""
    budget = ReadBudget(ReadLimits(per_client=1_000, per_node=1_000, replays_per_node=2))

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            service,
            b,
        ):
            for _ in range(60):
                commit(service, b)
            read = service.committed_block
            held = contextlib.ExitStack()

            def committed_block(height: int) -> Any:
                if height == 5:  # the replay runs: Alice's second, then Bob's first
                    held.enter_context(budget.replay(client_origin(ALICE)))
                    held.enter_context(budget.replay(client_origin(BOB)))
                return read(height)

            monkeypatch.setattr(service, "committed_block", committed_block)
            with held:
                ws = await client.ws_connect("/ws?from=1", headers={"X-Forwarded-For": ALICE})
                heights = []
                while (message := await asyncio.wait_for(ws.receive(), 5)).type == WSMsgType.TEXT:
                    heights.append(message.json()["height"])
                assert message.type == WSMsgType.CLOSE
                assert message.data == WSCloseCode.TRY_AGAIN_LATER
                assert heights == list(range(1, len(heights) + 1)) and len(heights) < 60
                resume = len(heights) + 1
                assert message.extra == (
                    f"replay slot taken by a network with none; resume with from={resume}"
                )
                assert budget.replays == 2  # Alice's second and Bob's: hers freed none twice
            assert budget.replays == 0

    asyncio.run(run())
