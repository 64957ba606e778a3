"""Blocks and unproven tx statuses, as the wallet (and its dashboard) reads them.

A block is verified: its header by the light client from its commit (every signature),
its txs against the header's tx root and its events against the events root; a node that
leaves a tx out, changes one, changes an event, or serves a header its commit does not
finalize is refused with a reason code naming it. A tx status other than "confirmed"
(pending, rejected, unknown) cannot be proven: it is returned as what the node claims,
never as verified.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from fluxchain.core.block import Header
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.params import COIN
from tests.light.test_lying_node import RICH, Net, build, on, refused, run
from tests.support.chain import funded_key
from wallet.client import NodeClient, NodeTransport
from wallet.errors import WalletError


def test_honest_block_verifies_header_commit_txs_and_events(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        build(net)
        height = net.chain.height - 1  # the register block: a tx and its events
        client = net.client(net.honest_url)
        block = await asyncio.to_thread(client.block, str(height))
        assert block["header"]["height"] == height and len(block["txs"]) == 1
        assert "app_registered" in [e["kind"] for e in block["events"]]
        assert "proof" not in block  # the proof did its work and is not shown
        store = client.verifier.light().store  # type: ignore[union-attr]
        assert store.at(height) is not None  # the header is now trusted
        by_hash = await asyncio.to_thread(client.block, block["header"]["hash"])
        assert by_hash == block

    run(tmp_path, body)


def test_block_lies_are_detected_and_name_the_node(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        build(net)
        net.builder.commit([net.builder.transfer(funded_key(), RICH, COIN)])
        height = net.chain.height - 2  # the register block
        path = f"/blocks/{height}"

        def drop_tx(block: dict[str, Any]) -> None:
            block["txs"].clear()
            block["proof"]["txs_raw"].clear()

        def richer_fee(block: dict[str, Any]) -> None:
            block["txs"][0]["fee"] += COIN  # the raw bytes stay: the shown tx differs

        def hide_event(block: dict[str, Any]) -> None:
            block["events"].pop()
            block["proof"]["events_raw"].pop()

        def other_state_root(block: dict[str, Any]) -> None:
            real = Header.from_fields(unpack(bytes.fromhex(block["header"]["raw"])))
            forged = replace(real, state_root=b"\x66" * 32)  # under the real commit
            block["header"]["raw"] = pack(forged.to_fields()).hex()

        def no_commit(block: dict[str, Any]) -> None:
            block["commit"] = None

        cases = [
            (drop_tx, "proof_invalid", "tx root"),
            (richer_fee, "proof_invalid", "differs from what its proof shows"),
            (hide_event, "proof_invalid", "events root"),
            (other_state_root, "header_unverified", "for another block"),
            (no_commit, "proof_invalid", "without its commit"),
        ]
        for change, reason, words in cases:
            net.lie = on(path, change)
            liar = net.client(net.liar_url)
            message = await refused(reason, partial(liar.block, str(height)), net.liar_url)
            assert words in message, (change.__name__, message)
        # Knowing an honest node too, the wallet shows the honest block.
        both = net.client(net.liar_url, net.honest_url)
        block = await asyncio.to_thread(both.block, str(height))
        assert block["header"]["height"] == height and block["commit"] is not None

    run(tmp_path, body)


def test_pending_or_unknown_status_is_the_nodes_claim_never_verified(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        register = build(net)

        def pending(answer: dict[str, Any]) -> None:
            answer.clear()
            answer.update({"id": register, "status": "pending"})

        net.lie = on(f"/txs/{register}", pending)
        liar = net.client(net.liar_url)
        claimed = await asyncio.to_thread(liar.tx_status, register)
        assert claimed.body["status"] == "pending"
        assert not claimed.verified and claimed.node == net.liar_url
        unknown = await asyncio.to_thread(liar.tx_status, "00" * 32)
        assert unknown.body["status"] == "unknown" and not unknown.verified
        # An honest node proves it confirmed: that, and only that, is verified.
        both = net.client(net.liar_url, net.honest_url)
        proven = await asyncio.to_thread(both.tx_status, register)
        assert proven.body["status"] == "confirmed"
        assert proven.verified and proven.node == net.honest_url

    run(tmp_path, body)


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


def test_an_old_block_served_as_latest_is_refused(tmp_path: Path) -> None:
    """Attack (a verified but stale "latest"): the liar keeps its answer to
    `/blocks/latest` and replays it after three more blocks. The old block verifies (a
    true block, its proof complete), so without a freshness check the wallet shows it as
    the newest block. What should happen: `latest` is checked for freshness like any
    other read (stale_header, naming the liar) once the wallet knows a newer head."""

    async def body(net: Net) -> None:
        build(net)
        client = net.client(net.liar_url)
        kept: dict[str, Any] = {}

        def replay(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if path.startswith("/blocks/latest"):
                kept.setdefault(path, body)
                return status, kept[path]
            return status, body

        net.lie = replay
        old = await asyncio.to_thread(client.block, "latest")
        for _ in range(3):
            net.builder.commit([net.builder.transfer(funded_key(), RICH, COIN)])
        honest = NodeClient(net.honest_url, 10, client.verifier)
        newest = await asyncio.to_thread(honest.block, "latest")
        assert newest["header"]["height"] == old["header"]["height"] + 3
        await refused("stale_header", lambda: client.block("latest"), net.liar_url)

    run(tmp_path, body)
