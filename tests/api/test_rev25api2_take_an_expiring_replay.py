"""rev25api2 2: taking the slot of a replay whose `replay_s` has just run out raises in the
taker's request.

Attack (or plain bad luck): a replay's deadline is known to its client (`replay_s` after
its upgrade); a group holding none asks for a replay on a full node at that moment. Its
request runs in the loop turn after the victim's timeout fired (asyncio's Timeout is
"expiring": the victim's task is told to cancel, but has not run yet, so its
`on_preempt` is still set). `ReadBudget.replay` releases the victim and calls
`slot.preempt()`, whose `timeout.reschedule(...)` raises RuntimeError ("Cannot change
state of expiring Timeout").
Now: the taker's `budget.replay` raises RuntimeError (its request fails with a server
error, not a stream and not a 429), though the victim's slot was freed.
Should: the taker gets the slot (the victim closes anyway: its time is over), and no
request of the taker's raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from aiohttp import web

from fluxchain.api import routes
from fluxchain.api.budget import ReadBudget, ReadLimits
from fluxchain.api.view import Backend
from tests.support.clock import ClockLoop

TURNS = 100  # loop turns to wait for the victim's timeout to fire (a few are enough)


class StalledWs:
    """A client that stopped reading: a send waits for ever, a close returns."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed_with: bytes | None = None

    async def send_json(self, data: Any) -> None:
        self.sent.append(data)
        await asyncio.Event().wait()

    async def close(self, code: int = 1000, message: bytes = b"") -> bool:
        self.closed_with = message
        return True


class Block:
    def __init__(self, height: int) -> None:
        self.height = height

    def to_json(self) -> dict[str, int]:
        return {"height": self.height}


class Chain:
    height = 100


class FakeBackend:
    chain = Chain()

    def committed_block(self, height: int) -> Block:
        return Block(height)


class FakeRequest:
    transport = None


def test_rev25api2_taking_a_replay_whose_time_just_ran_out_does_not_raise() -> None:
    limits = ReadLimits(replays_per_client=2, replays_per_node=2)
    budget = ReadBudget(limits)
    loop = ClockLoop()

    async def run() -> None:
        ws = StalledWs()
        with contextlib.ExitStack() as held:
            victim = held.enter_context(budget.replay("alice"))
            held.enter_context(budget.replay("alice"))
            deadline = loop.time() + limits.replay_s
            replay = asyncio.create_task(
                routes._replay(
                    cast(web.Request, FakeRequest()),
                    cast(web.WebSocketResponse, ws),
                    cast(Backend, FakeBackend()),
                    1,
                    deadline,
                    victim,
                )
            )
            for _ in range(TURNS):
                await asyncio.sleep(0)
                if ws.sent:
                    break
            assert ws.sent, "the replay never sent its first block"
            loop.skip(limits.replay_s + 1)  # its time is over: the timeout fires next turn
            for _ in range(TURNS):
                await asyncio.sleep(0)
                if replay.cancelling():
                    break  # fired, and the victim's task has not run since
            assert replay.cancelling(), "the victim's timeout never fired"
            error: BaseException | None = None
            try:
                with budget.replay("bob"):  # a group holding none, on a full node
                    pass
            except RuntimeError as exc:
                error = exc
            assert await replay is None  # closed: its time was over
            assert error is None, f"the taker's request raised: {error!r}"

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
