"""rev24api: the operator's monitoring cannot read /metrics while the node-wide read
budget is spent, which is when `fluxchain_api_reads_refused_total` matters.

Attack: ten address groups each read at their own group's rate and together spend the
node-wide bucket (as in test_rev24api_node_to_node_reads.py). docs/operations.md says a
steady rate of `fluxchain_api_reads_refused_total` "names clients asking more than the
budget": the operator learns it from Prometheus, which scrapes from a monitoring host,
not from the node's own (loopback is exempt; a monitoring host is not).

Now: the scrape is refused 429 `rate_limited` for as long as the flood lasts; the
operator's graphs show a gap, not the refusals. Should: `/metrics` is answered to the
operator's monitoring whatever other groups spend (exempt from the node-wide bucket,
or readable from a configured monitoring network).

The budget's clock is frozen so that no refill happens however slow the machine, and
the bounds are the defaults divided by 50, same ratio (10 groups fill the node).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.api.budget import ReadBudget, ReadLimits
from p2p.netgroup import parse_networks
from tests.api.test_api import api

LOOPBACK_PROXY = parse_networks(["127.0.0.0/8"])
# Ten groups (each a /16 of its own) the attacker reads from, and the operator's
# monitoring host.
FLOODERS = [f"{10 + i}.7.0.1" for i in range(10)]
MONITOR = "93.184.216.34"


def test_rev24api_the_operators_metrics_scrape_is_refused_during_the_flood_it_would_show(
    tmp_path: Path,
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
            scrape = await client.get("/metrics", headers={"X-Forwarded-For": MONITOR})
            assert scrape.status == 200, (
                f"the operator's Prometheus scrape of /metrics was refused {scrape.status}: "
                "ten other groups, each within its own budget, spent the node-wide one, "
                "and fluxchain_api_reads_refused_total, the figure that would show it, "
                "cannot be read"
            )

    asyncio.run(run())
