"""The dashboard says what was verified, in a real headless Chromium.

`flux-wallet dashboard` (wallet/dashboard.py) serves the page on 127.0.0.1 and answers its
reads through the wallet's verifying client: an account page says "verified against block
H"; against a lying node (the lying proxy of tests/light/test_lying_node.py) it shows the
verification error with its reason code and the liar's name, and never the lie; the node's
own dashboard says that nothing it shows is verified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from fluxchain.core.params import COIN
from fluxchain.core.records import account_key
from tests.dashboard.browser import screenshot, start_chromium
from tests.dashboard.test_browser import CONSOLE_FAILURES, console, wait
from tests.light.test_lying_node import RICH, RICH_TEXT, Net, build, network, on
from wallet.client import NodeClient
from wallet.dashboard import create_dashboard_app

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard-browser")]

BALANCE_NOTE = '[data-what="balance and nonce"]'
LISTS_NOTE = '[data-what="nodes and apps lists"]'


async def serve(client: NodeClient) -> TestServer:
    """`flux-wallet dashboard`'s app over `client`, on 127.0.0.1 (started; close it)."""
    server = TestServer(create_dashboard_app(client), host="127.0.0.1")
    await server.start_server()
    return server


def flux_text(units: int) -> str:
    """A balance as the page writes it (app.js `flux`)."""
    whole, frac = divmod(units, COIN)
    decimals = f"{frac:08d}".rstrip("0")
    return f"{whole:,}" + (f".{decimals}" if decimals else "") + " FLUX"


def open_page(driver: Chrome, url: str, css: str, what: str) -> dict[str, Any]:
    """Load `url` and wait for the element `css`; its class, data-* and text."""
    driver.get(url)

    def shown(d: Chrome) -> dict[str, Any]:
        found = d.find_elements(By.CSS_SELECTOR, css)
        if not found:
            return {}  # falsy: not yet
        element = found[0]
        return {
            "class": element.get_attribute("class"),
            "trust": element.get_attribute("data-trust"),
            "reason": element.get_attribute("data-reason"),
            "text": element.text,
        }

    return wait(driver, shown, what)


def in_browser(tmp: Path, body: Callable[[Net, Chrome], Any]) -> None:
    """Run `body` with the lying-node network and a browser; selenium blocks, so the
    browser is driven from a thread while the servers answer on the event loop."""

    async def main() -> None:
        async with network(tmp) as net:
            build(net)
            driver = await asyncio.to_thread(start_chromium, tmp / "chromium-profile")
            try:
                await body(net, driver)
                failures = [m for m in console(driver) if any(x in m for x in CONSOLE_FAILURES)]
                assert failures == [], failures
            finally:
                await asyncio.to_thread(driver.quit)

    asyncio.run(main())


def test_account_page_through_the_wallet_dashboard_says_verified(tmp_path: Path) -> None:
    async def body(net: Net, driver: Chrome) -> None:
        server = await serve(net.client(net.honest_url))
        try:
            url = str(server.make_url("/")) + f"#/accounts/{RICH_TEXT}"
            note = await asyncio.to_thread(
                open_page, driver, url, BALANCE_NOTE, "the balance's verification note"
            )
            assert note["trust"] == "verified", note
            assert f"verified against block {net.chain.height} " in note["text"], note
            assert net.chain.head_hash.hex()[:8] in note["text"], note
            assert net.honest_url in note["text"], note  # the node whose proof checked
            balance = net.chain.state.get(account_key(RICH)).balance
            shown = driver.find_element(By.ID, "balance").text
            assert shown == flux_text(balance)
            # The lists beside it cannot be proven: labelled so, with the node that served them.
            lists = driver.find_element(By.CSS_SELECTOR, LISTS_NOTE)
            assert lists.get_attribute("data-trust") == "unverified"
            assert f"not verified: as served by {net.honest_url}" in lists.text
            await asyncio.to_thread(screenshot, driver, "wallet-dashboard-account-verified")
        finally:
            await server.close()

    in_browser(tmp_path, body)


def test_lying_node_shows_the_verification_error_and_never_the_lie(tmp_path: Path) -> None:
    async def body(net: Net, driver: Chrome) -> None:
        balance = net.chain.state.get(account_key(RICH)).balance
        lie = balance + 1_000 * COIN

        def richer(answer: dict[str, Any]) -> None:
            answer["balance"] = lie

        net.lie = on("/accounts/", richer)
        liar_only = await serve(net.client(net.liar_url))
        try:
            url = str(liar_only.make_url("/")) + f"#/accounts/{RICH_TEXT}"
            failure = await asyncio.to_thread(
                open_page, driver, url, "#verify-error", "the verification error"
            )
            assert failure["trust"] == "failed" and failure["reason"] == "proof_invalid", failure
            assert "Not verified [proof_invalid]" in failure["text"], failure
            assert net.liar_url in failure["text"], failure  # the liar is named
            # The lie is never shown as the balance: no account panel at all, and the
            # lied amount appears only quoted in the diagnostic, as what the node said.
            assert not driver.find_elements(By.ID, "balance")
            assert flux_text(lie) not in driver.find_element(By.ID, "main").text
            assert f"node says {lie}, proof shows {balance}" in failure["text"], failure
            await asyncio.to_thread(screenshot, driver, "wallet-dashboard-lying-node")
        finally:
            await liar_only.close()
        # Knowing an honest node too, the page shows the honest, verified balance.
        both = await serve(net.client(net.liar_url, net.honest_url))
        try:
            url = str(both.make_url("/")) + f"#/accounts/{RICH_TEXT}"
            note = await asyncio.to_thread(open_page, driver, url, BALANCE_NOTE, "the note")
            assert note["trust"] == "verified" and net.honest_url in note["text"], note
            assert driver.find_element(By.ID, "balance").text == flux_text(balance)
        finally:
            await both.close()

    in_browser(tmp_path, body)


def test_nodes_own_dashboard_says_not_verified(tmp_path: Path) -> None:
    async def body(net: Net, driver: Chrome) -> None:
        url = net.honest_url + f"/#/accounts/{RICH_TEXT}"
        note = await asyncio.to_thread(open_page, driver, url, BALANCE_NOTE, "the note")
        assert note["trust"] == "node", note
        assert (
            "not verified (served by this node; run `flux-wallet dashboard` to verify)"
            in note["text"]
        ), note
        await asyncio.to_thread(screenshot, driver, "node-dashboard-not-verified")

    in_browser(tmp_path, body)
