"""A node configured with port 0 tells what it bound: tests and the devnet launcher read
the ports from its home instead of choosing free ports beforehand (a race: a port freed
for someone else to bind can be taken by anyone meanwhile)."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from fluxchain.node.home import NodeConfig, init_home
from fluxchain.node.node import Node
from tests.support.chain import devnet_genesis
from tests.support.wait import wait_until_async


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_a_node_started_with_port_0_writes_the_ports_it_bound(tmp_path: Path) -> None:
    home = init_home(
        tmp_path / "home",
        devnet_genesis(),
        NodeConfig(moniker="ports", api_port=0, p2p_port=0, duties=False),
    )
    node = Node(home)

    async def scenario() -> None:
        running = asyncio.create_task(node.run())
        await wait_until_async(lambda: home.bound_ports() is not None, 20, "the port file")
        ports = home.bound_ports()
        assert ports is not None and ports.pid == os.getpid()  # written by this process
        assert ports.p2p == node.network.listen_port and ports.p2p != 0
        status = await asyncio.to_thread(_get, f"http://127.0.0.1:{ports.api}/status")
        assert status["chain_id"] == devnet_genesis().chain_id  # the API is on that port
        node.request_stop()
        await asyncio.wait_for(running, 20)

    asyncio.run(scenario())
