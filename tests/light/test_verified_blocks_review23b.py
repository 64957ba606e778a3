"""Review of issue 23's verified blocks (wallet/verify.py `block`, fluxchain/light/
answers.py `verify_block`): a true block served for another question (review23b).
Fails on main as built.

The lying node is the real API behind the rewriting proxy of tests/light/test_lying_node.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.light.test_lying_node import Net, build, run
from wallet.client import NodeTransport
from wallet.errors import WalletError


def test_a_true_block_served_for_another_height_or_hash_is_refused(tmp_path: Path) -> None:
    """Attack (a verified answer to another question): asked for the block at the head
    (by height, or by hash), the liar serves block 1 with its proof: a real block, its
    header verified by the light client, its txs and events matching its roots. The
    wallet never compares the block it verified with the one it asked for, so
    `NodeClient.block` (and the dashboard's block page, labelled verified) shows block 1
    as the block asked for: the txs of the newest block are hidden, or another block's
    txs are shown under this block's hash.

    What should happen: the answer is refused (proof_invalid) naming the liar, and a
    wallet that also knows an honest node shows the block it asked for."""

    async def body(net: Net) -> None:
        build(net)
        head = net.chain.height
        assert head > 1
        head_hash = net.chain.get_block(head).hash().hex()
        ask = NodeTransport(net.honest_url).ask
        first = await asyncio.to_thread(ask, "GET", "/blocks/1?prove=1")

        def other_block(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if path.startswith((f"/blocks/{head}", f"/blocks/{head_hash}")):
                return 200, first
            return status, body

        net.lie = other_block
        for ref in (str(head), head_hash):
            liar_only = net.client(net.liar_url)
            try:
                shown = await asyncio.to_thread(liar_only.block, ref)
            except WalletError as exc:
                assert exc.reason == "proof_invalid", exc
                assert net.liar_url in exc.message, exc.message  # the liar is named
                continue
            raise AssertionError(
                f"asked for block {ref}, the wallet showed as verified the block at height"
                f" {shown['header']['height']}"
            )
        both = net.client(net.liar_url, net.honest_url)
        block = await asyncio.to_thread(both.block, str(head))
        assert block["header"]["height"] == head

    run(tmp_path, body)
