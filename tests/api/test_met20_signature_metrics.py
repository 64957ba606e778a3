"""The node's tx signature checks are counted in `/metrics` (issue 24, met20).

conc20 made each tx's signature verified once per node (a block check's verified txs are
admitted later without a second check), but the counters reached only the node's stop
line: an operator (and bench.devnet's `sigs_per_tx_node`) reads them here now.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.server import create_app
from fluxchain.core.tx import Transfer
from tests.node.test_conc20_verified_once import TXS, block_of_transfers, validator
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain


def test_metrics_count_block_checked_signatures_and_their_copies_admitted_unverified(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "node")
    try:
        builder = Builder(chain)
        block = block_of_transfers(builder)
        driver, service = validator(chain)
        assert driver._execute(block.encode(), block.hash()) is not None, "the block is valid"
        driver._abort_pending()  # the round aborts: its txs' frames come after the check
        for raw in block.txs:
            service.submit(raw, from_peer=True, peer="p")
        posted = builder.tx(funded_key(VALIDATORS + 1), Transfer(b"\x01" * 20, 1))

        async def scrape() -> str:
            async with TestClient(TestServer(create_app(service))) as client:
                answer = await client.post("/txs", json={"tx": posted.raw.hex()})
                assert answer.status == 202, await answer.text()
                return await (await client.get("/metrics")).text()

        metrics = asyncio.run(scrape())
    finally:
        chain.close()
    assert f'fluxchain_signatures_verified_total{{path="block"}} {float(TXS)}' in metrics
    assert 'fluxchain_signatures_verified_total{path="admission"} 1.0' in metrics  # the post
    assert f"fluxchain_admission_block_verified_taken_total {float(TXS)}" in metrics
