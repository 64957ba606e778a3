"""A wallet against a lying node: the real node API behind a proxy on 127.0.0.1 that
rewrites answers. Every lie is detected with a stable reason code naming the liar, and
a wallet that also knows an honest node answers with the honest node's (verified) view.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fluxchain.api.server import create_app
from fluxchain.core.block import Header
from fluxchain.core.crypto import address_of, encode_address
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.params import COIN
from fluxchain.core.records import Account, account_key
from fluxchain.core.statetree import StateTree
from fluxchain.core.votes import sign_commit
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.light.store import TrustStore
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import (
    VALIDATORS,
    Builder,
    app_register,
    app_spec,
    devnet_genesis,
    funded_key,
    node_hot_key,
    open_chain,
    owner_key,
)
from wallet.client import NodeClient
from wallet.errors import WalletError
from wallet.verify import Verifier

HRP = "tflux"
PERIOD_MS = 60_000  # sixty blocks of the builder's chain
SHORT_PERIOD_MS = 5_000  # five blocks: for a test that outlives it
Lie = Callable[[str, int, dict[str, Any]], tuple[int, dict[str, Any]]]


def honest(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return status, body


@dataclass
class Net:
    """A chain served by the real API (`honest`) and by a proxy that applies `lie`."""

    tmp: Path
    chain: Chain
    builder: Builder
    honest_url: str
    liar_url: str
    lie: Lie = honest
    wallets: int = 0
    seen: list[str] = field(default_factory=list)

    def client(self, *urls: str, period_ms: int = PERIOD_MS) -> NodeClient:
        """A verifying client with a fresh trust store anchored at the genesis."""
        self.wallets += 1
        wallet_dir = self.tmp / f"wallet{self.wallets}"
        TrustStore.from_genesis(devnet_genesis(), wallet_dir / "trusted_headers.json").save()
        verifier = Verifier(wallet_dir, period_ms, clock=lambda: self.builder.time_ms + 500)
        return NodeClient(",".join(urls), timeout_s=10, verifier=verifier)


@asynccontextmanager
async def network(tmp: Path) -> AsyncIterator[Net]:
    chain = open_chain(tmp / "home")
    service = NodeService(chain)
    node = TestServer(create_app(service))
    await node.start_server()
    net = Net(tmp, chain, Builder(chain), str(node.make_url("")).rstrip("/"), "")
    session = aiohttp.ClientSession()

    async def proxy(request: web.Request) -> web.Response:
        net.seen.append(request.path_qs)
        async with session.get(net.honest_url + request.path_qs) as answer:
            status, body = net.lie(request.path_qs, answer.status, await answer.json())
        return web.json_response(body, status=status)

    liar_app = web.Application()
    liar_app.router.add_get("/{tail:.*}", proxy)
    liar = TestServer(liar_app)
    await liar.start_server()
    net.liar_url = str(liar.make_url("")).rstrip("/")
    try:
        yield net
    finally:
        await liar.close()
        await session.close()
        await node.close()
        chain.close()


def run(tmp: Path, body: Callable[[Net], Awaitable[None]]) -> None:
    async def main() -> None:
        async with network(tmp) as net:
            await body(net)

    asyncio.run(main())


RICH = address_of(owner_key(6).public_key)
RICH_TEXT = encode_address(RICH, HRP)


def build(net: Net) -> str:
    """A few blocks: a transfer to RICH, and an app placed on the genesis nodes; the id of
    the app's register tx (its block's events name the app)."""
    b = net.builder
    b.commit([b.transfer(funded_key(), RICH, 2 * COIN)])
    owner = owner_key(5)
    b.commit([b.transfer(funded_key(), address_of(owner.public_key), 100 * COIN)])
    register = app_register(b, owner, app_spec(owner, "web", expire=100))
    b.commit([register])
    assert not b.rejected, b.rejected
    b.commit()
    return register.id.hex()


async def refused(reason: str, call: Callable[[], object], liar: str) -> str:
    with pytest.raises(WalletError) as caught:
        await asyncio.to_thread(call)
    assert caught.value.reason == reason, caught.value
    assert liar in caught.value.message, caught.value.message  # the liar is named
    return caught.value.message


def on(prefix: str, change: Callable[[dict[str, Any]], None]) -> Lie:
    """A lie that rewrites the answers to paths starting with `prefix`."""

    def lie(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path.startswith(prefix):
            body = copy.deepcopy(body)
            change(body)
        return status, body

    return lie


def test_honest_answers_verify_for_accounts_nodes_apps_and_txs(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        register = build(net)
        client = net.client(net.honest_url)
        account = await asyncio.to_thread(client.account, RICH_TEXT)
        assert account.balance == net.chain.state.get(account_key(RICH)).balance
        verifier = client.verifier
        assert isinstance(verifier, Verifier)
        head = verifier.light().store.latest()
        assert head.height == net.chain.height
        assert head.next_validators == net.chain.validators()  # proven with the answer
        app = await asyncio.to_thread(client.app, "web")
        assert app["placed"] == 3 and len(app["instances"]) == 3
        node_id = app["instances"][0]["node_id"]
        node = await asyncio.to_thread(client.node, node_id)
        assert any(a["app"] == "web" for a in node["assignments"])
        tx = net.builder.transfer(funded_key(), RICH, COIN)
        net.builder.commit([tx])
        status = await asyncio.to_thread(client.tx, tx.id.hex())
        assert status["status"] == "confirmed" and status["height"] == net.chain.height
        with pytest.raises(WalletError) as caught:
            await asyncio.to_thread(client.app, "nothing-here")
        assert caught.value.reason == "not_found"  # an absence, proven
        registered = await asyncio.to_thread(client.tx, register)
        assert "app_registered" in [e.get("kind") for e in registered["events"]]  # proven

    run(tmp_path, body)


def test_wrong_balance_is_detected_and_the_wallet_falls_over_to_an_honest_node(
    tmp_path: Path,
) -> None:
    async def body(net: Net) -> None:
        build(net)

        def richer(body: dict[str, Any]) -> None:
            body["balance"] += 1_000 * COIN

        net.lie = on("/accounts/", richer)
        liar_only = net.client(net.liar_url)
        message = await refused("proof_invalid", lambda: liar_only.account(RICH_TEXT), net.liar_url)
        assert "balance" in message
        both = net.client(net.liar_url, net.honest_url)
        account = await asyncio.to_thread(both.account, RICH_TEXT)
        assert account.balance == net.chain.state.get(account_key(RICH)).balance

    run(tmp_path, body)


def test_forged_state_proof_is_detected(tmp_path: Path) -> None:
    """The liar changes the proven value itself (and the balance with it)."""

    async def body(net: Net) -> None:
        build(net)

        def forge(body: dict[str, Any]) -> None:
            entry = body["proof"]["entries"][0]
            real = Account.from_fields(unpack(bytes.fromhex(entry["value"])))
            entry["value"] = pack(Account(real.balance + COIN, real.nonce).to_fields()).hex()
            body["balance"] = real.balance + COIN

        net.lie = on("/accounts/", forge)
        liar_only = net.client(net.liar_url)
        message = await refused("proof_invalid", lambda: liar_only.account(RICH_TEXT), net.liar_url)
        assert "does not match the state root" in message

    run(tmp_path, body)


def test_header_signed_by_a_minority_is_detected(tmp_path: Path) -> None:
    """The liar makes its own state (RICH owns a fortune) and a header over it that one of
    the four validators signs: the bisection reaches it from the previous header, where
    one signer in four is not more than 2/3."""

    async def body(net: Net) -> None:
        build(net)
        fortune = pack(Account(10**9 * COIN, 0).to_fields())
        tree = StateTree.from_items([(account_key(RICH), fortune)])

        def forge(body: dict[str, Any]) -> None:
            proof = body["proof"]
            real = Header.from_fields(unpack(bytes.fromhex(proof["header_raw"])))
            fake = real.__class__(
                **{**{s: getattr(real, s) for s in real.__slots__}, "state_root": tree.root}
            )
            commit = sign_commit([node_hot_key(0)], fake.chain_id, fake.height, 0, fake.hash())
            proof["header_raw"] = pack(fake.to_fields()).hex()
            proof["commit_raw"] = pack(commit.to_fields()).hex()
            levels = tree.prove(account_key(RICH))
            proof["entries"] = [
                {
                    "key": account_key(RICH).hex(),
                    "value": fortune.hex(),
                    "proof": [p.hex() for p in (levels.other_leaf, *levels.levels)],
                }
            ]
            body["balance"], body["nonce"] = 10**9 * COIN, 0

        net.lie = on("/accounts/", forge)
        liar_only = net.client(net.liar_url)
        message = await refused(
            "header_unverified", lambda: liar_only.account(RICH_TEXT), net.liar_url
        )
        assert "needs > 2/3" in message
        both = net.client(net.liar_url, net.honest_url)
        assert (await asyncio.to_thread(both.account, RICH_TEXT)).balance < 10**9 * COIN

    run(tmp_path, body)


def test_header_from_another_chain_is_detected(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        build(net)
        other_genesis = new_devnet_genesis(
            VALIDATORS, chain_id="other-chain", genesis_time_ms=1_000_000
        )
        other = Chain.open(tmp_path / "other", other_genesis)
        try:
            ob = Builder(other)
            for _ in range(net.chain.height):
                ob.commit([])
            other_header = other.get_block(other.height).header
            other_commit = other.get_commit(other.height)
            assert other_commit is not None

            def swap(body: dict[str, Any]) -> None:
                body["proof"]["header_raw"] = pack(other_header.to_fields()).hex()
                body["proof"]["commit_raw"] = pack(other_commit.to_fields()).hex()

            net.lie = on("/accounts/", swap)
            liar_only = net.client(net.liar_url)
            message = await refused(
                "header_unverified", lambda: liar_only.account(RICH_TEXT), net.liar_url
            )
            assert "other-chain" in message
        finally:
            other.close()

    run(tmp_path, body)


def test_stale_header_beyond_the_trust_period_is_detected(tmp_path: Path) -> None:
    """The liar replays an answer it kept from an old block (RICH before a payment)."""

    async def body(net: Net) -> None:
        build(net)
        client = net.client(net.liar_url, net.honest_url, period_ms=SHORT_PERIOD_MS)
        kept: dict[str, Any] = {}

        def replay(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            kept.setdefault(path, body)
            return status, kept[path]

        net.lie = replay
        before = await asyncio.to_thread(client.account, RICH_TEXT)
        for _ in range(SHORT_PERIOD_MS // 1_000 + 1):
            net.builder.commit([net.builder.transfer(funded_key(), RICH, COIN)])
            # The wallet keeps its trust current through the honest node meanwhile.
            await asyncio.to_thread(
                NodeClient(net.honest_url, 10, client.verifier).account, RICH_TEXT
            )
        liar_only = NodeClient(net.liar_url, 10, client.verifier)
        message = await refused("stale_header", lambda: liar_only.account(RICH_TEXT), net.liar_url)
        assert "trust period" in message
        now = await asyncio.to_thread(client.account, RICH_TEXT)
        assert now.balance > before.balance  # the honest node's fresh answer

    run(tmp_path, body)


def test_missing_absence_proof_is_detected(tmp_path: Path) -> None:
    """A node hides an app: "not found" with no proof, or with a proof that shows it."""

    async def body(net: Net) -> None:
        build(net)

        def hide(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if path.startswith("/apps/web"):
                return 404, {"error": {"reason": "not_found", "message": "no app 'web'"}}
            return status, body

        net.lie = hide
        liar_only = net.client(net.liar_url)
        message = await refused("proof_invalid", lambda: liar_only.app("web"), net.liar_url)
        assert "without proving the absence" in message

        def hide_with_proof(
            path: str, status: int, body: dict[str, Any]
        ) -> tuple[int, dict[str, Any]]:
            if path.startswith("/apps/web"):
                error = {"reason": "not_found", "message": "no app 'web'"}
                return 404, {"error": error, "proof": body["proof"]}
            return status, body

        net.lie = hide_with_proof
        message = await refused("proof_invalid", lambda: liar_only.app("web"), net.liar_url)
        assert "its own proof shows one" in message
        both = net.client(net.liar_url, net.honest_url)
        assert (await asyncio.to_thread(both.app, "web"))["name"] == "web"

    run(tmp_path, body)


def test_unproven_placement_is_detected(tmp_path: Path) -> None:
    """The liar moves an instance to another node and leaves out the placement's proof."""

    async def body(net: Net) -> None:
        build(net)

        def move(body: dict[str, Any]) -> None:
            body["instances"][0]["node_id"] = "00" * 20
            placement_prefix = b"p".hex()
            body["proof"]["entries"] = [
                e for e in body["proof"]["entries"] if not e["key"].startswith(placement_prefix)
            ]

        net.lie = on("/apps/web", move)
        liar_only = net.client(net.liar_url)
        message = await refused("proof_invalid", lambda: liar_only.app("web"), net.liar_url)
        assert "carries no proof" in message or "differs" in message

    run(tmp_path, body)


def test_forged_tx_inclusion_is_detected(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        register = build(net)
        tx = net.builder.transfer(funded_key(), RICH, COIN)
        net.builder.commit([tx, net.builder.transfer(funded_key(), RICH, COIN)])

        def bend(body: dict[str, Any]) -> None:
            body["proof"]["path"][0] = "11" * 32

        net.lie = on("/txs/", bend)
        liar_only = net.client(net.liar_url)
        message = await refused("proof_invalid", lambda: liar_only.tx(tx.id.hex()), net.liar_url)
        assert "Merkle path" in message

        def moved(body: dict[str, Any]) -> None:
            body["height"] -= 1

        net.lie = on("/txs/", moved)
        await refused("proof_invalid", lambda: liar_only.tx(tx.id.hex()), net.liar_url)

        def invented(body: dict[str, Any]) -> None:
            body["events"][0]["name"] = "someone-else"

        net.lie = on("/txs/", invented)
        message = await refused("proof_invalid", lambda: liar_only.tx(register), net.liar_url)
        assert "events shown" in message
        both = net.client(net.liar_url, net.honest_url)
        assert (await asyncio.to_thread(both.tx, tx.id.hex()))["status"] == "confirmed"

    run(tmp_path, body)


def test_every_node_lying_fails_with_each_nodes_reason(tmp_path: Path) -> None:
    """With no honest node to fall over to, the wallet refuses and names every node; a node
    that answers with an error (a 503) is passed over like one that lies."""

    async def body(net: Net) -> None:
        build(net)

        def broken(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if path.startswith("/accounts/"):
                return 503, {"error": {"reason": "internal", "message": "disk on fire"}}
            return status, body

        net.lie = broken
        both_bad = net.client(net.liar_url, net.liar_url + "/")
        message = await refused("internal", lambda: both_bad.account(RICH_TEXT), net.liar_url)
        assert message.startswith("no node gave an answer that verifies")
        assert message.count(net.liar_url) == 2
        then_honest = net.client(net.liar_url, net.honest_url)
        assert (await asyncio.to_thread(then_honest.account, RICH_TEXT)).address == RICH_TEXT

    run(tmp_path, body)
