"""What the WAN testnet (tests/wan/testnet.py) does to the host's own network namespace,
read from the commands it runs (recorded here, not run: no root, no namespaces).

Issue 22: "only addresses inside those namespaces are used". Routes for whole /11s of
10/8 and an address in 10.200.0.0/24 in the host namespace shadow, for the length of a
run, any real network of the host in those ranges (a cloud VPC, a VPN, a container
network): its traffic goes into the testnet instead.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from tests.wan import testnet

# RFC 2544's range for benchmarking networks: never routed on a real network, so the
# host may hold routes or addresses in it without shadowing anything it uses.
BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")


def _host_namespace_entries(commands: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The `ip route add` / `ip addr add` commands that act on the host namespace."""
    return [
        args
        for args in commands
        if args[:1] == ("ip",) and args[1:3] in (("route", "add"), ("addr", "add"))
    ]


def test_the_wan_testnet_adds_no_route_or_address_that_shadows_a_host_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[tuple[str, ...]] = []

    def record(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        commands.append(args)
        return subprocess.CompletedProcess(args, 1, stdout="", stderr="")

    monkeypatch.setattr(testnet, "sh", record)
    monkeypatch.setattr(testnet.WanTestnet, "_start_delay", lambda self: None)
    net = testnet.WanTestnet(tmp_path, validators=4, full_nodes=1)
    net.create_network()
    assert any(args[:3] == ("ip", "netns", "add") for args in commands)  # it did build

    shadowing = []
    for args in _host_namespace_entries(commands):
        prefix = ipaddress.IPv4Network(args[3], strict=False)
        if not prefix.subnet_of(BENCHMARK_RANGE):
            shadowing.append(" ".join(args))
    assert shadowing == []
