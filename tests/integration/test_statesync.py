"""A new node joins a running devnet by state sync: it takes the state at a trusted
height from its peers' snapshots instead of replaying from genesis, then follows the head
like any node (docs/storage.md "Snapshots and state sync")."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxchain.node.home import Home
from tests.integration.harness import Devnet
from tests.support.ports import node_ports
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
        # A replay from below it is refused so before the upgrade (late review of
        # session 24: it was upgraded, then failed on the missing block).
        code, body = _get_status(devnet, fresh, "/ws?from=1")
        assert (code, body["error"]["reason"]) == (410, "pruned"), body
        text = log.read_text()
        assert "block committed height=1 " not in text  # nothing was replayed
        assert "banned" not in text, text[-3000:]
    finally:
        devnet.close()


@pytest.mark.slow
def test_a_node_syncing_from_genesis_next_to_a_state_synced_one_bans_nobody(
    tmp_path: Path,
) -> None:
    """A node joining from genesis whose first (only configured) peer was state-synced:
    that peer holds no block below its base. Its STATUS names the base, so it is never
    asked below it (were it asked, its answer would be a "pruned" STATUS ahead of an empty
    answer, no fault); the joining node catches up from the validators it learns of, and
    nobody records a sync fault or bans anyone."""
    devnet = Devnet(tmp_path, validators=4)
    try:
        for home in devnet.homes:
            _configure(home, snapshot_interval=INTERVAL, snapshot_keep=100)
        devnet.start_all()
        trusted = 2 * INTERVAL
        devnet.wait_height([0, 1, 2, 3], trusted + 2, timeout=60)
        trusted_hash = devnet.block_hash(0, trusted)
        assert trusted_hash is not None
        synced = devnet.add_node()
        _configure(devnet.homes[synced], trust_height=trusted, trust_hash=trusted_hash)
        devnet.start(synced)
        synced_log = devnet.homes[synced] / "node.log"
        wait_until(lambda: "state synced" in synced_log.read_text(), 60, "the state sync",
                   nodes=devnet)  # fmt: skip
        devnet.wait_height([synced], trusted + 4, timeout=60)
        process = devnet.procs[synced]
        assert process is not None
        synced_p2p = node_ports(devnet.homes[synced], process, synced_log).p2p
        # The validators freeze: the joining node's only live peer is the synced one, which
        # claims the head; block sync runs with it alone (the old code asked it for 1.., got
        # an empty answer, a `sync_empty` fault, and a second one banned it).
        validators = [0, 1, 2, 3]
        for i in validators:
            devnet.signal(i, signal.SIGSTOP)
        try:
            joiner = devnet.add_node()
            _configure(devnet.homes[joiner], persistent_peers=(f"127.0.0.1:{synced_p2p}",))
            devnet.start(joiner)
            wait_until(lambda: _syncing(devnet, joiner), 60, "the joiner to see it is behind",
                       nodes=devnet)  # fmt: skip
            # Its sync step that found the synced peer's claim has sent what it would ask.
            target = devnet.height(synced)
        finally:
            for i in validators:
                devnet.signal(i, signal.SIGCONT)
        devnet.wait_height([joiner], target, timeout=120)
        devnet.assert_agree([0, joiner], target)
        logs = {i: (devnet.homes[i] / "node.log").read_text() for i in range(len(devnet.homes))}
        for i, text in logs.items():
            assert "banned" not in text, f"node{i}: {text[-3000:]}"
        joiner_log = logs[joiner]
        assert "sync fault" not in joiner_log, joiner_log[-3000:]
    finally:
        devnet.close()


def _syncing(devnet: Devnet, i: int) -> bool:
    """Node i answers /status and says it is behind its best peer."""
    status = devnet.try_get(i, "/status")
    return bool(status and status.get("syncing"))


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
