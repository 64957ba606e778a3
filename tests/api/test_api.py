"""The HTTP API against a real chain: queries, submission, status, the stream, bad bodies."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.budget import ReadBudget
from fluxchain.api.routes import openapi_document
from fluxchain.api.server import create_app
from fluxchain.core.appspec import AppSpec
from fluxchain.core.crypto import address_of, encode_address
from fluxchain.core.params import COIN
from fluxchain.core.tx import AppRegister, Transfer
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from p2p.netgroup import Network
from tests.support.chain import Builder, funded_key, open_chain, owner_key

HRP = "tflux"
Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def api(
    tmp: Path,
    mempool: Mempool | None = None,
    trusted_proxies: tuple[Network, ...] = (),
    read_budget: ReadBudget | None = None,
) -> AsyncIterator[tuple[Client, NodeService, Builder]]:
    chain = open_chain(tmp / "home")
    service = NodeService(chain, mempool)
    app = create_app(service, trusted_proxies=trusted_proxies, read_budget=read_budget)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, service, Builder(chain)
    finally:
        await client.close()
        chain.close()


def run(tmp: Path, body: Callable[[Client, NodeService, Builder], Awaitable[None]]) -> None:
    async def main() -> None:
        async with api(tmp) as (client, service, builder):
            await body(client, service, builder)

    asyncio.run(main())


async def tx_status(client: Client, tx_id: bytes) -> dict[str, object]:
    """What `GET /txs/{id}` answers for `tx_id`."""
    return dict(await (await client.get(f"/txs/{tx_id.hex()}")).json())


def commit(service: NodeService, b: Builder) -> None:
    """Build a block from the mempool, import it, and tell the service, as the driver does."""
    txs = service.candidates()
    block = b.commit(txs)
    service.on_committed(block, tuple(service.chain.events(block.height)))


def test_status_params_blocks_and_openapi(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        commit(service, b)
        status = await (await client.get("/status")).json()
        assert status["height"] == 1 and status["chain_id"] == "flux-devnet"
        assert status["genesis_hash"] == service.chain.genesis_hash.hex()
        params = await (await client.get("/params")).json()
        assert params["epoch_length"] == service.chain.params.epoch_length
        block = await (await client.get("/blocks/1")).json()
        assert block["header"]["height"] == 1 and block["commit"]["round"] == 0
        same = await (await client.get(f"/blocks/{block['header']['hash']}")).json()
        assert same["header"] == block["header"]
        latest = await (await client.get("/blocks/latest")).json()
        assert latest["header"]["height"] == 1
        assert (await client.get("/blocks/99")).status == 404
        headers = await (await client.get("/blocks?limit=5")).json()
        assert [h["height"] for h in headers["headers"]] == [1]
        doc = await (await client.get("/openapi.json")).json()
        assert doc == json.loads(json.dumps(openapi_document()))
        assert "requestBody" in doc["paths"]["/txs"]["post"]
        metrics = await (await client.get("/metrics")).text()
        assert "fluxchain_height 1.0" in metrics

    run(tmp_path, body)


def test_submit_status_and_account(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        to = address_of(owner_key(6).public_key)
        tx = b.tx(funded_key(), Transfer(to, 2 * COIN))
        r = await client.post("/txs", json={"tx": tx.raw.hex()})
        assert r.status == 202, await r.text()
        assert (await client.get(f"/txs/{tx.id.hex()}")).status == 200
        assert (await (await client.get(f"/txs/{tx.id.hex()}")).json())["status"] == "pending"
        again = await client.post("/txs", json={"tx": tx.raw.hex()})
        assert again.status == 400
        assert (await again.json())["error"]["reason"] == "already_known"
        commit(service, b)
        status = await (await client.get(f"/txs/{tx.id.hex()}")).json()
        assert status["status"] == "confirmed" and status["height"] == 1
        assert status["tx"]["kind"] == "transfer"
        assert status["tx"]["payload"]["to"] == encode_address(to, HRP)
        account = await (await client.get(f"/accounts/{encode_address(to, HRP)}")).json()
        assert account["balance"] == 1_000_000 * COIN + 2 * COIN
        bad_sig = bytearray(b.tx(funded_key(), Transfer(to, 1)).raw)
        bad_sig[-1] ^= 1
        refused = await client.post("/txs", json={"tx": bad_sig.hex()})
        err = await refused.json()
        assert refused.status == 400 and err["error"]["reason"] == "bad_signature"
        batch = [b.tx(funded_key(), Transfer(to, 1)).raw.hex() for _ in range(3)] + ["zz"]
        results = (await (await client.post("/txs/batch", json={"txs": batch})).json())["results"]
        assert [r.get("status") for r in results[:3]] == ["pending"] * 3
        assert results[3]["error"]["reason"] == "bad_field"
        unknown = await (await client.get("/txs/" + "00" * 32)).json()
        assert unknown["status"] == "unknown"

    run(tmp_path, body)


def test_a_full_mempool_answers_429_with_retry_after(tmp_path: Path) -> None:
    """Overload is "not now": 429 and Retry-After, the reason kept; a wrong tx stays a 400."""

    async def main() -> None:
        chain = open_chain(tmp_path / "home")
        service = NodeService(chain, Mempool(MempoolLimits(max_txs=2)))
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        try:
            b, to = Builder(chain), address_of(owner_key(6).public_key)
            for _ in range(2):
                tx = b.tx(funded_key(), Transfer(to, 1))
                assert (await client.post("/txs", json={"tx": tx.raw.hex()})).status == 202
            full = await client.post(
                "/txs", json={"tx": b.tx(funded_key(), Transfer(to, 1)).raw.hex()}
            )
            assert full.status == 429 and full.headers["Retry-After"] == "1"
            assert (await full.json())["error"]["reason"] == "mempool_full"
            batch = [b.tx(funded_key(), Transfer(to, 1)).raw.hex() for _ in range(3)]
            answer = await client.post("/txs/batch", json={"txs": batch})
            assert answer.status == 429 and answer.headers["Retry-After"] == "1"
            reasons = [r["error"]["reason"] for r in (await answer.json())["results"]]
            assert reasons == ["mempool_full"] * 3
            # One tx wrong, the rest turned away: not all overload, so the batch is a 200.
            mixed = await client.post("/txs/batch", json={"txs": [*batch[:1], "zz"]})
            assert mixed.status == 200
            assert (await client.post("/txs", json={"tx": "zz"})).status == 400
        finally:
            await client.close()
            chain.close()

    asyncio.run(main())


def test_nodes_validators_apps_and_network(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        nodes = (await (await client.get("/nodes?tier=stratus")).json())["nodes"]
        assert len(nodes) == 4 and all(n["status"] == "confirmed" for n in nodes)
        assert (await (await client.get("/nodes?tier=cumulus")).json())["nodes"] == []
        one = await (await client.get(f"/nodes/{nodes[0]['node_id']}")).json()
        assert one["owner"].startswith("tflux1") and one["assignments"] == []
        by_key = await (await client.get(f"/nodes/{nodes[0]['node_key']}")).json()
        assert by_key["node_id"] == nodes[0]["node_id"]
        validators = await (await client.get("/validators")).json()
        assert len(validators["validators"]) == 4
        stats = await (await client.get("/network/stats")).json()
        assert stats  # figures checked against state in tests/apps
        owner = funded_key()
        spec = AppSpec.from_json(
            {
                "name": "hello",
                "description": "a test app",
                "owner": encode_address(address_of(owner.public_key), HRP),
                "instances": 3,
                "expire": 200,
                "components": [
                    {"name": "web", "image": "nginx:1.27", "cpu": 0.5, "ram_mb": 256, "disk_gb": 1}
                ],
            },
            HRP,
        )
        service.submit(b.tx(owner, AppRegister(spec)).raw)
        commit(service, b)
        app = await (await client.get("/apps/hello")).json()
        assert app["placed"] == 3 and app["owner"].startswith("tflux1")
        assert len({i["node_id"] for i in app["instances"]}) == 3
        host = app["instances"][0]["node_id"]
        runs = await (await client.get(f"/nodes/{host}/assignments")).json()
        assert runs["assignments"][0]["app"] == "hello"
        listed = (await (await client.get("/apps")).json())["apps"]
        assert [a["name"] for a in listed] == ["hello"]
        assert (await client.get("/apps/nope")).status == 404

    run(tmp_path, body)


def test_block_stream_replays_then_follows(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        commit(service, b)
        commit(service, b)
        ws = await client.ws_connect("/ws?from=1")
        first = await asyncio.wait_for(ws.receive_json(), 5)
        second = await asyncio.wait_for(ws.receive_json(), 5)
        assert [first["height"], second["height"]] == [1, 2]
        commit(service, b)
        live = await asyncio.wait_for(ws.receive_json(), 5)
        assert live["height"] == 3 and any(e["kind"] == "paid" for e in live["events"])
        await ws.close()

    run(tmp_path, body)


def test_malformed_bodies_never_5xx(tmp_path: Path) -> None:
    rng = random.Random(1234)

    async def body(client: Client, service: NodeService, b: Builder) -> None:
        bodies: list[Any] = [
            b"",
            b"{",
            b"[]",
            b"null",
            b'{"tx": 5}',
            b'{"tx": "abc"}',
            b'{"tx": "' + b"00" * 70_000 + b'"}',
            b'{"txs": "nope"}',
            b'{"txs": [1, 2]}',
            b'{"tx": "\\ud800"}',
            json.dumps({"txs": ["00"] * 1001}).encode(),
        ]
        bodies += [rng.randbytes(rng.randrange(1, 300)) for _ in range(40)]
        for raw in bodies:
            for path in ("/txs", "/txs/batch"):
                r = await client.post(path, data=raw, headers={"content-type": "application/json"})
                assert 400 <= r.status < 500, (path, raw[:40], r.status)
                err = await r.json()
                assert err["error"]["reason"]
        for path in (
            "/txs/xyz",
            "/accounts/nothex",
            "/accounts/flux1abc",
            "/nodes/zz",
            "/blocks/abc",
            "/blocks?limit=0",
            "/blocks?limit=x",
            "/ws?from=-1",
        ):
            r = await client.get(path)
            assert 400 <= r.status < 500, (path, r.status)
        assert (await (await client.get("/status")).json())["height"] == 0

    run(tmp_path, body)
