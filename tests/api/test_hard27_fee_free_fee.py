"""hard27 1: the API refuses a fee-free kind that carries a fee, `fee_not_zero`, as the
mempool and a block's check do (tests/unit/test_hard27_fee_free_carries_no_fee.py)."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.params import Tier
from fluxchain.core.tx import NodeConfirm
from fluxchain.node.service import NodeService
from tests.api.test_api import Client, run
from tests.support.chain import BENCHMARKS, Builder, node_hot_key


def test_a_fee_free_kind_with_a_fee_is_refused_fee_not_zero(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        confirm = NodeConfirm(b"\x11" * 20, BENCHMARKS[Tier.CUMULUS], "0.1.0")
        tx = b.tx(node_hot_key(0), confirm, fee=b.chain.params.min_fee)
        refused = await client.post("/txs", json={"tx": tx.raw.hex()})
        assert refused.status == 400, await refused.text()
        assert (await refused.json())["error"]["reason"] == "fee_not_zero"
        assert tx.id not in service.mempool

    run(tmp_path, body)
