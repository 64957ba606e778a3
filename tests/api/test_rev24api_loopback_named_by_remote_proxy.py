"""rev24api: a loopback address named by a proxy on another machine is taken for this
host, and exempt from every read budget.

Attack: the operator trusts the host's reverse proxy (127.0.0.0/8) and the load
balancer or CDN in front of it (here 203.0.113.0/24), as docs/operations.md tells them
to. A client whose request reaches that remote proxy with `X-Forwarded-For: 127.0.0.1`
(the proxy forwards the header it was given, as a CDN does for its tenants' workers or
a balancer set to preserve it) arrives as `127.0.0.1, 203.0.113.7` through the host's
proxy. forwarded.py walks right to left past the trusted hops and names 127.0.0.1, and
api/budget.py exempts any client whose named address is loopback.

Now: such a client is never refused, however much it asks. But 127.0.0.1 written by or
through a machine that is not this host is not this host: at best that machine's own
loopback, at worst the client's words. Should: only a client whose every hop to the
node's socket is on this host (loopback) is exempt; one named loopback through a remote
hop is budgeted (as the remote hop's group, say) and refused 429 `rate_limited` past it.

The budget's clock is frozen so that no refill happens however slow the machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.api.budget import ReadBudget, ReadLimits
from p2p.netgroup import parse_networks
from tests.api.test_api import api

# The host's reverse proxy and the remote balancer in front of it.
TRUSTED = parse_networks(["127.0.0.0/8", "203.0.113.0/24"])
REQUESTS = 100


def test_rev24api_loopback_named_through_a_remote_proxy_is_not_exempt(tmp_path: Path) -> None:
    limits = ReadLimits(per_client=5, per_node=1_000, burst_s=1)
    budget = ReadBudget(limits, clock=lambda: 0.0)

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=TRUSTED, read_budget=budget) as (
            client,
            _service,
            _builder,
        ):
            # a client the balancer saw (an ordinary one) is budgeted: the setup works
            seen = {"X-Forwarded-For": "81.2.69.142, 203.0.113.7"}
            ordinary = [(await client.get("/status", headers=seen)).status for _ in range(10)]
            assert 429 in ordinary
            claimed = {"X-Forwarded-For": "127.0.0.1, 203.0.113.7"}
            statuses = [
                (await client.get("/status", headers=claimed)).status for _ in range(REQUESTS)
            ]
            answered = statuses.count(200)
            assert answered <= limits.per_client * limits.burst_s, (
                f"{answered} of {REQUESTS} reads from a client the remote proxy 203.0.113.7 "
                "named 127.0.0.1 were answered: taken for this host and exempt from the "
                f"budget of {limits.per_client * limits.burst_s}"
            )

    asyncio.run(run())
