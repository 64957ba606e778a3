"""Issue 24 (shed18): API tx admission goes through one node-wide gate. Concurrent batches
used to yield every 50 txs each, so with N in flight the node's loop (and consensus on it)
turned only every Nx50 txs; unanswered batches piled up and block production stalled.
Now one request admits at a time, the loop turns every `txs_per_turn` txs over all of
them, a full queue answers 429 `busy` before reading the body, and a request whose client
left is not admitted."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.models import MAX_BATCH
from fluxchain.api.routes import GATE, openapi_document
from fluxchain.api.server import create_app
from fluxchain.api.shedding import BUSY, AdmitLimits
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain
from tests.support.wait import wait_until_async

CLIENTS = 20
TURN = AdmitLimits().txs_per_turn


def _txs(builder: Builder, count: int) -> list[Tx]:
    keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
    return [builder.tx(keys[i % len(keys)], Transfer(b"\x01" * 20, 1)) for i in range(count)]


class _Counting:
    """The service, counting the txs handed to `submit` (each still admitted by it)."""

    def __init__(self, service: NodeService) -> None:
        self.service, self.calls = service, 0
        self._submit = service.submit

        def submit(raw: bytes, **kwargs: object) -> Tx:
            self.calls += 1
            return self._submit(raw, **kwargs)  # type: ignore[arg-type]

        service.submit = submit  # type: ignore[method-assign]


def test_concurrent_batches_let_the_loop_turn_every_few_dozen_txs_over_all(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), MAX_BATCH)
        service = NodeService(chain)
        counting = _Counting(service)

        async def scenario() -> tuple[list[int], list[int]]:
            # A queue that takes all twenty: the point here is the turns, not the bound.
            limits = AdmitLimits(max_waiting=CLIENTS, max_waiting_bytes=2**30)
            client = TestClient(TestServer(create_app(service, limits)))
            await client.start_server()
            seen: list[int] = []  # txs submitted so far, at each turn of the loop
            done = False

            async def ticker() -> None:
                while not done:
                    seen.append(counting.calls)
                    await asyncio.sleep(0)

            ticking = asyncio.get_running_loop().create_task(ticker())
            try:
                body = {"txs": [tx.raw.hex() for tx in txs]}
                posts = [client.post("/txs/batch", json=body) for _ in range(CLIENTS)]
                answers = await asyncio.gather(*posts)
                statuses = [answer.status for answer in answers]
                done = True
                await ticking
                return seen, statuses
            finally:
                done = True
                await client.close()

        seen, statuses = asyncio.run(scenario())
        assert statuses == [200] * CLIENTS
        assert counting.calls == CLIENTS * MAX_BATCH
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        # Consensus waits at most one slice of admission, whatever the number of requests
        # (before: a slice of each request in flight, 20x50 txs).
        assert max(gaps) <= TURN, f"txs admitted between two turns of the loop: {max(gaps)}"
        assert len(service.mempool) == MAX_BATCH
    finally:
        chain.close()


def test_a_full_admission_queue_answers_429_busy_before_reading_the_body(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), MAX_BATCH + 2)
        big, queued, single = txs[:MAX_BATCH], txs[MAX_BATCH], txs[MAX_BATCH + 1]
        service = NodeService(chain)

        async def scenario() -> None:
            # One batch admitting a tx a turn of the loop, one request queued behind it:
            # the queue (of one) is full while the batch is admitted.
            app = create_app(service, AdmitLimits(max_waiting=1, txs_per_turn=1))
            gate = app[GATE]
            client = TestClient(TestServer(app))
            await client.start_server()
            try:
                admitting = asyncio.ensure_future(
                    client.post("/txs/batch", json={"txs": [tx.raw.hex() for tx in big]})
                )
                await wait_until_async(lambda: len(service.mempool) > 0, poll_s=0.001)
                waiting = asyncio.ensure_future(
                    client.post("/txs/batch", json={"txs": [queued.raw.hex()]})
                )
                await wait_until_async(lambda: gate.waiting == 1, poll_s=0.001)
                # Not JSON at all: a 400 if it were read; it is refused unread.
                refused = await client.post("/txs/batch", data=b"{not json")
                assert refused.status == 429
                assert refused.headers["Retry-After"] == "1"
                assert (await refused.json())["error"]["reason"] == BUSY
                busy = await client.post("/txs", json={"tx": single.raw.hex()})
                assert busy.status == 429  # single posts queue at the same gate
                assert len(service.mempool) < MAX_BATCH, "the queue emptied before the posts"
                assert gate.refused == 2
                assert (await admitting).status == 200
                answer = await waiting
                assert answer.status == 200
                results = (await answer.json())["results"]
                assert [r["id"] for r in results] == [queued.id.hex()]
                # The queue is free again: the next post is admitted.
                again = await client.post("/txs", json={"tx": single.raw.hex()})
                assert again.status == 202
                # An operator sees the refusals in /metrics (cli19).
                metrics = await (await client.get("/metrics")).text()
                assert 'fluxchain_api_admission_refused_total{reason="busy"} 2.0' in metrics
            finally:
                await client.close()

        asyncio.run(scenario())
        assert len(service.mempool) == MAX_BATCH + 2
    finally:
        chain.close()


def test_a_queued_request_whose_client_went_away_is_not_admitted(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), MAX_BATCH + 1)
        big, late = txs[:MAX_BATCH], txs[MAX_BATCH]
        service = NodeService(chain)

        async def scenario() -> None:
            # A turn of the loop a tx: the first batch is still being admitted when the
            # second arrives, however fast this machine is.
            app = create_app(service, AdmitLimits(txs_per_turn=1))
            gate = app[GATE]
            client = TestClient(TestServer(app))
            await client.start_server()
            try:
                first = asyncio.ensure_future(
                    client.post("/txs/batch", json={"txs": [tx.raw.hex() for tx in big]})
                )
                await wait_until_async(lambda: len(service.mempool) > 0, poll_s=0.001)
                gone = asyncio.ensure_future(
                    client.post("/txs/batch", json={"txs": [late.raw.hex()]})
                )
                # Queued behind the first batch, which is still being admitted.
                await wait_until_async(lambda: gate.waiting == 1, poll_s=0.001)
                assert len(service.mempool) < MAX_BATCH
                gone.cancel()  # the client gives up: its connection closes
                answer = await first
                assert answer.status == 200
                await wait_until_async(lambda: gate.waiting == 0, timeout=5.0)
                await client.post("/txs/batch", json={"txs": []})  # the gate is free again
            finally:
                await client.close()

        asyncio.run(scenario())
        assert len(service.mempool) == MAX_BATCH
        assert late.id not in service.mempool
    finally:
        chain.close()


def test_the_openapi_document_lists_429_for_tx_posts() -> None:
    paths = openapi_document()["paths"]
    for path in ("/txs", "/txs/batch"):
        assert "busy" in paths[path]["post"]["responses"]["429"]["description"]
