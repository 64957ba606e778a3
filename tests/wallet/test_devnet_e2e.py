"""The wallet against the real multi-process devnet (4 validators, BFT consensus, p2p):
a user sends FLUX and deploys an app, and sees it placed on 3 nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxchain.core.params import COIN
from tests.integration.harness import Devnet
from tests.wallet.conftest import Cli
from tests.wallet.test_e2e import FEE, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    net = Devnet(tmp_path / "net")
    net.start_all()
    try:
        net.wait_height([0, 1, 2, 3], 2, timeout=40)
        yield net
    finally:
        net.close()


def test_send_and_deploy_on_a_real_devnet(devnet: Devnet, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "wallet", devnet.url(1))  # any node: txs gossip to the proposer
    cli.import_devnet()
    to = cli.json("address", "account5")["address"]
    before = cli.balance("account5")
    cli.run("send", to, "2.5", "-a", "account4")
    assert cli.balance("account5") == before + 5 * COIN // 2
    spent = cli.balance("account6")
    proc = cli.run(
        "app", "register", str(write_spec(tmp_path / "app.yaml", "web1")), "-a", "account6"
    )
    assert "3 of 3 instances placed" in proc.stdout, proc.stdout
    status = cli.json("app", "status", "web1")
    assert status["placed"] == 3
    # every node agrees on where it runs
    hosts = {i["node_id"] for i in status["instances"]}
    for node in range(4):
        seen = devnet.get(node, "/apps/web1")
        assert {i["node_id"] for i in seen["instances"]} == hosts
    assert cli.balance("account6") < spent - FEE
