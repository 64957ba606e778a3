"""`flux-wallet dashboard`'s local server (wallet/dashboard.py) over HTTP: what it labels
verified and how, what it refuses (other hosts, other methods, other addresses), and that a
lying node's answer never leaves it. The page itself is tested in tests/dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from fluxchain.core.params import COIN
from fluxchain.core.records import account_key
from tests.light.test_lying_node import RICH, RICH_TEXT, Net, build, on, run
from wallet.cli import main
from wallet.client import NodeClient
from wallet.dashboard import (
    UNVERIFIED_HEADER,
    VERIFIED_HEADER,
    VERIFY_ERROR_HEADER,
    create_dashboard_app,
)


async def get(
    client: NodeClient, path: str, method: str = "GET", **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    """One request to a dashboard server over `client`: status, headers, JSON body."""
    server = TestServer(create_dashboard_app(client), host="127.0.0.1")
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, server.make_url(path), **kwargs) as response,
        ):
            return response.status, dict(response.headers), await response.json()
    finally:
        await server.close()


def test_dashboard_labels_proven_reads_with_their_block_and_lists_unverified(
    tmp_path: Path,
) -> None:
    async def body(net: Net) -> None:
        register = build(net)
        client = net.client(net.honest_url)
        status, headers, account = await get(client, f"/accounts/{RICH_TEXT}")
        assert status == 200
        assert account["balance"] == net.chain.state.get(account_key(RICH)).balance
        assert "proof" not in account  # the proof has done its work in the wallet
        assert headers[VERIFIED_HEADER] == (
            f"height={net.chain.height} hash={net.chain.head_hash.hex()} node={net.honest_url}"
        )
        status, headers, app = await get(client, "/apps/web")
        assert status == 200 and app["name"] == "web" and VERIFIED_HEADER in headers
        node_id = app["instances"][0]["node_id"]
        status, headers, node = await get(client, f"/nodes/{node_id}")
        assert status == 200 and node["node_id"] == node_id and VERIFIED_HEADER in headers
        status, headers, tx = await get(client, f"/txs/{register}")
        assert status == 200 and tx["status"] == "confirmed"
        included = net.chain.get_block(tx["height"]).header  # proven against its own block
        assert headers[VERIFIED_HEADER] == (
            f"height={included.height} hash={included.hash().hex()} node={net.honest_url}"
        )
        status, headers, _ = await get(client, "/apps/nothing-here")
        assert status == 404 and VERIFIED_HEADER in headers  # a proven absence
        status, headers, apps = await get(client, "/apps")
        assert status == 200 and [a["name"] for a in apps["apps"]] == ["web"]
        assert headers[UNVERIFIED_HEADER] == f"node={net.honest_url}"
        assert VERIFIED_HEADER not in headers
        status, headers, _ = await get(client, "/network/stats")
        assert status == 200 and headers[UNVERIFIED_HEADER] == f"node={net.honest_url}"

    run(tmp_path, body)


def test_dashboard_passes_on_no_lie_of_a_lying_node(tmp_path: Path) -> None:
    async def body(net: Net) -> None:
        build(net)

        def richer(answer: dict[str, Any]) -> None:
            answer["balance"] += 1_000 * COIN

        net.lie = on("/accounts/", richer)
        status, headers, answer = await get(net.client(net.liar_url), f"/accounts/{RICH_TEXT}")
        assert status == 502
        assert headers[VERIFY_ERROR_HEADER] == "proof_invalid"
        assert set(answer) == {"error"}  # the reason, never the answer
        assert answer["error"]["reason"] == "proof_invalid"
        assert net.liar_url in answer["error"]["message"]

    run(tmp_path, body)


def test_dashboard_refuses_other_hosts_and_methods(tmp_path: Path) -> None:
    """DNS rebinding (a page of another site whose name now points at 127.0.0.1) gets
    nothing; the only non-GET is the stateless spec check the Deploy page uses."""

    async def body(net: Net) -> None:
        build(net)
        client = net.client(net.honest_url)
        status, _, answer = await get(
            client, f"/accounts/{RICH_TEXT}", headers={"Host": "evil.example:80"}
        )
        assert status == 403 and answer["error"]["reason"] == "forbidden_host"
        status, _, answer = await get(client, "/txs", "POST", json={"tx": "00"})
        assert status == 405 and answer["error"]["reason"] == "method_not_allowed"
        status, _, answer = await get(client, "/apps/web", "DELETE")
        assert status == 405
        status, headers, answer = await get(
            client, "/apps/validate", "POST", json={"spec": {"name": "x"}}
        )
        assert status == 200 and answer["valid"] is False and UNVERIFIED_HEADER in headers

    run(tmp_path, body)


def test_dashboard_listens_on_127_0_0_1_only(tmp_path: Path) -> None:
    runner = CliRunner()
    for listen in ("0.0.0.0:26780", "192.168.1.5:26780", "[::]:26780", "127.0.0.1:99999"):
        result = runner.invoke(
            main,
            ["--wallet-dir", str(tmp_path), "dashboard", "--listen", listen],
        )
        assert result.exit_code != 0, (listen, result.output)
        assert "error [bad_input]" in result.output, result.output
