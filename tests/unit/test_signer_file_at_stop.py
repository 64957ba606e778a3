"""Review of the signer record's store (rev11): what a node's stop leaves open."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from consensus.signer import STATE_FILE, FileSignerStore
from fluxchain.node.home import NodeConfig, init_home
from fluxchain.node.node import Node
from tests.support.chain import devnet_genesis, node_hot_key
from tests.support.wait import wait_until_async


def _open_paths() -> list[str]:
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed while listed (the listing's own fd)
    return paths


def test_a_stopped_node_still_holds_its_signer_record_file_open(tmp_path: Path) -> None:
    """FileSignerStore keeps the record's file open from its second save on, and `close`
    says it is for the node's stop, but `Node.stop` never calls it: every node stopped in
    a process (the devnet, tests, an embedding) leaves a descriptor of its signer file
    open. A stopped node must hold nothing of its home open."""
    home = init_home(
        tmp_path / "home",
        devnet_genesis(validators=1),
        NodeConfig(moniker="v0", api_port=0, p2p_port=0),
        node_hot_key(0),  # the one validator: it commits alone, signing at every step
    )
    node = Node(home)
    record = str(home.path / STATE_FILE)

    async def scenario() -> None:
        running = asyncio.create_task(node.run())
        try:

            def signed_twice() -> bool:
                guard = getattr(node, "guard", None)
                store = getattr(guard, "_store", None)
                return isinstance(store, FileSignerStore) and store._fd >= 0

            await wait_until_async(signed_twice, 30, "the validator's second signature")
            assert record in _open_paths()
        finally:
            node.request_stop()
            await asyncio.wait_for(running, 30)  # a normal stop: no error raised

    asyncio.run(scenario())
    assert record not in _open_paths(), "the stopped node still holds its signer file open"
