"""Review red23b of the API's admission gate (api/shedding.py): whose requests a full
queue refuses.

The node tells its API clients apart by address group (`origins.client_origin`, through
trusted proxies: api/forwarded.py) so that "a client flooding pushes out its own, not
another client's" held txs. The gate that every tx post goes through has no such rule:
its queue (`max_waiting` requests, `max_waiting_bytes` of bodies) is one for all, and
once full every newcomer is refused 429 `busy`. So one client that keeps 4 MiB of batches
queued has every other wallet refused `busy` at each retry, while its own requests are
the ones admitted: 4 MiB is ~14 batches of 1,000 transfers from unfunded keys (signed for
free, each held: 112 us of CPU to admit, measured at load 6), ~1.6 s of admission, so
~2.6 MiB/s of posts keep the queue full; less with txs dearer to admit.

Shown on a queue of two: one client's batch admitting and two of its requests waiting,
a wallet of another address group posting one tx is refused `busy`. The bound on the
queue can stay; the request to turn away is one of the client holding the most of it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.models import MAX_BATCH
from fluxchain.api.routes import GATE
from fluxchain.api.server import create_app
from fluxchain.api.shedding import AdmitLimits
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.service import NodeService
from p2p.netgroup import parse_networks
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain
from tests.support.wait import wait_until_async

FLOODER = {"X-Forwarded-For": "81.2.69.142"}  # the proxy on this host names its clients
WALLET = {"X-Forwarded-For": "5.39.0.1"}  # another client, another address group


def _txs(builder: Builder, count: int) -> list[Tx]:
    keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
    return [builder.tx(keys[i % len(keys)], Transfer(b"\x01" * 20, 1)) for i in range(count)]


def test_red23b_one_client_holding_the_whole_queue_does_not_shut_out_another(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), MAX_BATCH + 3)
        batch, queued, wallet_tx = txs[:MAX_BATCH], txs[MAX_BATCH : MAX_BATCH + 2], txs[-1]
        service = NodeService(chain)

        async def scenario() -> None:
            app = create_app(
                service,
                AdmitLimits(max_waiting=2, txs_per_turn=1),
                trusted_proxies=parse_networks(["127.0.0.0/8"]),
            )
            gate = app[GATE]
            client = TestClient(TestServer(app))
            await client.start_server()
            try:
                admitting = asyncio.ensure_future(
                    client.post(
                        "/txs/batch", json={"txs": [t.raw.hex() for t in batch]}, headers=FLOODER
                    )
                )
                await wait_until_async(lambda: len(service.mempool) > 0, poll_s=0.001)
                waiting = [
                    asyncio.ensure_future(
                        client.post("/txs/batch", json={"txs": [t.raw.hex()]}, headers=FLOODER)
                    )
                    for t in queued
                ]
                await wait_until_async(lambda: gate.waiting == 2, poll_s=0.001)
                answer = await client.post("/txs", json={"tx": wallet_tx.raw.hex()}, headers=WALLET)
                body = await answer.json()
                # The flooder's own requests are answered either way (admitted or busy).
                await admitting
                await asyncio.gather(*waiting)
                assert answer.status != 429, (
                    f"a wallet with nothing queued was refused {body}: one client "
                    f"({FLOODER['X-Forwarded-For']}) held every place in the admission queue"
                )
            finally:
                await client.close()

        asyncio.run(scenario())
    finally:
        chain.close()
