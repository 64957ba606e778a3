"""rev27p: an uptime checker probes a target registered at the cloud's metadata service.

Attack: a node owner registers its node's endpoint at `169.254.169.254:80` (any cloud's
metadata service) or `168.63.129.16:80` (Azure's wire server); the uptime ring makes
honest nodes its checkers, and each of them sends `GET /health` there, to the service of
its *own* machine, every epoch (and follows whatever redirect it answers).

Now: `duties.probe_health` opens a connection to any endpoint at all. docs/security.md
says of such an endpoint "no report is read from such an endpoint" and pex27 judges the
gateway's servers, app reports and learned peers by `netgroup.routable`: the probe, the
one request every checker is made to send to an address a stranger chose, judges none.

Should: a probe never connects to an address `routable` refuses (link-local, a cloud
host service, unspecified, multicast); it reports the target down without a request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluxchain.node.app_reports import PUBLIC, ReportHosts
from fluxchain.node.duties import HealthCheck, probe_health, probe_hosts

# Whose proof the probe would check: these probes must never get as far as an answer.
TARGET = HealthCheck("test", bytes(32), bytes(33), {})


@pytest.mark.parametrize("endpoint", ["169.254.169.254:80", "168.63.129.16:80"])
def test_rev27p_a_health_probe_never_connects_to_a_clouds_host_service(endpoint: str) -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        attempts: list[Any] = []

        async def sock_connect(sock: Any, address: Any) -> None:
            # (This test's loop only: record where the probe connects, and reach nothing.)
            attempts.append(address[0])
            raise OSError("no network in this test")

        loop.sock_connect = sock_connect  # type: ignore[method-assign]
        up, _latency = await probe_health(endpoint, TARGET)
        assert not up
        return attempts

    attempts = asyncio.run(scenario())
    assert attempts == [], f"the uptime probe of {endpoint} connected to {attempts}"


def test_fix27p2_probes_go_to_loopback_and_private_only_where_the_node_is() -> None:
    public = probe_hosts(PUBLIC, "0.0.0.0", "81.2.69.5:26600")
    assert not public.allows("127.0.0.1") and not public.allows("10.0.0.1")
    wan_validator = probe_hosts(PUBLIC, "10.32.0.2", None)  # tests/wan: listens on 10/8
    assert wan_validator.allows("10.33.0.2") and not wan_validator.allows("127.0.0.1")
    # The default config (127.0.0.1, nothing advertised) is no sign of a devnet (fix27l);
    # `flux devnet` and the integration harness set `reports_from_loopback`.
    default = probe_hosts(PUBLIC, "127.0.0.1", None)
    assert not default.allows("127.0.0.1") and not default.allows("10.0.0.1")
    devnet = probe_hosts(ReportHosts(loopback=True), "127.0.0.1", None)
    assert devnet.allows("127.0.0.1") and not devnet.allows("10.0.0.1")
    # The docker devnet: 0.0.0.0, nothing advertised, `--reports-from-private`.
    docker = probe_hosts(ReportHosts(private=True), "0.0.0.0", None)
    assert docker.allows("172.18.0.3")
    for hosts in (public, wan_validator, devnet, docker):
        assert not hosts.allows("169.254.169.254") and not hosts.allows("fd20:ce::254")


def test_fix27p2_a_public_checker_never_probes_a_private_endpoint() -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        attempts: list[Any] = []

        async def sock_connect(sock: Any, address: Any) -> None:
            attempts.append(address[0])
            raise OSError("no network in this test")

        loop.sock_connect = sock_connect  # type: ignore[method-assign]
        up, _latency = await probe_health(
            "10.0.0.1:26700", TARGET, probe_hosts(PUBLIC, "0.0.0.0", "81.2.69.5:26600")
        )
        assert not up
        return attempts

    assert asyncio.run(scenario()) == []
