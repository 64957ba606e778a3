"""A fresh node syncs hundreds of blocks from a peer over real websockets, at full speed,
without tripping the peer's rate limits (each imported block used to send a STATUS)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.sync import build_chain, height
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.devnet import free_ports
from fluxchain.node.home import NodeConfig, init_home
from fluxchain.store.chain import Chain
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

BLOCKS = 300


@pytest.mark.slow
def test_fresh_node_syncs_a_long_chain(tmp_path: Path) -> None:
    genesis = new_devnet_genesis(4, genesis_time_ms=1_000)
    p2p_a, p2p_b, api_a, api_b = free_ports(4)
    serving, fresh = tmp_path / "serving", tmp_path / "fresh"
    init_home(serving, genesis, NodeConfig(p2p_port=p2p_a, api_port=api_a, duties=False),
              derive_key(INSECURE_TEST_MNEMONIC, node_key_path(0)))  # fmt: skip
    init_home(fresh, genesis, NodeConfig(p2p_port=p2p_b, api_port=api_b, duties=False,
                                         persistent_peers=(f"127.0.0.1:{p2p_a}",)))  # fmt: skip
    build_chain(serving / "data", genesis, BLOCKS, 10)
    run = [sys.executable, "-P", "-m", "fluxchain.cli", "run", "--home"]
    procs = [subprocess.Popen([*run, str(home)], stderr=(home / "node.log").open("w"))
             for home in (serving, fresh)]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while height(api_b) < BLOCKS and time.monotonic() < deadline:
            time.sleep(0.2)
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
