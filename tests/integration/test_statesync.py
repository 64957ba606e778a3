"""A new node joins a running devnet by state sync: it takes the state at a trusted
height from its peers' snapshots instead of replaying from genesis, then follows the head
like any node (docs/storage.md "Snapshots and state sync")."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxchain.node.home import Home
from tests.integration.harness import Devnet
from tests.support.wait import wait_until

INTERVAL = 5


@pytest.mark.slow
def test_a_new_node_state_syncs_from_a_devnet_and_follows_the_head(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path, validators=4)
    try:
        for home in devnet.homes:  # snapshots every INTERVAL blocks, all kept for the test
            _configure(home, snapshot_interval=INTERVAL, snapshot_keep=100)
        devnet.start_all()
        trusted = 2 * INTERVAL
        devnet.wait_height([0, 1, 2, 3], trusted + 2, timeout=60)
        trusted_hash = devnet.block_hash(0, trusted)
        assert trusted_hash is not None
        fresh = devnet.add_node()
        _configure(devnet.homes[fresh], trust_height=trusted, trust_hash=trusted_hash)
        devnet.start(fresh)
        log = devnet.homes[fresh] / "node.log"
        wait_until(lambda: "state synced" in log.read_text(), 60, "the state sync", nodes=devnet)
        target = devnet.height(0) + 3
        devnet.wait_height([fresh], target, timeout=60)
        # It follows the same chain from the trusted block on…
        for height in range(trusted, target + 1):
            wait_until(  # an API call may time out on a loaded machine: ask again
                lambda h=height: _agree(devnet, fresh, h),  # type: ignore[misc]
                15,
                f"block {height} on the new node as on node 0",
                nodes=devnet,
            )
        # …holds the same state (an account read through its verified tree)…
        assert devnet.get(fresh, "/status")["height"] >= target
        # …and says plainly that it holds no block below the trusted one.
        code, body = _get_status(devnet, fresh, f"/blocks/{trusted - 1}")
        assert (code, body["error"]["reason"]) == (410, "pruned"), body
        text = log.read_text()
        assert "block committed height=1 " not in text  # nothing was replayed
        assert "banned" not in text, text[-3000:]
    finally:
        devnet.close()


def _agree(devnet: Devnet, i: int, height: int) -> bool:
    """Node i holds the same block at `height` as node 0 (False while either is unknown)."""
    theirs = devnet.block_hash(0, height)
    return theirs is not None and devnet.block_hash(i, height) == theirs


def _configure(home: Path, **changes: object) -> None:
    config = Home(home).config()
    Home(home).write_config(replace(config, **changes))  # type: ignore[arg-type]


def _get_status(devnet: Devnet, i: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(devnet.url(i) + path, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
