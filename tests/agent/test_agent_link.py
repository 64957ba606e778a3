"""The node's side of its agent: token, staleness, health, capacity, the report API."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.agent.runtime import Capacity
from fluxchain.api.server import create_app
from fluxchain.node.agent_link import STALE_S, AgentLink, load_or_create_token
from fluxchain.node.service import NodeService
from tests.support.chain import open_chain


def report(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "runtime": "process",
        "runtime_ok": True,
        "error": "",
        "height": 7,
        "capacity": {"cores": 2, "ram_mb": 4096, "disk_gb": 50},
        "workloads": [
            {
                "app": "web1",
                "instance": 0,
                "component": "web",
                "state": "running",
                "restarts": 0,
                "ports": ["127.0.1.1:31080"],
                "message": "",
            }
        ],
    }
    body.update(changes)
    return body


def test_token_is_created_private_once_and_kept(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path)
    assert len(token) == 64 and os.stat(tmp_path / "agent_token").st_mode & 0o777 == 0o600
    assert load_or_create_token(tmp_path) == token


def test_health_follows_the_agent() -> None:
    now = [100.0]
    link = AgentLink("secret", expected=True, clock=lambda: now[0])
    assert link.problem() == "no report from the agent yet"
    assert not link.accept("wrong", report())
    assert link.accept("secret", report())
    assert link.problem() is None
    assert link.capacity() == Capacity(2, 4096, 50)
    assert link.summary()["workloads"] == {"running": 1}
    now[0] += STALE_S + 1
    assert "silent" in (link.problem() or "") and link.capacity() is None
    link.accept("secret", report(runtime_ok=False, error="Docker Engine down"))
    assert link.problem() == "runtime unavailable: Docker Engine down"
    assert AgentLink("x", expected=False).problem() is None  # a node without an agent


def test_report_endpoint_checks_token_and_body(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    service = NodeService(chain, agent=AgentLink("secret", expected=True))

    async def scenario() -> None:
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        try:
            health = await client.get("/health")
            assert health.status == 503
            assert (await health.json())["problem"] == "no report from the agent yet"
            no_token = await client.post("/agent/report", json=report())
            assert no_token.status == 401
            assert (await no_token.json())["error"]["reason"] == "unauthorized"
            bearer = {"Authorization": "Bearer secret"}
            wrong = await client.post(
                "/agent/report", json=report(), headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status == 401
            for bad in (report(runtime="k8s"), report(workloads="x"), {"runtime": "process"}):
                response = await client.post("/agent/report", json=bad, headers=bearer)
                assert response.status == 400
                assert (await response.json())["error"]["reason"] == "bad_request"
            garbage = await client.post("/agent/report", data=b"\xff{", headers=bearer)
            assert garbage.status == 400
            ok = await client.post("/agent/report", json=report(), headers=bearer)
            assert ok.status == 200
            health = await client.get("/health")
            assert health.status == 200
            body = await health.json()
            assert body["healthy"] and body["agent"]["workloads"] == {"running": 1}
            agent = await (await client.get("/agent")).json()
            assert agent["workloads"][0]["ports"] == ["127.0.1.1:31080"]
            assert agent["capacity"] == {"cores": 2, "ram_mb": 4096, "disk_gb": 50}
        finally:
            await client.close()

    try:
        asyncio.run(scenario())
    finally:
        chain.close()
