"""A fresh node syncs hundreds of blocks from a peer over real websockets, at full speed,
without tripping the peer's rate limits (each imported block used to send a STATUS); and
a peer that lies about its height cannot stop it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bench.sync import build_chain, height
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.home import NodeConfig, init_home
from fluxchain.store.chain import Chain
from p2p.messages import Blocks, GetBlocks, Status
from tests.p2p.harness import raw_peer
from tests.support.ports import node_ports
from tests.support.wait import NodeStatus, wait_until
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

BLOCKS = 300
RUN = [sys.executable, "-P", "-m", "fluxchain.cli", "run", "--home"]


def start(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*RUN, str(home)], stderr=(home / "node.log").open("w"))


def statuses(*homes: Path) -> list[NodeStatus]:
    """What a failing wait shows: each node's log (its API may not answer)."""
    return [NodeStatus(home.name, True, logs=(home / "node.log",)) for home in homes]


@pytest.mark.slow
def test_fresh_node_syncs_a_long_chain(tmp_path: Path) -> None:
    genesis = new_devnet_genesis(4, genesis_time_ms=1_000)
    serving, fresh = tmp_path / "serving", tmp_path / "fresh"
    # Port 0: each node binds what the OS gives it and writes it to its home's port file.
    init_home(serving, genesis, NodeConfig(p2p_port=0, api_port=0, duties=False),
              derive_key(INSECURE_TEST_MNEMONIC, node_key_path(0)))  # fmt: skip
    build_chain(serving / "data", genesis, BLOCKS, 10)
    procs = [start(serving)]
    try:
        p2p_a = node_ports(serving, procs[0], serving / "node.log").p2p
        init_home(fresh, genesis, NodeConfig(p2p_port=0, api_port=0, duties=False,
                                             persistent_peers=(f"127.0.0.1:{p2p_a}",)))  # fmt: skip
        procs.append(start(fresh))
        api_b = node_ports(fresh, procs[1], fresh / "node.log").api
        wait_until(lambda: height(api_b) >= BLOCKS, 60, f"the fresh node at height {BLOCKS}",
                   nodes=lambda: statuses(serving, fresh))  # fmt: skip
        log = (fresh / "node.log").read_text()
        assert height(api_b) == BLOCKS, log[-3000:]
        assert "banned" not in log, log[-3000:]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
    a, b = Chain.open(serving / "data", genesis), Chain.open(fresh / "data", genesis)
    try:
        assert a.head_hash == b.head_hash and a.tree.root == b.tree.root
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_a_peer_claiming_height_1e9_does_not_stall_a_fresh_node(tmp_path: Path) -> None:
    """Issue 25 #3, end to end: a fresh node meets a peer that claims 10^9 blocks and
    answers every request with none, then an honest peer with 120 blocks. It used to
    sync nothing and ban the honest peer ("out of order"); now it syncs every block from
    the honest peer and bans the liar."""
    blocks = 120
    genesis = new_devnet_genesis(4, genesis_time_ms=1_000)
    serving, fresh = tmp_path / "serving", tmp_path / "fresh"
    build_chain(serving / "data", genesis, blocks, 5)
    init_home(fresh, genesis, NodeConfig(p2p_port=0, api_port=0, duties=False,
                                         log_level="info"))  # fmt: skip
    procs = [start(fresh)]
    try:
        ports = node_ports(fresh, procs[0], fresh / "node.log")
    except AssertionError:
        procs[0].kill()
        raise
    p2p_b, api_b = ports.p2p, ports.api
    # The serving node dials the fresh one, so that the liar is connected first.
    init_home(serving, genesis, NodeConfig(p2p_port=0, api_port=0, duties=False,
                                           persistent_peers=(f"127.0.0.1:{p2p_b}",)),
              derive_key(INSECURE_TEST_MNEMONIC, node_key_path(0)))  # fmt: skip

    async def scenario() -> tuple[int, str]:
        while await asyncio.to_thread(height, api_b) < 0:
            await asyncio.sleep(0.1)
        async with raw_peer(f"127.0.0.1:{p2p_b}") as liar:
            await liar.handshake(chain_id=genesis.chain_id, genesis_hash=genesis.hash())
            await liar.send(Status(10**9, b"\x01" * 32, 1))
            procs.append(start(serving))
            closed = ""
            async with asyncio.timeout(60):
                while closed == "" or await asyncio.to_thread(height, api_b) < blocks:
                    if closed:
                        await asyncio.sleep(0.2)
                        continue
                    msg = await liar.ws.receive()
                    if msg.type is aiohttp.WSMsgType.BINARY:
                        for request in liar.frames_of(msg.data):
                            if isinstance(request, GetBlocks):
                                await liar.send(Blocks(request.request_id, ()))
                    else:
                        closed = msg.extra or repr(msg.type)
            return await asyncio.to_thread(height, api_b), closed

    try:
        try:
            synced, liar_closed = asyncio.run(scenario())
        except TimeoutError:
            pytest.fail(
                f"fresh node at {height(api_b)}:\n{(fresh / 'node.log').read_text()[-3000:]}"
            )
        log = (fresh / "node.log").read_text()
        assert synced == blocks, log[-3000:]
        assert liar_closed == "banned", log[-3000:]
        bans = [line for line in log.splitlines() if "event=peer_banned" in line]
        assert len(bans) == 1 and "sync_empty" in bans[0], bans  # the liar's, no other
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
