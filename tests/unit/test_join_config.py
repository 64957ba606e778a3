"""`fluxchain init --seeds … --p2p-advertise …`: what a node joining a network is given."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from fluxchain.cli import main
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import FluxError
from fluxchain.node.home import Home, NodeConfig


def _genesis(runner: CliRunner, tmp_path: Path) -> Path:
    out = tmp_path / "genesis.json"
    made = runner.invoke(main, ["genesis", "new", "-n", "1", "-o", str(out)])
    assert made.exit_code == 0, made.output
    return out


def test_init_with_seeds_and_advertised_address_writes_them(tmp_path: Path) -> None:
    runner = CliRunner()
    genesis = _genesis(runner, tmp_path)
    home = tmp_path / "joiner"
    seeds = "198.51.100.2:26600, seed.example:26600"
    args = ["init", "--home", str(home), "--genesis", str(genesis), "--p2p-host", "0.0.0.0",
            "--p2p-advertise", "203.0.113.7:26600", "--seeds", seeds]  # fmt: skip
    inited = runner.invoke(main, args)
    assert inited.exit_code == 0, inited.output
    config = Home(home).config()
    assert config.seeds == ("198.51.100.2:26600", "seed.example:26600")
    assert config.p2p_advertise == "203.0.113.7:26600"
    assert config.persistent_peers == ()


def test_init_refuses_a_seed_that_is_not_host_port_and_writes_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    genesis = _genesis(runner, tmp_path)
    for option, value in (("--seeds", "198.51.100.2"), ("--p2p-advertise", "host:99999")):
        home = tmp_path / option.strip("-")
        refused = runner.invoke(
            main, ["init", "--home", str(home), "--genesis", str(genesis), option, value]
        )
        assert refused.exit_code == 1 and "error [bad_field]" in refused.output, refused.output
        assert "is not host:port" in refused.output
        assert not home.exists()  # no half-made home, no node key written


def test_init_takes_a_seed_and_a_peer_by_their_node_key(tmp_path: Path) -> None:
    """`node_key_hex@host:port` (issue 22 review): the node accepts only that key at the
    address; a key that is not a secp256k1 point is a typo, refused before anything is
    written."""
    runner = CliRunner()
    genesis = _genesis(runner, tmp_path)
    seed_key = SigningKey.generate().public_key.hex()
    peer_key = SigningKey.generate().public_key.hex()
    home = tmp_path / "joiner"
    args = ["init", "--home", str(home), "--genesis", str(genesis),
            "--seeds", f"{seed_key}@198.51.100.2:26600",
            "--peer", f"{peer_key}@10.0.0.2:26600"]  # fmt: skip
    inited = runner.invoke(main, args)
    assert inited.exit_code == 0, inited.output
    config = Home(home).config()
    assert config.seeds == (f"{seed_key}@198.51.100.2:26600",)
    assert config.persistent_peers == (f"{peer_key}@10.0.0.2:26600",)
    wrong = tmp_path / "wrong"
    refused = runner.invoke(
        main,
        ["init", "--home", str(wrong), "--genesis", str(genesis),
         "--seeds", f"{seed_key[:-2]}@198.51.100.2:26600"],
    )  # fmt: skip
    assert refused.exit_code == 1 and "error [bad_field]" in refused.output, refused.output
    assert "is not a node key" in refused.output
    assert not wrong.exists()


def test_a_config_with_a_bad_seed_is_refused_at_start() -> None:
    good = NodeConfig(seeds=("10.65.0.2:26600",), p2p_advertise="10.70.0.2:26600")
    assert NodeConfig.from_toml(good.to_toml()) == good
    bad = good.to_toml().replace('"10.65.0.2:26600"', '"10.65.0.2:"')
    try:
        NodeConfig.from_toml(bad)
    except FluxError as exc:
        assert exc.reason == "bad_field" and "seeds" in exc.message
    else:
        raise AssertionError("a seed without a port was accepted")


def test_init_refuses_a_peer_address_with_an_ipv6_zone(tmp_path: Path) -> None:
    """A zone names a link of this host (fix26p2): no peer address, in config either."""
    runner = CliRunner()
    genesis = _genesis(runner, tmp_path)
    for option in ("--seeds", "--p2p-advertise"):
        home = tmp_path / option.strip("-")
        args = ["init", "--home", str(home), "--genesis", str(genesis)]
        refused = runner.invoke(main, [*args, option, "[fe80::1%eth0]:26600"])
        assert refused.exit_code == 1 and "error [bad_field]" in refused.output, refused.output
        assert "IPv6 zone" in refused.output
        assert not (home / "config.toml").exists()
