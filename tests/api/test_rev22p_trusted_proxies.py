"""Review rev22p of the API's trusted reverse proxies (`api_trusted_proxies`,
api/forwarded.py): what an operator writes in that list must mean what it says. An entry
the node accepts but can never match leaves every proxied client in one group without a
word; an entry that silently trusts more than the operator named lets clients there name
any client (and so escape their group's bound, or push out another client's held txs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from fluxchain.api.forwarded import client_host
from fluxchain.cli import main
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import FluxError, Reason
from fluxchain.core.tx import Transfer
from fluxchain.node.home import NodeConfig
from fluxchain.node.origins import client_origin
from p2p.netgroup import parse_networks
from tests.api.test_api import api
from tests.support.chain import owner_key


def _trusted_list(entries: list[str]) -> str:
    return "api_trusted_proxies = [" + ", ".join(f'"{e}"' for e in entries) + "]\n"


@pytest.mark.parametrize(
    ("entries", "forwarded_for"),
    [
        # The proxy on this host (the test server's peer, 127.0.0.1) written as an
        # IPv4-mapped IPv6 address, as a dual-stack socket shows it.
        (["::ffff:127.0.0.1"], "81.2.69.142"),
        # A CDN in front of the host's proxy, its range copied from that proxy's log on a
        # dual-stack listener (nginx `listen [::]:443 ipv6only=off` logs ::ffff:a.b.c.d).
        (["127.0.0.0/8", "::ffff:104.16.0.0/109"], "81.2.69.142, ::ffff:104.16.1.2"),
    ],
)
def test_rev22p_a_proxy_listed_in_its_ipv4_mapped_form_is_trusted_or_refused(
    tmp_path: Path, entries: list[str], forwarded_for: str
) -> None:
    """The node reads every address IPv4-mapped as its IPv4 (a peer, a header entry), but
    not the networks of `api_trusted_proxies`: "::ffff:127.0.0.1" is accepted at load and
    never matches 127.0.0.1, so the proxy the operator named is not trusted and its
    clients stay one group, with no error anywhere. Either the config refuses such an
    entry (bad_field naming the key) or the proxy it names is trusted."""
    try:
        config = NodeConfig.from_toml(_trusted_list(entries))
    except FluxError as exc:
        assert exc.reason == Reason.BAD_FIELD and "api_trusted_proxies" in str(exc)
        return

    async def run() -> None:
        trusted = parse_networks(config.api_trusted_proxies)  # as Node.start does
        to = address_of(owner_key(6).public_key)
        async with api(tmp_path, trusted_proxies=trusted) as (client, service, b):
            tx = b.tx(owner_key(40), Transfer(to, 1))  # unfunded: held under its client
            answer = await client.post(
                "/txs", json={"tx": tx.raw.hex()}, headers={"X-Forwarded-For": forwarded_for}
            )
            assert (await answer.json())["status"] == "held"
            assert service.admission.parked_origin(tx.id) == client_origin("81.2.69.142"), (
                f"{entries} accepted, yet the client its proxies name is not the one counted"
            )

    asyncio.run(run())


def test_rev22p_an_interface_address_with_its_prefix_is_refused_not_widened(
    tmp_path: Path,
) -> None:
    """`ip addr` prints the proxy's address as "inet 203.0.113.7/24"; an operator who
    pastes that means the proxy, and the node silently trusts all 256 addresses of its
    subnet (a provider's shared /24: other customers' hosts), each of which may then name
    any client in X-Forwarded-For. A CIDR with host bits set is refused, in config.toml
    and at `init`, so the operator writes 203.0.113.7 or 203.0.113.0/24 as meant."""
    trusted = parse_networks(["203.0.113.7/24"])  # what the node trusts from that entry
    assert client_host("203.0.113.99", ["81.2.69.142"], trusted) == "81.2.69.142"  # a neighbour
    for entry in ("203.0.113.7/24", "2001:db8::7/64"):
        with pytest.raises(FluxError, match="api_trusted_proxies") as refused:
            NodeConfig.from_toml(_trusted_list([entry]))
        assert refused.value.reason == Reason.BAD_FIELD
    runner = CliRunner()
    genesis = tmp_path / "genesis.json"
    made = runner.invoke(main, ["genesis", "new", "-n", "1", "-o", str(genesis)])
    assert made.exit_code == 0, made.output
    home = tmp_path / "home"
    args = ["init", "--genesis", str(genesis), "--home", str(home)]
    inited = runner.invoke(main, [*args, "--api-trusted-proxy", "203.0.113.7/24"])
    assert inited.exit_code == 1 and "error [bad_field]" in inited.output, inited.output
    assert not home.exists()


@pytest.mark.parametrize("entry", ["0.0.0.0/0", "::/0"])
def test_rev22p_trusting_every_address_is_refused(entry: str) -> None:
    """The docs promise that the header of anyone who is not a trusted proxy is ignored
    ("any client can write it"). Listing 0.0.0.0/0 or ::/0 (nginx's well-known
    `set_real_ip_from 0.0.0.0/0` mistake) makes every client a trusted proxy: each names
    itself whatever group it likes, one per post, and no group bound holds. The config
    refuses it rather than quietly turning the defence off."""
    trusted = parse_networks([entry])
    direct = "81.2.69.142" if entry.startswith("0.") else "2a00:1450::1"
    assert client_host(direct, ["5.6.7.8"], trusted) == "5.6.7.8"  # anyone names anyone
    with pytest.raises(FluxError, match="api_trusted_proxies") as refused:
        NodeConfig.from_toml(_trusted_list([entry]))
    assert refused.value.reason == Reason.BAD_FIELD
