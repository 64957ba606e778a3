"""Brief api25 4: known clients (`api_trusted_clients`): an explorer or a gateway behind
NAT shares its address group's budget with every other client of that /16 (or /32 of
IPv6). Listed, each is judged by its own address with its own budget; it is no bypass:
the node-wide budget binds it, an unlisted neighbour keeps the group's budget, and a
header names a client only through a proxy the config trusts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.api.budget import (
    RATE_LIMITED,
    TRUSTED,
    ReadBudget,
    ReadLimits,
    parse_trusted_clients,
)
from fluxchain.api.queries import ApiError
from fluxchain.core.errors import FluxError, Reason
from fluxchain.node.home import NodeConfig
from fluxchain.node.origins import client_origin
from p2p.netgroup import parse_networks
from tests.api.test_api import api

LOOPBACK_PROXY = parse_networks(["127.0.0.0/8"])
GATEWAY = "81.2.69.142"  # a known client, listed
NEIGHBOUR = "81.2.200.9"  # its address group (81.2.0.0/16), not listed
LIMITS = ReadLimits(
    per_client=1,
    per_node=1_000,
    burst_s=1,
    trusted_clients=parse_trusted_clients(("81.2.69.142/32",)),
    per_trusted_client=5,
)


def spend(budget: ReadBudget, host: str) -> int:
    """Reads `host` is answered before its first refusal."""
    answered = 0
    while True:
        try:
            budget.take(budget.client_of(host, client_origin(host)))
        except ApiError as error:
            assert error.reason == RATE_LIMITED
            return answered
        answered += 1


def test_api25_a_trusted_client_has_its_own_budget_by_its_own_address() -> None:
    budget = ReadBudget(LIMITS, clock=lambda: 0.0)
    assert budget.client_of(GATEWAY, client_origin(GATEWAY)) == f"{TRUSTED}{GATEWAY}"
    assert budget.client_of(f"::ffff:{GATEWAY}", "x") == f"{TRUSTED}{GATEWAY}"
    assert budget.client_of(NEIGHBOUR, client_origin(NEIGHBOUR)) == client_origin(NEIGHBOUR)
    assert spend(budget, NEIGHBOUR) == 1  # the group's, untouched by the gateway's
    assert spend(budget, GATEWAY) == 5  # its own, at its own rate
    assert spend(budget, NEIGHBOUR) == 0


def test_api25_the_node_wide_budget_binds_a_trusted_client() -> None:
    limits = ReadLimits(
        per_client=1,
        per_node=3,
        burst_s=1,
        trusted_clients=LIMITS.trusted_clients,
        per_trusted_client=1_000,
    )
    budget = ReadBudget(limits, clock=lambda: 0.0)
    # Short, the node's bucket refuses it past its fair share (the whole bucket, alone),
    # far below its own budget, as any group.
    assert 3 <= spend(budget, GATEWAY) <= 2 * 3


def test_api25_trusted_clients_through_the_api(tmp_path: Path) -> None:
    """Behind the node's trusted proxy the gateway is named by X-Forwarded-For and has
    its own budget; an unlisted neighbour of its group is refused at the group's."""

    async def run() -> None:
        async with api(
            tmp_path,
            trusted_proxies=LOOPBACK_PROXY,
            read_budget=ReadBudget(LIMITS, clock=lambda: 0.0),
        ) as (
            client,
            _service,
            _b,
        ):

            async def statuses(host: str, n: int) -> list[int]:
                return [
                    (await client.get("/status", headers={"X-Forwarded-For": host})).status
                    for _ in range(n)
                ]

            assert await statuses(NEIGHBOUR, 2) == [200, 429]
            assert await statuses(GATEWAY, 6) == [200] * 5 + [429]

    asyncio.run(run())


def test_api25_trusted_clients_in_config_toml() -> None:
    config = NodeConfig.from_toml(
        'api_trusted_clients = ["203.0.113.7/32", "2001:db8::1/128"]\n'
        "api_reads_per_trusted_client = 80\n"
    )
    limits = config.read_limits()
    assert [str(n) for n in limits.trusted_clients] == ["203.0.113.7/32", "2001:db8::1/128"]
    assert limits.per_trusted_client == 80
    assert NodeConfig.from_toml(config.to_toml()).read_limits() == limits
    for bad in ('"10.0.0.0/8"', '"0.0.0.0/0"', '"203.0.113.7/24"', ", ".join(['"1.1.1.1"'] * 65)):
        with pytest.raises(FluxError) as refused:
            NodeConfig.from_toml(f"api_trusted_clients = [{bad}]\n")
        assert refused.value.reason == Reason.BAD_FIELD
        assert "api_trusted_clients" in str(refused.value)
    with pytest.raises(FluxError):
        NodeConfig.from_toml("api_reads_per_trusted_client = 0\n")
