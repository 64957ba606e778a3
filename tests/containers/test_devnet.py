"""The container devnet as a user with Docker sees it (`make devnet-docker`).

Four validators and a non-validator node run from the fluxchain image, each in its own
container with its own volume, and reach each other by compose service name. A wallet on
the host talks to the APIs published on 127.0.0.1. A validator container killed with
`docker kill` leaves the chain running on the other three; `docker start` brings it back,
it syncs what it missed and takes its turn in consensus again.

Every test leaves all five nodes running, confirmed and healthy, so each can run alone
or in any order (tests/containers/test_apps.py: apps run by the agents as containers).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from fluxchain.core.params import COIN
from tests.containers.compose import NODES, VALIDATORS, ComposeDevnet, validator_key
from tests.containers.conftest import SETTLE_DEADLINE_S
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli

BLOCK_DEADLINE_S = 60.0
REJOIN_DEADLINE_S = 120.0


def test_every_node_confirms_the_same_blocks(devnet: ComposeDevnet) -> None:
    """All five nodes confirm new blocks, agree on every hash, and report healthy."""
    devnet.wait_settled(SETTLE_DEADLINE_S)
    start = max(devnet.height(s) for s in NODES)
    devnet.wait_height(NODES, start + 3, timeout=BLOCK_DEADLINE_S)
    devnet.assert_agree(NODES, start + 3)
    validators = devnet.get("node4", "/validators")["validators"]
    assert sorted(v["pubkey"] for v in validators) == sorted(validator_key(i) for i in range(4))
    # validators registered their service names: the checkers inside the network use them
    endpoints = {n["endpoint"] for n in devnet.get("node0", "/nodes")["nodes"]}
    assert endpoints == {f"{s}:26700" for s in VALIDATORS}
    wait_until(
        lambda: all(devnet.health(s) == "healthy" for s in NODES),
        BLOCK_DEADLINE_S,
        "every container's HEALTHCHECK to pass",
        nodes=devnet,
    )
    # the image carries the web dashboard (package data), served on the API address
    with urllib.request.urlopen(devnet.url("node0") + "/", timeout=5) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
    # the API is published on the host's loopback only
    for service in NODES:
        bindings = devnet.inspect(service)["NetworkSettings"]["Ports"]["26700/tcp"]
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"], bindings


def test_a_host_wallet_sends_a_transfer(devnet: ComposeDevnet, tmp_path: Path) -> None:
    """flux-wallet on the host sends FLUX through the non-validator node; a validator's
    API shows the new balance once the transfer is confirmed."""
    cli = Cli(tmp_path / "wallet", devnet.url("node4"))
    cli.import_devnet()
    to = cli.json("address", "account5")["address"]
    before = int(devnet.get("node0", f"/accounts/{to}")["balance"])
    cli.run("send", to, "2.5", "-a", "account4")  # waits for the confirm
    wait_until(
        lambda: int(devnet.get("node0", f"/accounts/{to}")["balance"]) == before + 5 * COIN // 2,
        BLOCK_DEADLINE_S,
        "node0 to show the transfer",
        nodes=devnet,
    )


def test_a_killed_validator_leaves_the_chain_running_and_rejoins(devnet: ComposeDevnet) -> None:
    """`docker kill node3`: the other three (3/4 of the power, > 2/3) keep confirming.
    `docker start node3`: it syncs the blocks it missed and votes or proposes again."""
    devnet.wait_settled(SETTLE_DEADLINE_S)  # losing node3 must leave > 2/3 of the power
    victim, others = "node3", [s for s in NODES if s != "node3"]
    devnet.kill(victim)
    assert not devnet.is_running(victim)
    down_at = max(devnet.height(s) for s in others)
    devnet.wait_height(others, down_at + 5, timeout=BLOCK_DEADLINE_S)

    devnet.start(victim)
    head = max(devnet.height(s) for s in others)
    devnet.wait_height([victim], head, timeout=REJOIN_DEADLINE_S)
    rejoined_at = devnet.height(victim)
    key = validator_key(3)

    next_height = rejoined_at + 1

    def took_part_since_restart() -> bool:
        nonlocal next_height
        while next_height <= devnet.height("node0"):
            block = devnet.block("node0", next_height)
            if block is None or block["commit"] is None:
                return False  # not committed yet: look again at the next poll
            if block["header"]["proposer"] == key or key in block["commit"]["signers"]:
                return True
            next_height += 1
        return False

    wait_until(
        took_part_since_restart,
        REJOIN_DEADLINE_S,
        "node3 to propose or sign a block again",
        nodes=devnet,
    )
    final = min(devnet.height(s) for s in NODES)
    devnet.assert_agree(NODES, final)
    # down while it was dead, it confirms itself again and is healthy (its agent reports)
    wait_until(
        lambda: node_status(devnet, 3) == "confirmed" and devnet.health(victim) == "healthy",
        REJOIN_DEADLINE_S,
        "node3 confirmed on chain and healthy again",
        nodes=devnet,
    )


def node_status(devnet: ComposeDevnet, index: int) -> str:
    """Validator `index`'s status on chain, as the non-validator node sees it."""
    key = validator_key(index)
    nodes = devnet.get("node4", "/nodes")["nodes"]
    return str(next(n["status"] for n in nodes if n["node_key"] == key))
