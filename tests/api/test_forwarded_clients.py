"""An API behind reverse proxies the operator trusts (config `api_trusted_proxies`): the
client a trusted proxy names in X-Forwarded-For is the one its txs are counted under
(api/forwarded.py), so clients behind one proxy are told apart as they are without it;
the header from anyone else names nobody."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from fluxchain.api.forwarded import MAX_HOPS, client_host, parse_proxies
from fluxchain.cli import main
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import FluxError
from fluxchain.core.tx import Transfer
from fluxchain.node.home import Home, NodeConfig
from fluxchain.node.origins import LOCAL, client_origin
from tests.api.test_api import api
from tests.support.chain import owner_key

PROXIES = parse_proxies(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # No proxy trusted, or the socket is not one: the header is anyone's words.
        ("81.2.69.142", ["9.9.9.9"], "81.2.69.142"),
        ("10.0.0.2", [], "10.0.0.2"),  # a trusted proxy that named nobody is the client
        ("10.0.0.2", ["81.2.69.142"], "81.2.69.142"),
        # The client wrote "1.1.1.1" itself; the right-most untrusted entry is its address.
        ("10.0.0.2", ["1.1.1.1, 81.2.69.142, 10.0.0.7"], "81.2.69.142"),
        ("10.0.0.2", ["1.1.1.1", "81.2.69.142", "10.0.0.7"], "81.2.69.142"),  # header lines
        ("10.0.0.2", ["10.1.1.1, 10.0.0.7"], "10.1.1.1"),  # every hop trusted: the first
        ("10.0.0.2", ["81.2.69.142:4711"], "81.2.69.142"),  # with a port
        ("10.0.0.2", ["[2a00:1450::1]:443"], "2a00:1450::1"),
        ("fd00::2", ["2a00:1450::1"], "2a00:1450::1"),
        ("::ffff:10.0.0.2", ["81.2.69.142"], "81.2.69.142"),  # IPv4-mapped proxy
        # Not an address: nothing left of it is known, the last true hop is the client.
        ("10.0.0.2", ["81.2.69.142, unknown"], "10.0.0.2"),
        ("10.0.0.2", ["81.2.69.142, unknown, 10.0.0.9"], "10.0.0.9"),
        ("10.0.0.2", ["81.2.69.142, [::1"], "10.0.0.2"),
        ("10.0.0.2", [""], "10.0.0.2"),
        (None, ["81.2.69.142"], None),  # not a TCP socket
    ],
)
def test_forwarded_client_is_the_right_most_untrusted_hop(
    peer: str | None, headers: list[str], client: str | None
) -> None:
    assert client_host(peer, headers, PROXIES) == client
    assert client_host(peer, headers, ()) == peer  # no proxy trusted: never the header


def test_forwarded_a_long_chain_names_no_client_beyond_its_last_hops() -> None:
    """A header of thousands of trusted-looking entries costs MAX_HOPS parses, and the
    client named at its far end is not believed."""
    chain = ["81.2.69.142"] + ["10.0.0.1"] * 5_000
    assert client_host("10.0.0.2", [", ".join(chain)], PROXIES) == "10.0.0.1"
    near = ["81.2.69.142"] + ["10.0.0.1"] * (MAX_HOPS - 1)
    assert client_host("10.0.0.2", [", ".join(near)], PROXIES) == "81.2.69.142"


def test_forwarded_config_refuses_a_proxy_that_is_not_a_network() -> None:
    with pytest.raises(FluxError, match="api_trusted_proxies"):
        NodeConfig.from_toml('api_trusted_proxies = ["not-a-network"]\n')
    config = NodeConfig(api_trusted_proxies=("127.0.0.1/32", "fd00::/8"))
    assert NodeConfig.from_toml(config.to_toml()) == config


def test_forwarded_clients_behind_a_trusted_proxy_are_counted_apart(tmp_path: Path) -> None:
    """The node's API behind a proxy on its own host (127.0.0.1, trusted): a tx is held
    under the group of the client the proxy names, not the proxy's one group; without the
    trust the same header names nobody and every client is the proxy's."""

    async def main() -> None:
        to = address_of(owner_key(6).public_key)
        trusted = parse_proxies(["127.0.0.0/8"])
        async with api(tmp_path / "trusted", trusted_proxies=trusted) as (client, service, b):
            tx = b.tx(owner_key(40), Transfer(to, 1))  # unfunded: held, waiting for funds
            answer = await client.post(
                "/txs", json={"tx": tx.raw.hex()}, headers={"X-Forwarded-For": "81.2.69.142"}
            )
            assert (await answer.json())["status"] == "held"
            assert service.admission.parked_origin(tx.id) == client_origin("81.2.69.142")
            batch = [b.tx(owner_key(41 + i), Transfer(to, 1)) for i in range(2)]
            answer = await client.post(
                "/txs/batch",
                json={"txs": [t.raw.hex() for t in batch]},
                headers={"X-Forwarded-For": "5.6.7.8, 2a00:1450::1"},
            )
            assert [r["status"] for r in (await answer.json())["results"]] == ["held"] * 2
            for t in batch:
                assert service.admission.parked_origin(t.id) == client_origin("2a00:1450::1")
        async with api(tmp_path / "direct") as (client, service, b):
            tx = b.tx(owner_key(40), Transfer(to, 1))
            answer = await client.post(
                "/txs", json={"tx": tx.raw.hex()}, headers={"X-Forwarded-For": "81.2.69.142"}
            )
            assert (await answer.json())["status"] == "held"
            assert service.admission.parked_origin(tx.id) == LOCAL

    asyncio.run(main())


def test_forwarded_init_writes_the_trusted_proxies_and_refuses_a_bad_one(
    tmp_path: Path,
) -> None:
    """`fluxchain init --api-trusted-proxy CIDR` (repeatable) writes them to config.toml;
    one that is not a network is `bad_field`, and no home is made."""
    runner = CliRunner()
    genesis = tmp_path / "genesis.json"
    made = runner.invoke(main, ["genesis", "new", "-n", "1", "-o", str(genesis)])
    assert made.exit_code == 0, made.output
    base = ["init", "--genesis", str(genesis)]
    home = tmp_path / "proxied"
    proxies = ["--api-trusted-proxy", "127.0.0.1/32", "--api-trusted-proxy", "fd00::/8"]
    inited = runner.invoke(main, [*base, "--home", str(home), *proxies])
    assert inited.exit_code == 0, inited.output
    assert Home(home).config().api_trusted_proxies == ("127.0.0.1/32", "fd00::/8")
    bad = tmp_path / "bad"
    refused = runner.invoke(main, [*base, "--home", str(bad), "--api-trusted-proxy", "lan"])
    assert refused.exit_code == 1 and "error [bad_field]" in refused.output, refused.output
    assert "api_trusted_proxies" in refused.output
    assert not bad.exists()
