"""rev24api: `/health` is exempt from every read budget, so one client can ask it as
fast as it can send, unbounded, on the event loop consensus runs on.

Attack: one client group sends `GET /health` in a loop (keep-alive, pipelined). Each
answer is a turn of the node's loop (routing, middlewares, the health figures, a JSON
body), which is what the read budget exists to bound (api/budget.py: "a client that
keeps asking keeps consensus waiting").

Now: every one is answered; the exemption (api/budget.py EXEMPT) skips the client's own
group bucket as well as the node-wide one. Its stated reason, "a flood by others must
not get this node reported down", needs only the node-wide bucket skipped: the checker's
own group bucket is spent by nobody else. Should: a group asking `/health` past its own
budget is refused 429 `rate_limited` like any read, while other groups' floods still
cannot refuse it.

The budget's clock is frozen so that no refill happens however slow the machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.api.budget import ReadBudget, ReadLimits
from p2p.netgroup import parse_networks
from tests.api.test_api import api

LOOPBACK_PROXY = parse_networks(["127.0.0.0/8"])
FLOODER = "81.2.69.142"
REQUESTS = 200


def test_rev24api_one_group_asking_health_past_its_own_budget_is_never_refused(
    tmp_path: Path,
) -> None:
    limits = ReadLimits(per_client=5, per_node=1_000, burst_s=1)
    budget = ReadBudget(limits, clock=lambda: 0.0)

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            _service,
            _builder,
        ):
            headers = {"X-Forwarded-For": FLOODER}
            statuses = [
                (await client.get("/health", headers=headers)).status for _ in range(REQUESTS)
            ]
            answered = sum(status != 429 for status in statuses)
            assert answered <= limits.per_client * limits.burst_s, (
                f"{answered} of {REQUESTS} /health requests at once from one client group "
                f"were answered, {limits.per_client * limits.burst_s} its budget"
            )

    asyncio.run(run())
