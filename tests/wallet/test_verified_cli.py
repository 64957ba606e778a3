"""What a wallet user sees of verification: it is on by default, needs a root of trust
(`flux-wallet trust`), names the node whose answer failed, goes on to the next node it
knows, and `--no-verify` reads as before."""

from __future__ import annotations

import json
import urllib.request

from tests.support.ports import closed_port
from tests.wallet.conftest import Cli, DevNode, trusting


def test_verification_needs_a_root_of_trust_and_says_how_to_give_one(devnode: DevNode) -> None:
    cli = Cli(devnode.home.parent / "no-anchor-wallet", devnode.url, {"FLUX_TRUST_GENESIS": ""})
    cli.import_devnet()
    line = cli.error_line("balance", "account4", expect=1)
    assert line.startswith("error [no_trust_anchor]:") and "flux-wallet trust" in line, line
    unverified = cli.json("--no-verify", "balance", "account4")
    assert unverified["balance"] > 0


def test_trust_from_the_genesis_file_or_the_node_then_reads_verify(devnode: DevNode) -> None:
    genesis = devnode.home / "genesis.json"
    cli = Cli(devnode.home.parent / "anchored-wallet", devnode.url, trusting(genesis))
    cli.import_devnet()
    shown = cli.json("trust", "--genesis", str(genesis))
    assert shown["anchor"]["height"] == 0 and shown["chain_id"] == "flux-devnet"
    assert cli.json("balance", "account4")["balance"] > 0
    after = cli.json("trust")
    assert after["latest"]["height"] >= 1  # the header the balance was proven against
    again = cli.run("trust", "--from-node")
    served = json.loads((devnode.home / "genesis.json").read_text())
    assert served["chain_id"] in again.stdout and "compare this hash" in again.stdout


def test_a_dead_node_first_in_the_list_is_passed_over(devnode: DevNode) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    cli = Cli(
        devnode.home.parent / "failover-wallet",
        f"{dead},{devnode.url}",
        trusting(devnode.home / "genesis.json"),
    )
    cli.import_devnet()
    assert cli.json("balance", "account4")["balance"] > 0
    line = cli.error_line("--node", dead, "balance", "account4", expect=3)
    assert line.startswith("error [node_unreachable]:"), line


def test_trust_a_header_by_its_hash_then_reads_verify_from_it(devnode: DevNode) -> None:
    with urllib.request.urlopen(devnode.url + "/headers/1", timeout=10) as response:
        first = json.loads(response.read())
    cli = Cli(devnode.home.parent / "header-wallet", devnode.url, {"FLUX_TRUST_GENESIS": ""})
    cli.extra_env["FLUX_TRUST_PERIOD"] = "3600"
    cli.import_devnet()
    shown = cli.json("trust", "--header", first["hash"])
    assert shown["anchor"] == {
        "height": 1,
        "hash": first["hash"],
        "time_ms": first["header"]["time_ms"],
    }
    assert cli.json("balance", "account4")["balance"] > 0
    line = cli.error_line("trust", "--header", "00" * 32, expect=1)
    assert line.startswith("error [not_found]:"), line
