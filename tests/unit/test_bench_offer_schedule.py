"""The devnet bench's two ways of posting (issue 24, session 18): concurrent clients keep
the schedule when one node answers slowly (a tx's latency still counts from its tick);
serial ones, the default, let that node hold back every node's batches, which `submit_s`
shows."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from aiohttp import web

from bench.devnet import Follower
from bench.load_clients import Load
from tests.support.bench_nodes import NODES, offer_to_fake_nodes

SLOW_S = 0.3  # node 0's answer to each post: three ticks
RATE, SECONDS = 200, 1  # ten ticks of 20 txs


async def _offer_to(slow_node: int, **options: Any) -> Load:
    """Offer RATE x SECONDS txs to four fake nodes; `slow_node` answers each post late.
    Every answered tx is final at once."""
    follower = Follower()

    async def batch(request: web.Request) -> web.Response:
        raws = [bytes.fromhex(t) for t in (await request.json())["txs"]]
        if request.match_info["node"] == str(slow_node):
            await asyncio.sleep(SLOW_S)
        now = asyncio.get_running_loop().time()
        for raw in raws:
            follower.final[hashlib.sha256(raw).digest()] = now
        return web.json_response({"results": [{} for _ in raws]})

    return await offer_to_fake_nodes(batch, follower, NODES, RATE, SECONDS, **options)


def test_concurrent_clients_keep_the_schedule_with_a_slow_node() -> None:
    load = asyncio.run(_offer_to(slow_node=0, concurrent=True))
    assert len(load.submitted) == RATE * SECONDS and not load.refused
    # Every tick began on time (a post that waited on node 0 would be SLOW_S late).
    assert load.late_s < SLOW_S, f"a tick began {load.late_s:.2f} s late"


def test_serial_clients_by_default_wait_on_the_slow_node() -> None:
    load = asyncio.run(_offer_to(slow_node=0))
    # Ten ticks behind one slow answer each: the last began about 10 x SLOW_S - 0.9 s late.
    assert load.late_s > 3 * SLOW_S and load.submit_s > 10 * SLOW_S
