"""Requests through the gateway against the same app hit directly, and a failover under load.

    python -m bench.ingress [--seconds 15] [--failover-seconds 60] [--rate 50]

Starts a 5-node devnet with agents (process runtime) and `fluxchain gateway` with its
HAProxy, deploys a 3-instance static HTTP app, then, one run each:

1. direct: as many GETs as 8 workers make in SECONDS, round-robin over the 3 instances;
2. gateway: the same through the gateway (`Host: <app>.apps.localhost`);
3. failover: RATE requests/s through the gateway for FAILOVER_SECONDS while one hosting
   node's machine (node, agent, workload) is SIGKILLed 5 s in: every failed request counts.

The last line is `ingress: rps=… p50_ms=… p99_ms=… direct_rps=… ratio=… failover_errors=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

from tests.agent.test_devnet_agents import healthy, hosts_of, write_app
from tests.gateway.harness import DOMAIN, GatewayProcess, LoadResult, paced_load
from tests.integration.harness import Devnet
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli

NODES = 5
PORT = 31280
APP = "bench"


def describe(name: str, r: LoadResult) -> str:
    return (
        f"{name}: {r.sent} requests in {r.seconds:.1f}s, {r.rps:.0f}/s, p50 {r.percentile(50):.2f} "
        f"ms, p99 {r.percentile(99):.2f} ms, failed {r.failures} {r.errors or ''}"
    )


def run(seconds: float, failover_seconds: float, rate: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        root = Path(tmp)
        net = Devnet(root / "net", validators=NODES, agents=True)
        gateway: GatewayProcess | None = None
        try:
            net.start_all()
            net.wait_height(list(range(NODES)), 2, timeout=60)
            wait_until(lambda: all(healthy(net, i) for i in range(NODES)), 60, "nodes healthy")
            cli = Cli(root / "wallet", net.url(0))
            cli.import_devnet()
            cli.run(
                "app", "register", str(write_app(root / "app.yaml", APP, PORT)), "-a", "account6"
            )
            hosts = hosts_of(net, APP)
            gateway = GatewayProcess(root / "gateway", net.url(0))
            gateway.wait_serving(APP, 3)
            host = f"{APP}.{DOMAIN}"
            direct_urls = [f"http://{net.workload_host(i)}:{PORT}/" for i in hosts]
            direct = asyncio.run(paced_load(direct_urls, host, None, seconds))
            print(describe("direct ", direct), flush=True)
            through = asyncio.run(paced_load(gateway.url + "/", host, None, seconds))
            print(describe("gateway", through), flush=True)

            failover: list[LoadResult] = []
            load = threading.Thread(
                target=lambda: failover.append(
                    asyncio.run(paced_load(gateway.url + "/", host, rate, failover_seconds))
                )
            )
            load.start()
            time.sleep(5)  # five seconds of steady load before the kill
            net.kill_host(hosts[-1])
            load.join(failover_seconds + 60)
            print(describe("failover", failover[0]), flush=True)
            print(
                f"ingress: rps={through.rps:.0f} p50_ms={through.percentile(50):.2f} "
                f"p99_ms={through.percentile(99):.2f} direct_rps={direct.rps:.0f} "
                f"ratio={through.rps / direct.rps:.2f} failover_errors={failover[0].failures}"
            )
        finally:
            if gateway is not None:
                gateway.close()
            net.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--failover-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    run(args.seconds, args.failover_seconds, args.rate)


if __name__ == "__main__":
    main()
