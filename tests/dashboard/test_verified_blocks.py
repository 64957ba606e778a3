"""Block and tx pages of `flux-wallet dashboard`, in a real headless Chromium.

A block page says its header was verified by the light client (from its commit's
signatures) with its txs and events checked against the header's roots, naming the node;
a block a node lied about shows the verification error naming that node, not a blank page
and not the lie. A tx whose status is "pending" (which nothing on chain proves) is shown
as what the node claims, never as verified. A light-client attack the wallet sees takes
every verified page down, naming both nodes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from fluxchain.core.crypto import sha256
from tests.dashboard.browser import screenshot
from tests.dashboard.test_verified import in_browser, open_page, serve
from tests.light.test_attack_detection import forged_fork, fork_lie
from tests.light.test_lying_node import RICH_TEXT, Net, on

NOTE = "#main p.trust"


def test_block_page_is_verified_and_a_lying_block_says_so_naming_the_node(
    tmp_path: Path,
) -> None:
    async def body(net: Net, driver: Chrome) -> None:
        height = net.chain.height - 1  # the register block of build(): one tx, its events
        header_hash = net.chain.get_block(height).header.hash().hex()
        honest = await serve(net.client(net.honest_url))
        try:
            url = str(honest.make_url("/")) + f"#/blocks/{height}"
            note = await asyncio.to_thread(open_page, driver, url, NOTE, "the block's note")
            assert note["trust"] == "verified", note
            assert note["text"].startswith("✔ header (its commit's signatures), txs"), note
            assert f"verified against block {height} ({header_hash[:8]}" in note["text"], note
            assert net.honest_url in note["text"], note
            assert "Transactions (1)" in driver.find_element(By.ID, "main").text
            await asyncio.to_thread(screenshot, driver, "wallet-dashboard-block-verified")
        finally:
            await honest.close()

        def drop_tx(block: dict[str, Any]) -> None:
            block["txs"].clear()
            block["proof"]["txs_raw"].clear()

        net.lie = on(f"/blocks/{height}", drop_tx)
        liar = await serve(net.client(net.liar_url))
        try:
            url = str(liar.make_url("/")) + f"#/blocks/{height}"
            failure = await asyncio.to_thread(
                open_page, driver, url, "#verify-error", "the verification error"
            )
            assert failure["trust"] == "failed" and failure["reason"] == "proof_invalid", failure
            assert "Not verified [proof_invalid]" in failure["text"], failure
            assert net.liar_url in failure["text"] and "tx root" in failure["text"], failure
            assert "Transactions (0)" not in driver.find_element(By.ID, "main").text
            await asyncio.to_thread(screenshot, driver, "wallet-dashboard-block-lie")
        finally:
            await liar.close()

    in_browser(tmp_path, body)


def test_pending_tx_page_shows_the_nodes_claim_as_unverified(tmp_path: Path) -> None:
    async def body(net: Net, driver: Chrome) -> None:
        register = sha256(net.chain.get_block(net.chain.height - 1).txs[0]).hex()

        def pending(answer: dict[str, Any]) -> None:
            answer.clear()
            answer.update({"id": register, "status": "pending"})

        net.lie = on(f"/txs/{register}", pending)
        server = await serve(net.client(net.liar_url))
        try:
            url = str(server.make_url("/")) + f"#/txs/{register}"
            note = await asyncio.to_thread(open_page, driver, url, NOTE, "the tx's note")
            assert note["trust"] == "unverified", note
            assert "what the node claims" in note["text"], note
            assert f"not verified: as served by {net.liar_url}" in note["text"], note
            assert "✔" not in note["text"], note
        finally:
            await server.close()

    in_browser(tmp_path, body)


def test_a_light_client_attack_takes_every_verified_page_down_naming_both_nodes(
    tmp_path: Path,
) -> None:
    """The wallet knows an honest node and one serving a fork of the head signed by every
    validator key: the account page shows `light_client_attack` with both nodes, not the
    liar's fortune, and so does every verified page after it (a block page too)."""

    async def body(net: Net, driver: Chrome) -> None:
        net.lie = fork_lie(forged_fork(net))
        server = await serve(net.client(net.honest_url, net.liar_url))
        try:
            base = str(server.make_url("/"))
            for page in (f"#/accounts/{RICH_TEXT}", f"#/blocks/{net.chain.height - 1}"):
                # A fresh load each time: a hash change alone keeps the last page's box.
                await asyncio.to_thread(driver.get, "about:blank")
                failure = await asyncio.to_thread(
                    open_page, driver, base + page, "#verify-error", "the attack"
                )
                assert failure["reason"] == "light_client_attack", failure
                assert net.honest_url in failure["text"], failure
                assert net.liar_url in failure["text"], failure
                assert "anchor again" in failure["text"], failure
            await asyncio.to_thread(screenshot, driver, "wallet-dashboard-light-client-attack")
        finally:
            await server.close()

    in_browser(tmp_path, body)
