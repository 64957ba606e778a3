"""The devnet's gateway: named in devnet.json, started by `fluxchain devnet up` beside the
nodes, following every node, with the loopback exception a one-machine devnet needs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Final

DOMAIN: Final = "apps.localhost"
PORT_OFFSET: Final = 80  # the gateway's HTTP port is the devnet's api_base + 80 (26780)


def devnet_gateway(root: Path, port: int) -> dict[str, Any]:
    """The `gateway` entry of devnet.json: where clients connect, its domain, its state."""
    return {
        "http": f"127.0.0.1:{port}",
        "domain": DOMAIN,
        "state": str(root / "gateway"),
    }


def devnet_gateway_argv(root: Path, node_apis: list[str]) -> tuple[str, ...] | None:
    """The command line of the gateway devnet.json names, following every node (None: the
    devnet has no gateway entry, or haproxy is not installed). Its log is `gateway_log`."""
    gateway = json.loads((root / "devnet.json").read_text()).get("gateway")
    if gateway is None:
        return None
    if shutil.which("haproxy") is None:
        print("no gateway: haproxy is not installed (`make haproxy` or `apt-get install haproxy`)")
        return None
    state = Path(gateway["state"])
    state.mkdir(parents=True, exist_ok=True)
    host, _, port = gateway["http"].rpartition(":")
    print(
        f"gateway listening: curl -H 'Host: <app>.{gateway['domain']}' {gateway['http']} "
        f"(log {gateway_log(root)})",
        flush=True,
    )
    nodes = [arg for api in node_apis for arg in ("--node", api)]
    return (
        sys.executable,
        "-P",
        "-m",
        "fluxchain.cli",
        "gateway",
        *nodes,
        "--domain",
        gateway["domain"],
        "--bind",
        host,
        "--http-port",
        port,
        "--state",
        str(state),
        "--loopback-is-one-host",
    )


def gateway_log(root: Path) -> Path:
    return Path(json.loads((root / "devnet.json").read_text())["gateway"]["state"]) / "gateway.log"
