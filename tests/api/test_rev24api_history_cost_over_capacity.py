"""rev24api: with a valid small budget a history read can never be paid, and its
Retry-After promises otherwise.

Attack (none needed: an operator's config): `api_reads_per_client = 1` is accepted
(config checks only "at least 1"), so a group's bucket holds `1 * burst_s` = 10 tokens;
a history read (`/nodes/{id}/history`, `/apps/{name}/events`) costs `HISTORY_COST` = 20.

Now: every history read from off the host is refused 429 `rate_limited` forever, each
with a Retry-After (10 s) after which it is refused again; an honest explorer retrying
as told loops. Should: a read the bucket can never pay is either refused at config time
(the bounds let something through, as `_check_read_budget` says) or charged at most the
bucket's capacity, so that waiting Retry-After is enough.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.api.budget import RATE_LIMITED, ReadBudget
from fluxchain.node.home import NodeConfig
from p2p.netgroup import parse_networks
from tests.api.test_api import api

LOOPBACK_PROXY = parse_networks(["127.0.0.0/8"])
EXPLORER = "81.2.69.142"


def test_rev24api_a_history_read_retried_after_its_retry_after_is_answered(
    tmp_path: Path,
) -> None:
    limits = NodeConfig.from_toml("api_reads_per_client = 1\n").read_limits()
    now = [0.0]
    budget = ReadBudget(limits, clock=lambda: now[0])

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            _service,
            _builder,
        ):
            path = "/nodes/" + "ab" * 20 + "/history"
            headers = {"X-Forwarded-For": EXPLORER}
            answer = await client.get(path, headers=headers)
            for _ in range(3):  # retry as told, three times
                if answer.status != 429:
                    break
                assert (await answer.json())["error"]["reason"] == RATE_LIMITED
                now[0] += int(answer.headers["Retry-After"])
                answer = await client.get(path, headers=headers)
            assert answer.status != 429, (
                f"a history read refused 429 again after waiting Retry-After three times "
                f"(t={now[0]} s): it costs more than a bucket of {limits.per_client}/s "
                f"x {limits.burst_s} s holds"
            )

    asyncio.run(run())
