"""Issue 24: a batch of up to 1,000 txs (POST /txs/batch) was admitted with the event loop
held: ~50 µs of checks a tx, 50-100 ms in which no vote, frame or consensus step of the
node ran. Now the handler lets the loop turn every BATCH_TXS_PER_TURN txs; every tx is
still admitted, and the answer lists them in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.models import MAX_BATCH
from fluxchain.api.server import create_app
from fluxchain.api.shedding import AdmitLimits
from fluxchain.core.tx import Transfer
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain

BATCH_TXS_PER_TURN = AdmitLimits().txs_per_turn


def test_a_full_api_batch_lets_the_event_loop_turn_while_it_is_admitted(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        builder, to = Builder(chain), b"\x01" * 20
        keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
        txs = [builder.tx(keys[i % len(keys)], Transfer(to, 1)) for i in range(MAX_BATCH)]
        service = NodeService(chain)

        async def scenario() -> tuple[list[dict[str, str]], int]:
            client = TestClient(TestServer(create_app(service)))
            await client.start_server()
            turns_during: list[int] = []
            admitted_at_turn: list[int] = []
            turns = 0
            done = False

            async def ticker() -> None:
                # Counts the loop's turns, and how many txs were in the pool at each.
                nonlocal turns
                while not done:
                    turns += 1
                    admitted_at_turn.append(len(service.mempool))
                    await asyncio.sleep(0)

            ticking = asyncio.get_running_loop().create_task(ticker())
            try:
                body = {"txs": [tx.raw.hex() for tx in txs]}
                answer = await client.post("/txs/batch", json=body)
                results = (await answer.json())["results"]
                done = True
                await ticking
                # The loop turned while the pool filled, not only before and after.
                turns_during = [n for n in admitted_at_turn if 0 < n < len(txs)]
                return results, len(set(turns_during))
            finally:
                done = True
                await client.close()

        results, turns = asyncio.run(scenario())
        assert [r.get("id") or r for r in results] == [tx.id.hex() for tx in txs]
        assert len(service.mempool) == len(txs)
        assert turns >= len(txs) // BATCH_TXS_PER_TURN - 1
    finally:
        chain.close()
