"""Review of admission in slices (rev11): a block committed between two slices of one API
batch. The defence holds: every tx of the batch gets its verdict, none is refused for the
block that took its predecessors, and the rest are the next block's, in nonce order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.server import create_app
from fluxchain.api.shedding import AdmitLimits
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, open_chain

BATCH_TXS_PER_TURN = AdmitLimits().txs_per_turn


def test_a_block_committed_between_slices_of_a_batch_refuses_none_of_its_later_txs(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        builder, sender = Builder(chain), funded_key()
        txs = [builder.transfer(sender, b"\x01" * 20) for _ in range(3 * BATCH_TXS_PER_TURN)]
        service = NodeService(chain)

        async def scenario() -> list[dict[str, object]]:
            client = TestClient(TestServer(create_app(service)))
            await client.start_server()
            try:
                body = {"txs": [tx.raw.hex() for tx in txs]}
                posting = asyncio.ensure_future(client.post("/txs/batch", json=body))
                # The first slice is in the pool, the rest not yet: a block takes it now,
                # in the turn of the loop between two slices.
                while len(service.mempool) < BATCH_TXS_PER_TURN:
                    assert not posting.done(), "the batch was admitted in one turn"
                    await asyncio.sleep(0)  # one turn of the loop, as the handler's
                assert len(service.mempool) < len(txs)
                block = builder.commit(service.candidates())
                service.on_committed(block, ())  # its tx ids: the hashes of its txs
                answer = await posting
                return list((await answer.json())["results"])
            finally:
                await client.close()

        results = asyncio.run(scenario())
        assert [r.get("id") for r in results] == [tx.id.hex() for tx in txs], results
        committed = chain.height
        rest = service.candidates()
        assert [tx.nonce for tx in rest] == sorted(tx.nonce for tx in rest)
        block = builder.commit(rest)
        assert chain.height == committed + 1 and builder.rejected == []
        assert builder.chain_nonce(sender) == len(txs)  # every tx of the batch is on chain
        assert len(block.txs) + BATCH_TXS_PER_TURN <= len(txs)
    finally:
        chain.close()
