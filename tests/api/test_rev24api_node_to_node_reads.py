"""rev24api: the reads other nodes and gateways make of a node are refused once anyone
has spent the node-wide read budget.

Attack: ten address groups (ten cheap hosts in ten /16s) each read at their own group's
rate; together they spend the node-wide bucket (api_reads_per_node), which every client
off the node's host draws from first-come. From then on every other client is refused
429 `rate_limited`, including the machines of the network that read a node to run it:
a gateway reads `GET /agent` of each hosting node every pass and drops a node's
workloads from its routing table once its report is 5 s old (gateway/service.py,
REPORT_TTL_S), and a node showing an app fetches `GET /agent/apps/{name}` of each host
(node/app_reports.py). So a flood the attacker can sustain takes every app a node hosts
off every gateway, and its instances off every other node's app view, for as long as
the flood lasts.

Now: both are refused 429 like any read (only `/health` of the node-to-node reads is
exempt, api/budget.py EXEMPT). Should: a node-to-node read the network depends on is
not starved by other groups' reads (exempt as /health is, or a share of the node-wide
budget other groups cannot spend).

The budget's clock is frozen so that no refill happens however slow the machine, and
the bounds are the defaults divided by 50, same ratio (10 groups fill the node).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.api.budget import ReadBudget, ReadLimits
from p2p.netgroup import parse_networks
from tests.api.test_api import api

LOOPBACK_PROXY = parse_networks(["127.0.0.0/8"])
# Ten groups (each a /16 of its own) the attacker reads from, and a gateway's.
FLOODERS = [f"{10 + i}.7.0.1" for i in range(10)]
GATEWAY = "93.184.216.34"


@pytest.mark.parametrize("path", ["/agent", "/agent/apps/web"])
def test_rev24api_gateway_and_node_reads_are_refused_once_others_spend_the_node_budget(
    tmp_path: Path, path: str
) -> None:
    limits = ReadLimits(per_client=1, per_node=10, burst_s=1)  # as 50 and 500
    budget = ReadBudget(limits, clock=lambda: 0.0)

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            _service,
            _builder,
        ):
            # each flooding group stays within its own group's budget
            for host in FLOODERS:
                for _ in range(limits.per_client * limits.burst_s):
                    answer = await client.get("/status", headers={"X-Forwarded-For": host})
                    assert answer.status == 200, f"{host} was refused within its own budget"
            read = await client.get(path, headers={"X-Forwarded-For": GATEWAY})
            assert read.status != 429, (
                f"GET {path}, the read a gateway (or another node) makes of a hosting node "
                f"to route (show) its apps, was refused {read.status} "
                f"{(await read.json())['error']['reason']}: ten other groups, each within "
                "its own budget, spent the node-wide one"
            )

    asyncio.run(run())
