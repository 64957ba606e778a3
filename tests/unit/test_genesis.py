"""Genesis files: the committed ones match the tool, bad documents are refused clearly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fluxchain.cli import build_agent, main
from fluxchain.core.errors import GenesisError, Reason
from fluxchain.core.genesis import Genesis, genesis_supply
from fluxchain.core.params import COIN, Params
from fluxchain.core.records import NodeStatus
from fluxchain.core.supply import total_supply
from fluxchain.genesis_builder import mainnet_params, new_devnet_genesis
from fluxchain.node.home import Home
from tests.support.chain import open_chain

GENESIS_DIR = Path(__file__).resolve().parents[2] / "genesis"


def test_committed_devnet_genesis_is_what_the_tool_makes() -> None:
    committed = Genesis.load(GENESIS_DIR / "devnet.json")
    assert committed == new_devnet_genesis(4)
    assert committed.insecure_dev_mnemonic.startswith("abandon abandon")
    example = Genesis.load(GENESIS_DIR / "testnet-example.json")
    assert example.params == mainnet_params("flux-testnet-example", "flux")


def test_json_round_trip_and_hash_stability() -> None:
    g = new_devnet_genesis(3)
    again = Genesis.from_json(json.loads(json.dumps(g.to_json())))
    assert again == g and again.hash() == g.hash()
    assert new_devnet_genesis(3, chain_id="other").hash() != g.hash()


def test_genesis_state(tmp_path: Path) -> None:
    g = new_devnet_genesis(4)
    chain = open_chain(tmp_path / "h", g)
    assert chain.height == 0
    assert len(chain.validators().validators) == 4
    assert total_supply(chain.state) == genesis_supply(g)
    statuses = {n.status for _, n in chain.state.items(b"n")}
    assert statuses == {NodeStatus.CONFIRMED}
    chain.close()
    chain = open_chain(tmp_path / "h", g)  # reopening an untouched home changes nothing
    assert chain.height == 0 and total_supply(chain.state) == genesis_supply(g)
    chain.close()
    with pytest.raises(Exception, match="another chain"):
        open_chain(tmp_path / "h", new_devnet_genesis(4, chain_id="other"))


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = new_devnet_genesis(2).to_json()
    return doc


def _set_chain_id(doc: dict[str, Any], chain_id: str) -> None:
    doc["chain_id"] = doc["params"]["chain_id"] = chain_id


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("params"), "missing key 'params'"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d["params"].update(min_fee=-1), "params.min_fee"),
        (lambda d: d["params"].update(min_fee=1.5), "params.min_fee"),
        (lambda d: d["params"].update(epoch_length=0), "epoch_length must be positive"),
        (lambda d: d["params"]["stratus"].update(reward=100 * COIN), "exceed the block subsidy"),
        (lambda d: d.update(chain_id="x"), "chain_id differs"),
        (lambda d: d["balances"][0].update(address="flux1qqqq"), "bech32"),
        (lambda d: d["balances"].append(dict(d["balances"][0])), "appears twice"),
        # each amount in range, their sum not: a payment could overflow a balance
        (lambda d: d["balances"][0].update(amount=2**63 - 1), "genesis supply"),
        (lambda d: d["nodes"][0].update(node_key="02" + "00" * 32), "not a public key"),
        (lambda d: d["nodes"][0].update(country="Germany"), "country"),
        (lambda d: d["nodes"][0].update(tier="giant"), "giant"),
        (lambda d: d.update(nodes=[]), "at least one validator"),
        # red23d #4: hardware beyond the tier's caps, and a cap below its minimum
        (lambda d: d["nodes"][0]["hardware"].update(cores=17), "cores 17 > 16"),
        (lambda d: d["params"]["nimbus"].update(max_disk_gb=0), "params.nimbus: a max_*"),
        (lambda d: d.update(genesis_time_ms="soon"), "genesis_time_ms"),
        (lambda d: d["params"].update(max_time_advance_ms=0), "max_time_advance_ms"),
        (lambda d: d["params"].update(max_clock_drift_ms=2**64), "max_clock_drift_ms"),
        (lambda d: d["params"].update(max_block_txs=100_001), "max_block_txs"),
        # more targets per checker than one attestation's 64 reports could hold
        (lambda d: d["params"].update(checkers_per_node=33), "checkers_per_node"),
        # 17 four-byte characters: 68 bytes, beyond a chain id's 64
        (lambda d: _set_chain_id(d, "\U0001d509" * 17), "longer than 64 bytes"),
        # hard26 1: params whose epochs hold no attestation (nodes.max_active is 0): no
        # node could ever confirm, the genesis nodes never attest (one-tx blocks: half a tx)
        (lambda d: d["params"].update(epoch_length=1), "max_active is 0"),
        (lambda d: d["params"].update(epoch_length=2, max_block_txs=1), "max_active is 0"),
        # room for one node's attestation, two genesis nodes active from the start
        (lambda d: d["params"].update(epoch_length=2, max_block_txs=2), "2 genesis nodes"),
        # rev26h 1: a tx cap below an attestation of a checker's most targets (2 x 3)
        (lambda d: d["params"].update(max_tx_bytes=200), "params.max_tx_bytes 200"),
        # late26 4: epoch 0's set is the genesis one, uncapped; its commits must fit the
        # commit `block.fixed_bytes` prices (max_validators signatures)
        (lambda d: d["params"].update(max_validators=1), "2 genesis validators"),
    ],
)
def test_bad_genesis_is_refused_with_a_named_field(mutate: Any, message: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(GenesisError) as err:
        Genesis.from_json(doc)
    assert err.value.reason is Reason.BAD_GENESIS
    assert message in err.value.message


def test_cli_genesis_new_and_show(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "g.json"
    result = runner.invoke(main, ["genesis", "new", "-n", "5", "--chain-id", "t-1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 validators" in result.output
    shown = runner.invoke(main, ["genesis", "show", "--json", str(out)])
    assert shown.exit_code == 0
    summary = json.loads(shown.output)
    assert summary["chain_id"] == "t-1" and summary["validators"] == 5
    assert summary["hash"] == Genesis.load(out).hash().hex()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = runner.invoke(main, ["genesis", "show", str(bad)])
    assert refused.exit_code == 1
    assert "bad_genesis" in refused.output
    wrong_words = runner.invoke(
        main, ["genesis", "new", "--mnemonic", "not a mnemonic", "-o", str(out)]
    )
    assert wrong_words.exit_code == 1 and "checksum" in wrong_words.output


def test_cli_endpoints_and_dev_keys_for_a_container_devnet(tmp_path: Path) -> None:
    """What the compose devnet's init runs: service-name endpoints, devnet node keys,
    listeners on every interface, peers by service name."""
    runner = CliRunner()
    out = tmp_path / "g.json"
    endpoints = ["--endpoint", "node0:26700", "--endpoint", "node1:26700"]
    made = runner.invoke(main, ["genesis", "new", "-n", "2", *endpoints, "-o", str(out)])
    assert made.exit_code == 0, made.output
    doc = Genesis.load(out)
    assert [n.endpoint for n in doc.nodes] == ["node0:26700", "node1:26700"]
    too_few = runner.invoke(main, ["genesis", "new", "-n", "3", *endpoints, "-o", str(out)])
    assert too_few.exit_code == 1 and "2 endpoints given for 3 validators" in too_few.output
    not_an_endpoint = runner.invoke(
        main, ["genesis", "new", "-n", "1", "--endpoint", "x", "-o", "-"]
    )
    assert not_an_endpoint.exit_code == 1 and "is not host:port" in not_an_endpoint.output

    home = tmp_path / "node1"
    args = ["init", "--home", str(home), "--genesis", str(out), "--dev-key", "1"]
    listen = ["--p2p-host", "0.0.0.0", "--api-host", "0.0.0.0", "--peer", "node0:26600"]
    agent = ["--agent", "--agent-runtime", "docker", "--agent-bind", "127.0.1.2"]
    inited = runner.invoke(main, [*args, *listen, *agent, "--log-level", "info"])
    assert inited.exit_code == 0, inited.output
    assert doc.nodes[1].node_key.hex() in inited.output
    config = (home / "config.toml").read_text()
    assert 'api_host = "0.0.0.0"' in config and 'p2p_host = "0.0.0.0"' in config
    assert 'persistent_peers = ["node0:26600"]' in config and 'log_level = "info"' in config
    assert "agent = true" in config and 'agent_bind = "127.0.1.2"' in config
    assert len((home / "agent_token").read_text()) == 64  # written before node and agent start

    # the agent of another container reaches its node by service name
    assert build_agent(Home(home), Home(home).config(), "process", None).api_url == (
        "http://127.0.0.1:26700"
    )
    url = "http://node1:26700"
    assert build_agent(Home(home), Home(home).config(), "process", None, url).api_url == url

    both = runner.invoke(main, [*args, "--key", "11" * 32])
    assert both.exit_code == 1 and "not both" in both.output
    secret = dataclasses.replace(doc, insecure_dev_mnemonic="")
    secret.save(tmp_path / "secret.json")
    refused = runner.invoke(
        main,
        [
            "init",
            "--home",
            str(tmp_path / "n"),
            "--genesis",
            str(tmp_path / "secret.json"),
            "--dev-key",
            "0",
        ],
    )
    assert refused.exit_code == 1 and "insecure_dev_mnemonic" in refused.output


def test_params_with_no_room_for_attestations_are_refused_by_builder_and_init(
    tmp_path: Path,
) -> None:
    """hard26 1: what an operator sees making or joining a chain whose epochs hold no
    attestation (epoch_length 1: no block after an epoch's first): `genesis new` and
    `init` refuse it, `bad_genesis`, naming the cap, instead of a chain on which every
    NODE_CONFIRM is refused `network_full` and no genesis node's uptime is ever attested."""
    no_room = dataclasses.replace(mainnet_params("t-1"), epoch_length=1)
    with pytest.raises(GenesisError) as err:
        new_devnet_genesis(2, params=no_room)
    assert err.value.reason is Reason.BAD_GENESIS and "max_active is 0" in err.value.message
    doc = _doc()
    doc["params"]["epoch_length"] = 1
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    runner = CliRunner()
    inited = runner.invoke(main, ["init", "--home", str(tmp_path / "n"), "--genesis", str(path)])
    assert inited.exit_code == 1
    assert "error [bad_genesis]" in inited.output and "max_active is 0" in inited.output
    assert not (tmp_path / "n" / "config.toml").exists()


def test_every_param_is_documented() -> None:
    text = (GENESIS_DIR.parent / "docs" / "params.md").read_text()
    missing = [f.name for f in dataclasses.fields(Params) if f"`{f.name}`" not in text]
    assert not missing, f"docs/params.md lacks {missing}"
