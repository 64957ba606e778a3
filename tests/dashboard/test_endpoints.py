"""The dashboard's server side against a real chain: its page and headers, and the read-only
endpoints it needs (spec check and price, search, node history, app events), including
bodies and queries no client should send (always a 4xx with a reason, never a 5xx)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from fluxchain.api import queries
from fluxchain.api.models import MAX_SPEC_BODY
from fluxchain.api.routes import openapi_document
from fluxchain.core.appspec import AppSpec
from fluxchain.core.crypto import address_of, encode_address
from fluxchain.core.pricing import compute_period_numerator, compute_price
from fluxchain.core.tx import AppRegister, NodeConfirm
from fluxchain.dashboard import CONTENT_SECURITY_POLICY, STATIC_DIR
from fluxchain.node.service import NodeService
from tests.api.test_api import HRP, Client, commit, run
from tests.support.chain import Builder, funded_key, node_hot_key
from tests.wallet.devnode import BENCHMARK

VERSION = "dashboard-test/1"


def spec_json(name: str = "hello", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "description": "a test app",
        "instances": 3,
        "expire": 1_000,
        "components": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "ports": [31000],
                "container_ports": [80],
                "environment": ["GREETING=hi"],
                "cpu": "0.5",
                "ram_mb": 256,
                "disk_gb": 1,
            }
        ],
    }
    spec.update(overrides)
    return spec


def register(service: NodeService, b: Builder, spec: dict[str, Any]) -> None:
    owner = funded_key()
    with_owner = {**spec, "owner": encode_address(address_of(owner.public_key), HRP)}
    service.submit(b.tx(owner, AppRegister(AppSpec.from_json(with_owner, HRP))).raw)
    commit(service, b)


def test_page_static_files_and_security_headers(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        page = await client.get("/")
        html = await page.text()
        assert page.status == 200 and page.content_type == "text/html"
        assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        # no inline script anywhere: every <script> loads a file of this origin
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
        assert scripts and all('src="/static/' in attrs and not text for attrs, text in scripts)
        for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
            static = await client.get(f"/static/{name}")
            assert static.status == 200 and kind in static.content_type
            assert static.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        # the API's JSON carries the same policy: opened directly, it can run nothing either
        status = await client.get("/status")
        assert status.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert (await client.get("/static/nope.js")).status == 404
        assert (await client.get("/static/../server.py")).status in (403, 404)
        # every file the page loads ships in the package
        assert {p.name for p in STATIC_DIR.iterdir()} >= {"index.html", "app.js", "style.css"}

    run(tmp_path, body)


def test_scripts_never_write_html() -> None:
    """Chain strings reach the page as text only: the scripts have no HTML sinks at all."""
    source = (STATIC_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, sink


def test_validate_prices_a_valid_spec_as_the_wallet_does(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        params = service.chain.params
        r = await client.post("/apps/validate", json={"spec": spec_json()})
        assert r.status == 200, await r.text()
        verdict = await r.json()
        assert verdict["valid"] and verdict["problems"] == []
        assert verdict["owner_filled_by_wallet"] is True
        spec = AppSpec.from_json(
            {**spec_json(), "owner": encode_address(bytes(20), HRP)}, params.address_hrp
        )
        assert verdict["price"] == compute_price(spec, params, 1_000)
        assert verdict["per_instance_period"] == -(-compute_period_numerator(spec, params) // 100)
        assert verdict["blocks"] == 1_000 and verdict["instances"] == 3
        longer = await (
            await client.post("/apps/validate", json={"spec": spec_json(), "blocks": 22_000})
        ).json()
        assert longer["price"] == compute_price(spec, params, 22_000)
        owned = spec_json(owner=encode_address(address_of(funded_key().public_key), HRP))
        verdict = await (await client.post("/apps/validate", json={"spec": owned})).json()
        assert verdict["valid"] and verdict["owner_filled_by_wallet"] is False

    run(tmp_path, body)


def test_validate_names_every_problem_with_its_path(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        spec = spec_json(name="Hello", instances=1, owner="flux1" + "q" * 38)
        spec["components"][0]["environment"] = ["OK=1", "GREETING=\u201chi\u201d"]
        spec["components"][0]["ports"] = ["x"]
        spec["colour"] = "blue"
        r = await client.post("/apps/validate", json={"spec": spec})
        assert r.status == 200
        verdict = await r.json()
        assert not verdict["valid"] and verdict["price"] is None
        found = {(p["path"], p["code"]) for p in verdict["problems"]}
        assert ("components[0].environment[1]", "typographic_character") in found
        assert ("components[0].ports[0]", "wrong_type") in found
        assert ("colour", "unknown_field") in found
        assert ("owner", "bad_address") in found
        quote = next(p for p in verdict["problems"] if p["path"] == "components[0].environment[1]")
        assert "U+201C LEFT DOUBLE QUOTATION MARK at position 9" in quote["message"]
        # the rules after the structure: fixed structure shows the rule problems
        rules = spec_json(name="Hello", instances=1)
        verdict = await (await client.post("/apps/validate", json={"spec": rules})).json()
        found = {(p["path"], p["code"]) for p in verdict["problems"]}
        assert found == {("name", "bad_format"), ("instances", "out_of_range")}

    run(tmp_path, body)


def test_validate_bad_bodies_are_400_with_a_reason(tmp_path: Path) -> None:
    rng = random.Random(11)

    async def body(client: Client, service: NodeService, b: Builder) -> None:
        bodies: list[bytes] = [
            b"",
            b"{",
            b"[]",
            b"null",
            b"{}",
            b'{"spec": 5}',
            b'{"spec": []}',
            b'{"spec": "name: x"}',
            b'{"spec": {}, "blocks": 0}',
            b'{"spec": {}, "blocks": "many"}',
            b'{"spec": {}, "blocks": 1e400}',
            b'{"spec": {}, "blocks": 99999999999999999999999}',
            b"\xff\xfe",
        ]
        bodies += [rng.randbytes(rng.randrange(1, 200)) for _ in range(30)]
        for raw in bodies:
            r = await client.post(
                "/apps/validate", data=raw, headers={"content-type": "application/json"}
            )
            assert r.status == 400, (raw[:40], r.status, await r.text())
            assert (await r.json())["error"]["reason"]
        big = json.dumps({"spec": {"description": "x" * MAX_SPEC_BODY}}).encode()
        r = await client.post(
            "/apps/validate", data=big, headers={"content-type": "application/json"}
        )
        assert r.status == 413 and (await r.json())["error"]["reason"] == "too_large"

    run(tmp_path, body)


def test_validate_odd_specs_are_problems_never_5xx(tmp_path: Path) -> None:
    """Whatever JSON sits inside `spec`, the answer is a verdict (200) listing problems."""
    rng = random.Random(5)
    odd_values: list[Any] = [
        None,
        True,
        -1,
        2**70,
        1.5,
        float("nan"),
        float("inf"),
        "",
        "\u200b",
        "x" * 5_000,
        [],
        [None],
        {},
        {"a": 1},
    ]

    def mutate(spec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(json.dumps(spec))
        target = out if rng.random() < 0.5 else out["components"][0]
        target[rng.choice(sorted(target))] = rng.choice(odd_values)
        return out

    async def body(client: Client, service: NodeService, b: Builder) -> None:
        for _ in range(150):
            spec = mutate(spec_json())
            raw = json.dumps({"spec": spec}).encode()  # NaN/Infinity as JSON allows in Python
            r = await client.post(
                "/apps/validate", data=raw, headers={"content-type": "application/json"}
            )
            assert r.status == 200, (spec, r.status, await r.text())
            verdict = await r.json()
            assert verdict["valid"] == (not verdict["problems"])

    run(tmp_path, body)


def test_search_finds_each_kind(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        register(service, b, spec_json("findme"))
        chain = service.chain
        block = chain.get_block(1)
        tx_id = next(iter(service.committed_block(1).tx_ids))  # type: ignore[union-attr]
        node = (await (await client.get("/nodes")).json())["nodes"][0]
        owner = encode_address(address_of(funded_key().public_key), HRP)

        async def search(q: str) -> list[dict[str, str]]:
            r = await client.get("/search", params={"q": q})
            assert r.status == 200, await r.text()
            results: list[dict[str, str]] = (await r.json())["results"]
            return results

        assert await search("1") == [{"kind": "block", "ref": "1"}]
        assert await search(block.hash().hex()) == [{"kind": "block", "ref": block.hash().hex()}]
        assert await search(tx_id.hex()) == [{"kind": "tx", "ref": tx_id.hex()}]
        assert await search(owner) == [{"kind": "account", "ref": owner}]
        assert await search("findme") == [{"kind": "app", "ref": "findme"}]
        assert await search(node["node_id"]) == [{"kind": "node", "ref": node["node_id"]}]
        assert await search(node["node_key"]) == [{"kind": "node", "ref": node["node_id"]}]
        assert await search(node["endpoint"]) == [{"kind": "node", "ref": node["node_id"]}]
        assert await search("999") == []
        assert await search("tflux1notanaddress") == []
        assert await search("<img src=x onerror=alert(1)>") == []
        for bad in ("", " ", "x" * 201):
            r = await client.get("/search", params={"q": bad})
            assert r.status == 400 and (await r.json())["error"]["reason"] == "bad_request"
        assert (await client.get("/search")).status == 400

    run(tmp_path, body)


def test_node_history_has_confirms_payouts_and_bounds(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        key = node_hot_key(0)
        node = (await (await client.get(f"/nodes/{key.public_key.hex()}")).json())["node_id"]
        confirm = b.tx(key, NodeConfirm(bytes.fromhex(node), BENCHMARK, VERSION), fee=0)
        service.submit(confirm.raw)
        for _ in range(4):
            commit(service, b)
        history = await (await client.get(f"/nodes/{node}/history")).json()
        assert history["node_id"] == node
        assert (history["from_height"], history["to_height"]) == (1, 4)
        assert [c["tx"] for c in history["confirms"]] == [confirm.id.hex()]
        assert history["confirms"][0]["benchmark"]["cpu_score"] == BENCHMARK.cpu_score
        assert history["confirms"][0]["version"] == VERSION
        paid = [e for e in history["events"] if e["kind"] == "paid"]
        assert paid and all(e["node_id"] == node for e in paid)
        heights = [e["height"] for e in history["events"]]
        assert heights == sorted(heights, reverse=True)
        recent = await (await client.get(f"/nodes/{node}/history?blocks=1")).json()
        assert (recent["from_height"], recent["to_height"]) == (4, 4)
        for query in ("blocks=0", "blocks=x", "blocks=100000"):
            r = await client.get(f"/nodes/{node}/history?{query}")
            assert r.status == 400, query
        assert (await client.get("/nodes/zz/history")).status == 400
        assert (await client.get("/nodes/" + "00" * 20 + "/history")).status == 404

    run(tmp_path, body)


def test_node_history_stops_at_its_work_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy chain's blocks hold many txs: the scan stops at the budget and says where."""
    monkeypatch.setattr(queries, "MAX_HISTORY_TXS", 2)

    async def body(client: Client, service: NodeService, b: Builder) -> None:
        to = address_of(node_hot_key(2).public_key)
        for _ in range(3):
            service.submit(b.transfer(funded_key(), to).raw)
            service.submit(b.transfer(funded_key(), to).raw)
            commit(service, b)
        node = (await (await client.get("/nodes")).json())["nodes"][0]["node_id"]
        history = await (await client.get(f"/nodes/{node}/history")).json()
        assert (history["from_height"], history["to_height"]) == (3, 3)

    run(tmp_path, body)


def test_app_events_name_the_app(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        register(service, b, spec_json("evented"))
        register(service, b, spec_json("other", components=spec_json()["components"][:1]))
        commit(service, b)
        events = (await (await client.get("/apps/evented/events")).json())["events"]
        kinds = [e["kind"] for e in events]
        assert kinds.count("assigned") == 3 and "app_registered" in kinds
        assert {e["name"] for e in events} == {"evented"}
        assert {e["height"] for e in events} == {1}
        assert (await client.get("/apps/nope/events")).status == 404
        assert (await client.get("/apps/evented/events?blocks=-1")).status == 400

    run(tmp_path, body)


def test_network_tiers_add_up_to_the_network_stats(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        key = node_hot_key(1)
        node = (await (await client.get(f"/nodes/{key.public_key.hex()}")).json())["node_id"]
        service.submit(b.tx(key, NodeConfirm(bytes.fromhex(node), BENCHMARK, VERSION), 0).raw)
        commit(service, b)
        tiers = (await (await client.get("/network/tiers")).json())["tiers"]
        stats = await (await client.get("/network/stats")).json()
        nodes = (await (await client.get("/nodes")).json())["nodes"]
        assert set(tiers) == {"cumulus", "nimbus", "stratus"}
        for tier, row in tiers.items():
            for status, count in row["nodes_by_status"].items():
                expected = sum(1 for n in nodes if n["tier"] == tier and n["status"] == status)
                assert count == expected, (tier, status)
            assert row["nodes_by_status"]["confirmed"] == stats["nodes_by_tier"][tier]
        assert tiers["stratus"]["cores"] > 0 and tiers["cumulus"]["cores"] == 0
        assert sum(row["cores"] for row in tiers.values()) == stats["total_cores"]
        assert sum(row["ram_mb"] for row in tiers.values()) == stats["total_ram_mb"]
        assert sum(row["storage_gb"] for row in tiers.values()) == stats["total_storage_gb"]

    run(tmp_path, body)


def test_openapi_lists_the_dashboard_endpoints() -> None:
    paths = openapi_document()["paths"]
    assert "requestBody" in paths["/apps/validate"]["post"]
    for path in ("/search", "/nodes/{id}/history", "/apps/{name}/events", "/network/tiers"):
        assert "get" in paths[path], path
