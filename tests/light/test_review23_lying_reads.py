"""Review 23 (issue 23 part 1): lies a verifying wallet still believes.

Each test is a lying node (the real API behind the rewriting proxy of
tests/light/test_lying_node.py) that makes the wallet accept a false answer today; each
asserts what a user would check: the lie is refused, with its reason code and the liar
named, or the honest node's verified answer wins.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from fluxchain.core.crypto import encode_address
from fluxchain.core.encoding import pack
from fluxchain.core.merkle import merkle_path
from fluxchain.core.params import COIN
from fluxchain.core.records import account_key
from fluxchain.core.tx import Tx
from fluxchain.light.store import STORE_FILE, TrustStore, default_trust_period_ms
from tests.light.test_lying_node import (
    HRP,
    PERIOD_MS,
    RICH,
    RICH_TEXT,
    Net,
    build,
    on,
    refused,
    run,
)
from tests.support.chain import app_register, app_spec, devnet_genesis, funded_key, owner_key
from tests.wallet.conftest import FAST_SCRYPT, PASSWORD
from wallet.cli import main
from wallet.client import NodeClient, NodeTransport
from wallet.hd import INSECURE_TEST_MNEMONIC

# An address the chain has never seen: its true balance is 0.
POOR = bytes([7]) * 20
POOR_TEXT = encode_address(POOR, HRP)


def test_proven_answer_for_another_address_is_refused(tmp_path: Path) -> None:
    """Asked for POOR's balance, the liar answers with RICH's proven account (a true
    answer, for another question): the wallet shows RICH's balance as POOR's."""

    async def body(net: Net) -> None:
        build(net)
        ask = NodeTransport(net.honest_url).ask
        rich_answer = await asyncio.to_thread(ask, "GET", f"/accounts/{RICH_TEXT}?prove=1")
        assert rich_answer["balance"] > 0

        def swap(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if path.startswith(f"/accounts/{POOR_TEXT}"):
                return 200, rich_answer
            return status, body

        net.lie = swap
        liar_only = net.client(net.liar_url)
        await refused("proof_invalid", lambda: liar_only.account(POOR_TEXT), net.liar_url)
        both = net.client(net.liar_url, net.honest_url)
        account = await asyncio.to_thread(both.account, POOR_TEXT)
        assert (account.address, account.balance) == (POOR_TEXT, 0)

    run(tmp_path, body)


def test_answer_replayed_from_before_a_newer_trusted_header_is_refused(tmp_path: Path) -> None:
    """The liar keeps RICH's proven answer and replays it after RICH was paid three times;
    the wallet has meanwhile verified a newer head through an honest node, but the old
    answer is younger than the trust period (60 s here, 16 hours on the testnet), so the
    balance from before the payments is shown as current."""

    async def body(net: Net) -> None:
        build(net)
        client = net.client(net.liar_url, period_ms=PERIOD_MS)
        kept: dict[str, Any] = {}

        def replay(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            kept.setdefault(path, body)
            return status, kept[path]

        net.lie = replay
        before = await asyncio.to_thread(client.account, RICH_TEXT)
        for _ in range(3):
            net.builder.commit([net.builder.transfer(funded_key(), RICH, COIN)])
        honest = NodeClient(net.honest_url, 10, client.verifier)
        now = await asyncio.to_thread(honest.account, RICH_TEXT)
        assert now.balance == before.balance + 3 * COIN  # the wallet knows the newer head
        await refused("stale_header", lambda: client.account(RICH_TEXT), net.liar_url)

    run(tmp_path, body)


def test_unproven_rejection_of_a_confirmed_tx_is_not_believed(tmp_path: Path) -> None:
    """The liar, first in --node, says a confirmed payment was rejected (the wallet then
    says "rejected by the chain" and forgets it: the user pays again). A verifying wallet
    that knows an honest node takes the unprovable word of the first node that answers."""

    async def body(net: Net) -> None:
        build(net)
        tx = net.builder.transfer(funded_key(), RICH, COIN)
        net.builder.commit([tx])

        def reject(body: dict[str, Any]) -> None:
            body.clear()
            body.update(id=tx.id.hex(), status="rejected", reason="bad_nonce", message="nonce used")

        net.lie = on("/txs/", reject)
        both = net.client(net.liar_url, net.honest_url)
        status = await asyncio.to_thread(both.tx, tx.id.hex())
        assert status["status"] == "confirmed", status
        assert status["height"] == net.chain.height

    run(tmp_path, body)


def test_event_of_another_tx_shown_with_a_tx_is_refused(tmp_path: Path) -> None:
    """The liar shows, with a plain transfer, an event of its block that concerns another
    tx (an app registered by someone else), with that event's valid Merkle path: each
    shown event is proven to be in the block, not to concern the tx."""

    async def body(net: Net) -> None:
        build(net)
        owner = owner_key(5)
        payment = net.builder.transfer(funded_key(), RICH, COIN)
        register = app_register(net.builder, owner, app_spec(owner, "db", expire=100))
        net.builder.commit([payment, register])
        assert not net.builder.rejected, net.builder.rejected
        height = net.chain.height
        events = net.chain.events(height)
        leaves = [pack(e.to_fields()) for e in events]
        other = next(i for i, e in enumerate(events) if e.to_json().get("name") == "db")

        def attach(body: dict[str, Any]) -> None:
            assert body["events"] == []  # nothing of its block concerns the payment
            body["events"] = [events[other].to_json()]
            body["proof"]["events"] = [
                {
                    "raw": leaves[other].hex(),
                    "index": other,
                    "count": len(leaves),
                    "path": [h.hex() for h in merkle_path(leaves, other)],
                }
            ]

        net.lie = on(f"/txs/{payment.id.hex()}", attach)
        liar_only = net.client(net.liar_url)
        await refused("proof_invalid", lambda: liar_only.tx(payment.id.hex()), net.liar_url)

    run(tmp_path, body)


def test_trust_period_chosen_by_a_lying_nodes_params_is_refused(tmp_path: Path) -> None:
    """`flux-wallet trust --header HASH` takes its default trust period from the node's
    unproven /params: a liar that says the unbonding period is 10^12 blocks makes a
    header 56 years old (the builder's chain starts in 1970) an anchor, and every later
    skip trusted long after its signers could have unbonded (a long-range attack)."""

    async def body(net: Net) -> None:
        build(net)
        first = net.chain.get_block(1).header.hash().hex()
        honest_period = default_trust_period_ms(net.chain.params)

        def longer(body: dict[str, Any]) -> None:
            body["unbonding_period"] = 10**12

        net.lie = on("/params", longer)
        for url, name in ((net.honest_url, "honest"), (net.liar_url, "liar")):
            wallet_dir = tmp_path / f"{name}-wallet"
            args = ["--node", url, "--wallet-dir", str(wallet_dir), "--json"]
            result = await asyncio.to_thread(
                CliRunner().invoke, main, [*args, "trust", "--header", first]
            )
            # The header is far older than the chain's real trust period: no anchor.
            assert result.exit_code != 0, (name, honest_period, result.output)
            assert not (wallet_dir / STORE_FILE).exists(), name

    run(tmp_path, body)


@asynccontextmanager
async def params_liar(
    net: Net, change: Callable[[dict[str, Any]], None]
) -> AsyncIterator[tuple[str, list[Tx]]]:
    """A proxy to the honest node for every method (the shared one forwards only GET)
    that rewrites `/params` with `change` and keeps each tx posted through it."""
    session = aiohttp.ClientSession()
    posted: list[Tx] = []

    async def proxy(request: web.Request) -> web.Response:
        data = await request.read()
        if request.method == "POST" and request.path == "/txs":
            raw = bytes.fromhex(json.loads(data)["tx"])
            posted.append(Tx.decode(raw, net.chain.params.max_tx_bytes))
        headers = {"content-type": "application/json"} if data else {}
        url = net.honest_url + request.path_qs
        async with session.request(request.method, url, data=data, headers=headers) as answer:
            status, body = answer.status, await answer.json()
        if request.path == "/params":
            change(body)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), posted
    finally:
        await server.close()
        await session.close()


async def send_through(net: Net, url: str, name: str) -> Any:
    """`flux-wallet send RICH 1 --no-wait` from a verifying wallet of dev account 4
    (anchored at the genesis; a trust period long enough for the builder's 1970 chain)."""
    wallet_dir = net.tmp / name
    TrustStore.from_genesis(devnet_genesis(), wallet_dir / STORE_FILE).save()
    env = {"FLUX_WALLET_PASSWORD": PASSWORD, "FLUX_TRUST_GENESIS": ""}
    head = ["--node", url, "--wallet-dir", str(wallet_dir), "--json"]
    head += ["--trust-period", str(100 * 365 * 86_400)]
    runner = CliRunner()
    keys = ["--mnemonic", INSECURE_TEST_MNEMONIC, "--accounts", "4", "--scrypt-n", FAST_SCRYPT]
    imported = await asyncio.to_thread(runner.invoke, main, [*head, "import", *keys], env=env)
    assert imported.exit_code == 0, imported.output
    return await asyncio.to_thread(
        runner.invoke, main, [*head, "send", RICH_TEXT, "1", "--no-wait"], env=env
    )


def test_fee_from_a_lying_nodes_params_is_not_signed(tmp_path: Path) -> None:
    """The first node in --node says the minimum fee is 10,000 FLUX (/params is never
    proven): a verifying wallet signs and sends a 1 FLUX payment with a 10,000 FLUX fee,
    which the chain accepts and pays to the block's proposer."""

    async def body(net: Net) -> None:
        build(net)
        real = net.chain.params.min_fee

        def dearer(body: dict[str, Any]) -> None:
            body["min_fee"] = 10_000 * COIN

        async with params_liar(net, dearer) as (liar_url, posted):
            await send_through(net, liar_url, "fee-wallet")
        assert [tx.fee for tx in posted if tx.fee > real] == [], posted

    run(tmp_path, body)


def test_chain_id_from_a_lying_nodes_params_is_not_signed(tmp_path: Path) -> None:
    """The first node in --node says the chain is another one (with the same address
    prefix): a wallet whose trust store names the chain it verifies signs a tx for that
    other chain, which the liar can replay there with the same keys' funds."""

    async def body(net: Net) -> None:
        build(net)

        def elsewhere(body: dict[str, Any]) -> None:
            body["chain_id"] = "other-chain"

        async with params_liar(net, elsewhere) as (liar_url, posted):
            await send_through(net, liar_url, "chain-wallet")
        assert [tx.chain_id for tx in posted] in ([], [net.chain.params.chain_id]), posted

    run(tmp_path, body)


def test_deeply_nested_json_answer_is_refused_and_the_next_node_asked(tmp_path: Path) -> None:
    """A node answers `[[[[…` 100,000 deep: json.loads raises RecursionError, which no
    handler in the wallet's transport turns into a WalletError, so the wallet dies with a
    traceback instead of naming the node and asking the next one."""

    async def body(net: Net) -> None:
        build(net)

        async def nested(request: web.Request) -> web.Response:
            return web.Response(text="[" * 100_000, content_type="application/json")

        app = web.Application()
        app.router.add_get("/{tail:.*}", nested)
        server = TestServer(app)
        await server.start_server()
        try:
            bomb = str(server.make_url("")).rstrip("/")
            both = net.client(bomb, net.honest_url)
            account = await asyncio.to_thread(both.account, RICH_TEXT)
            assert account.balance > 0
        finally:
            await server.close()

    run(tmp_path, body)


def test_unproven_refusal_of_the_request_does_not_end_the_search(tmp_path: Path) -> None:
    """The liar, first in --node, answers a balance read with a 400 ("the address is not
    valid"): the wallet takes that unprovable word as final, shows the liar's message,
    and never asks the honest node it knows (a 400 ends the search in NodeClient._each)."""

    async def body(net: Net) -> None:
        build(net)

        def refuse(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if path.startswith("/accounts/"):
                error = {"reason": "bad_field", "message": "this address is frozen"}
                return 400, {"error": error}
            return status, body

        net.lie = refuse
        both = net.client(net.liar_url, net.honest_url)
        account = await asyncio.to_thread(both.account, RICH_TEXT)
        assert account.balance == net.chain.state.get(account_key(RICH)).balance

    run(tmp_path, body)
