"""rev24api: the agent's routes are exempt from the read budget by path, not by the
agent: any client off the host may ask them, with no token or a wrong one, as fast as it
can send.

Attack: one client group sends `POST /agent/report` (or `GET /agent/control`) with a
made-up bearer token in a loop. Each is a turn of the node's loop (routing, middlewares,
a token comparison, a 401 JSON body), unbudgeted.

Now: every one is answered 401; none is refused 429 (api/budget.py EXEMPT lists both
routes for everyone). The exemption's reason is "this node's agent", and the agent runs
on the node's host (docs/agent.md: "One agent serves one node, on the same host"), where
loopback is exempt already; so the route exemption serves only clients that are not the
agent. Should: a client off the host without this node's agent token spends its group's
read budget on these routes like any read, and is refused 429 `rate_limited` past it.

The budget's clock is frozen so that no refill happens however slow the machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.api.budget import ReadBudget, ReadLimits
from p2p.netgroup import parse_networks
from tests.api.test_api import api

LOOPBACK_PROXY = parse_networks(["127.0.0.0/8"])
STRANGER = "81.2.69.142"
REQUESTS = 100


@pytest.mark.parametrize(("method", "path"), [("POST", "/agent/report"), ("GET", "/agent/control")])
def test_rev24api_a_stranger_with_a_wrong_agent_token_is_never_refused_429(
    tmp_path: Path, method: str, path: str
) -> None:
    limits = ReadLimits(per_client=5, per_node=1_000, burst_s=1)
    budget = ReadBudget(limits, clock=lambda: 0.0)

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            _service,
            _builder,
        ):
            headers = {"X-Forwarded-For": STRANGER, "Authorization": "Bearer not-the-token"}
            statuses = []
            for _ in range(REQUESTS):
                answer = await client.request(method, path, headers=headers, json={})
                statuses.append(answer.status)
            assert set(statuses) <= {401, 429}, f"unexpected answers {set(statuses)}"
            answered = statuses.count(401)
            assert answered <= limits.per_client * limits.burst_s, (
                f"{answered} of {REQUESTS} {method} {path} with a wrong agent token from one "
                f"client group off the host were answered, "
                f"{limits.per_client * limits.burst_s} its budget"
            )

    asyncio.run(run())
