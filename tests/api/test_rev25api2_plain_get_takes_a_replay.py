"""rev25api2 1: a plain HTTP GET /ws?from=1, which never becomes a stream, closes an honest
client's /ws replay.

Attack: the node is full (eight replays: Alice's group holds two, six other groups one
each). Bob, whose group holds none, sends `GET /ws?from=1` without the WebSocket upgrade
headers: one request, one token of his group's read budget. `get_ws` takes a replay
slot (`ReadBudget.replay`) before `ws.prepare` answers the upgrade, and taking it on a
full node preempts the oldest replay of the group holding the most: Alice's.
Now: the request is answered 400 (no upgrade, no stream), its slot is freed at once,
and yet Alice's oldest replay has been told to close (1013, "slot taken by a network
with none"); the slot it held serves nobody (7 of 8 held), and Alice may not even take it
back (her group holds one, and only the reserve is free). Bob holds nothing and spent
one request.
Should: a request that is not served a replay takes no slot from anyone (a replay is
preempted only for a stream that is opened).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fluxchain.api.budget import ReadBudget, ReadLimits, ReplaySlot
from fluxchain.node.origins import client_origin
from tests.api.test_api import api, commit
from tests.api.test_api24_read_budget import ALICE, BOB, LOOPBACK_PROXY

# Six groups other than Alice's and Bob's, each its own /16.
OTHERS = [f"{a}.7.1.1" for a in (11, 12, 13, 14, 15, 16)]


def test_rev25api2_a_get_that_is_refused_the_upgrade_preempts_no_replay(tmp_path: Path) -> None:
    budget = ReadBudget(ReadLimits(per_client=1_000, per_node=1_000))

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            service,
            b,
        ):
            for _ in range(10):
                commit(service, b)
            with contextlib.ExitStack() as held:
                alice: list[ReplaySlot] = [
                    held.enter_context(budget.replay(client_origin(ALICE))) for _ in range(2)
                ]
                for other in OTHERS:
                    held.enter_context(budget.replay(client_origin(other)))
                assert budget.replays == budget.limits.replays_per_node == 8
                closed: list[str] = []
                alice[0].on_preempt = lambda: closed.append("alice's oldest replay")
                # Bob: a plain GET, no Upgrade / Sec-WebSocket-Key headers.
                response = await client.get("/ws?from=1", headers={"X-Forwarded-For": BOB})
                assert response.status == 400, response.status
                assert closed == [], (
                    f"a GET answered {response.status} (no stream) closed {closed}; "
                    f"{budget.replays} of 8 slots now held"
                )
                assert budget.replays == 8

    asyncio.run(run())
