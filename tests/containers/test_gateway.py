"""docs/apps.md's WordPress + MySQL app on the container devnet, reached only through a
`fluxchain gateway`, and a hosting machine killed under a steady load through it.

No registry is reachable here, so the public `wordpress` and `mysql` images cannot be
pulled: the suite builds two local images from the fluxchain image, whose programs are the
stand-ins of tests/agent/component_app.py (`wp` answers HTTP by asking `db` over TCP, `db`
listens on 3306 in its container and publishes nothing). The spec has the docs' shape:
components `wp` and `db`, `wp` told `WORDPRESS_DB_HOST=db`, `db` given MySQL's variables.

Where the gateway runs (docs/ingress.md, "On the compose devnet"): on the host, following
node4 at its published API port. The validators registered `nodeI:26700`, a name only the
compose network resolves, and their agents publish apps on the host's 127.0.1.{i+1}; so
the gateway is told `--reach nodeI:26700=127.0.0.1:<published API port>` for each, and
`--loopback-is-one-host` (all of it is this machine).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.component_app import DB_SCRIPT, WEB_SCRIPT
from tests.containers.compose import (
    VALIDATORS,
    ComposeDevnet,
    apps_host,
    validator_key,
)
from tests.containers.conftest import SETTLE_DEADLINE_S
from tests.containers.test_apps import free_app_port, hosts_of
from tests.gateway.harness import DOMAIN, GatewayProcess, LoadResult, accepts, paced_load
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli

APP = "wordpress"
ROUTE_DEADLINE_S = 120.0  # registered, placed, both images started on 3 hosts, reported
RECOVERY_DEADLINE_S = 120.0
LOAD_RPS = 50
LOAD_SECONDS = 60
# `wp` gets a whole core: the stand-in serves one request at a time, and two instances
# carry the whole load after the kill (25 requests/s each); at 0.2 core its CFS quota
# queued them for seconds.
SPEC = """\
name: {name}
description: docs/apps.md's WordPress + MySQL shape, with local stand-in images
instances: 3
expire: 5000
components:
  - name: wp
    image: {wp_image}
    ports: [{port}]
    container_ports: [8080]
    environment: ["WORDPRESS_DB_HOST=db", "WORDPRESS_DB_NAME=wordpress",
                  "WORDPRESS_DB_USER=wp", "WORDPRESS_DB_PASSWORD=change-me"]
    cpu: 1.0
    ram_mb: 256
    disk_gb: 1
  - name: db
    image: {db_image}
    environment: ["MYSQL_DATABASE=wordpress", "MYSQL_USER=wp",
                  "MYSQL_PASSWORD=change-me", "MYSQL_RANDOM_ROOT_PASSWORD=1"]
    cpu: 0.5
    ram_mb: 128
    disk_gb: 1
"""
# The stand-ins as the images' own programs: `wp` reads the database host from
# WORDPRESS_DB_HOST as WordPress does (the stand-in's DB_HOST), `db` listens on 3306.
WP_DOCKERFILE = """\
FROM {base}
COPY app.py /srv/app.py
CMD ["sh", "-c", "DB_HOST=\\"$WORDPRESS_DB_HOST\\" exec python3 /srv/app.py"]
"""
DB_DOCKERFILE = """\
FROM {base}
COPY app.py /srv/app.py
CMD ["python3", "/srv/app.py"]
"""


@dataclass(frozen=True, slots=True)
class Deployed:
    port: int  # wp's host port on every hosting node
    hosts: list[int]  # the validators that run an instance, by index
    backend: str  # the app's HTTP backend in the gateway's table


def build_image(devnet: ComposeDevnet, tag: str, dockerfile: str, script: str, tmp: Path) -> None:
    context = tmp / tag.replace(":", "_").replace("/", "_")
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(dockerfile.format(base=devnet.image))
    (context / "app.py").write_text(script)
    devnet.docker("build", "-q", "-t", tag, str(context), timeout=180)


@pytest.fixture(scope="module")
def images(devnet: ComposeDevnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The two local images (built from the suite's image, no registry), removed after."""
    tmp = tmp_path_factory.mktemp("images")
    wp, db = f"{devnet.project}-wordpress:local", f"{devnet.project}-mysql:local"
    try:
        build_image(devnet, wp, WP_DOCKERFILE, WEB_SCRIPT, tmp)
        build_image(devnet, db, DB_DOCKERFILE, DB_SCRIPT, tmp)
        yield SPEC.format(name=APP, wp_image=wp, db_image=db, port="{port}")
    finally:
        devnet.docker("image", "rm", "-f", wp, db, check=False)


@pytest.fixture(scope="module")
def gateway(
    devnet: ComposeDevnet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway on the host following node4, reaching each validator at its published API."""
    reach = [
        arg
        for i, node in enumerate(VALIDATORS)
        for arg in ("--reach", f"node{i}:26700=127.0.0.1:{devnet.api_ports[node]}")
    ]
    gw = GatewayProcess(tmp_path_factory.mktemp("gateway"), devnet.url("node4"), reach)
    try:
        wait_until(lambda: bool(gw.status().get("haproxy_pid")), 30, f"gateway up ({gw.log})")
        yield gw
    finally:
        gw.close()


def routed(gateway: GatewayProcess, backend: str) -> list[str]:
    return sorted(gateway.status().get("backends", {}).get(backend, []))


def addresses(hosts: list[int], port: int) -> list[str]:
    return sorted(f"{apps_host(i)}:{port}" for i in hosts)


@pytest.fixture(scope="module")
def deployed(
    devnet: ComposeDevnet,
    gateway: GatewayProcess,
    images: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Deployed:
    """The app registered by a user with flux-wallet and routed by the gateway."""
    devnet.wait_settled(SETTLE_DEADLINE_S)
    port = free_app_port()
    tmp = tmp_path_factory.mktemp("wordpress")
    spec = tmp / "wordpress.yaml"
    spec.write_text(images.format(port=port), encoding="utf-8")
    cli = Cli(tmp / "wallet", devnet.url("node4"))
    cli.import_devnet()
    proc = cli.run("app", "register", str(spec), "-a", "account7")
    assert "3 of 3 instances placed" in proc.stdout, proc.stdout
    hosts = hosts_of(devnet, APP)
    backend = f"app_{APP}_wp_0"
    # routed, and listening: an agent reports a container running once it started it
    wait_until(
        lambda: (
            routed(gateway, backend) == addresses(hosts, port)
            and all(map(accepts, addresses(hosts, port)))
            and gateway.get(f"{APP}.{DOMAIN}")[0] == 200
        ),
        ROUTE_DEADLINE_S,
        f"the gateway routes {APP} to its 3 hosts, each listening (log {gateway.log})",
        nodes=devnet,
    )
    return Deployed(port, hosts, backend)


def test_a_two_component_app_is_reached_only_through_the_gateway(
    gateway: GatewayProcess, deployed: Deployed
) -> None:
    """A user's browser knows one name: `wordpress.apps.localhost`. Every instance's `wp`
    answers there with what it read from its own `db`, found by the component's name."""
    for _ in range(9):  # round-robin over the three instances
        status, body = gateway.get(f"{APP}.{DOMAIN}")
        assert status == 200, (status, body)
        assert b'"db": "db-ok"' in body and b'"host": "db"' in body, body
    assert gateway.get(f"other.{DOMAIN}")[0] == 404
    assert gateway.status()["reloads"] == 0  # the app arrived through the runtime API


def test_a_hosting_machine_killed_under_load_through_the_gateway_loses_no_request(
    devnet: ComposeDevnet, gateway: GatewayProcess, deployed: Deployed
) -> None:
    """50 requests/s for 60 s through the gateway; 5 s in, one hosting validator's
    machine dies (its node, its agent and its app containers, SIGKILL). HAProxy takes the
    dead instance out of rotation before the chain marks the node down, retries what it
    sent there on another instance, and routes the moved instance with no reload."""
    hosts, port, backend = deployed.hosts, deployed.port, deployed.backend
    victim = hosts[-1]
    victim_key = validator_key(victim)
    victim_id = next(
        n["node_id"] for n in devnet.get("node4", "/nodes")["nodes"] if n["node_key"] == victim_key
    )
    victim_address = f"{apps_host(victim)}:{port}"
    pool_backend = gateway.status()["haproxy_backends"][backend]
    reloads = gateway.status()["reloads"]

    load: list[LoadResult] = []
    runner = threading.Thread(
        target=lambda: load.append(
            asyncio.run(paced_load(gateway.url, f"{APP}.{DOMAIN}", LOAD_RPS, LOAD_SECONDS))
        )
    )
    runner.start()
    time.sleep(5)  # five seconds of steady load before the kill
    killed_at = time.monotonic()
    for service in (f"agent{victim}", f"node{victim}"):
        devnet.kill(service)
    devnet.kill_workloads(victim)
    out_of_rotation = marked_down = 0.0
    deadline = killed_at + 45
    while (not out_of_rotation or not marked_down) and time.monotonic() < deadline:
        if not out_of_rotation and gateway.slot_states(pool_backend).get(
            victim_address, "DOWN"
        ).startswith(("DOWN", "NOLB")):
            out_of_rotation = time.monotonic() - killed_at
        if not marked_down and _status_of(devnet, victim_id) == "down":
            marked_down = time.monotonic() - killed_at
        time.sleep(0.1)  # both sampled at 10 Hz
    runner.join(LOAD_SECONDS + 30)
    assert load, "the load generator did not finish"
    result = load[0]
    print(
        f"compose failover through the gateway: {result.sent} requests at {LOAD_RPS}/s, "
        f"{result.failures} failed {result.errors}; node{victim} killed: out of HAProxy's "
        f"rotation after {out_of_rotation:.1f}s, marked down by the chain after "
        f"{marked_down:.1f}s; failures by 5 s of the load (killed at 5 s): "
        f"{result.failure_timeline()}"
    )
    assert out_of_rotation and marked_down, (out_of_rotation, marked_down)
    assert out_of_rotation < marked_down
    assert result.sent >= LOAD_RPS * LOAD_SECONDS * 0.95
    assert result.failures == 0, result.errors

    # the chain moved the instance to the idle validator: the gateway follows at runtime
    (idle,) = [i for i in range(len(VALIDATORS)) if i not in hosts]
    moved = sorted([*hosts[:-1], idle])
    wait_until(
        lambda: routed(gateway, backend) == addresses(moved, port),
        RECOVERY_DEADLINE_S,
        f"the gateway routes {APP}'s moved instance on node{idle}",
        nodes=devnet,
    )
    assert gateway.status()["reloads"] == reloads
    assert gateway.get(f"{APP}.{DOMAIN}")[0] == 200

    # the machine comes back, so the session's devnet is whole for whatever runs next
    for service in (f"node{victim}", f"agent{victim}"):
        devnet.start(service)
    devnet.wait_settled(SETTLE_DEADLINE_S)


def _status_of(devnet: ComposeDevnet, node_id: str) -> str:
    node = devnet.try_get("node4", f"/nodes/{node_id}")
    return "" if node is None else str(node.get("status", ""))
