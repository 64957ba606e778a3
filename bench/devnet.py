"""A 4-validator devnet on this machine under a steady submit load.

    python -m bench.devnet [--rate 2000] [--seconds 30]

Starts four `fluxchain run` processes from a fresh genesis, pre-signs RATE x SECONDS
transfers from the eight funded dev accounts, submits them in batches every 100 ms
(spread over the four nodes' APIs), and follows node0's block stream: a tx is final when
the block holding it is committed. Prints confirmed tx/s, submit-to-final latency
percentiles, and the mean block interval; the last line is
`devnet: confirmed_tps=… p50_final_ms=… p99_final_ms=… block_ms=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from fluxchain.core.crypto import address_of
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.devnet import create_devnet, start_node
from fluxchain.node.supervisor import stop
from tests.support.ports import lease_ports
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

TICK_S = 0.1


async def wait_ready(session: aiohttp.ClientSession, urls: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            heights = []
            for url in urls:
                async with session.get(f"{url}/status") as r:
                    heights.append((await r.json())["height"])
            if min(heights) >= 2:
                return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("the devnet did not start")


async def run(rate: int, seconds: int, urls: list[str], chain_id: str) -> None:
    keys = [derive_key(INSECURE_TEST_MNEMONIC, account_path(i)) for i in range(8)]
    sink = address_of(derive_key(INSECURE_TEST_MNEMONIC, account_path(99)).public_key)
    total = rate * seconds
    print(f"signing {total} transfers…", flush=True)
    txs = [
        Tx.create(keys[i % 8], chain_id, i // 8, 1_000, Transfer(sink, COIN // 100))
        for i in range(total)
    ]
    submitted: dict[bytes, float] = {}
    final: dict[bytes, float] = {}
    block_times: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await wait_ready(session, urls, 60)

        async def follow() -> None:
            async with session.ws_connect(f"{urls[0]}/ws") as ws:
                async for msg in ws:
                    now = time.perf_counter()
                    block = msg.json()
                    block_times.append(now)
                    for tx_id in block["txs"]:
                        final.setdefault(bytes.fromhex(tx_id), now)

        follower = asyncio.create_task(follow())
        per_tick = max(1, int(rate * TICK_S))
        start = time.perf_counter()
        for n, offset in enumerate(range(0, total, per_tick)):
            batch = txs[offset : offset + per_tick]
            url = urls[n % len(urls)]
            now = time.perf_counter()
            for tx in batch:
                submitted[tx.id] = now
            async with session.post(
                f"{url}/txs/batch", json={"txs": [t.raw.hex() for t in batch]}
            ) as r:
                results = (await r.json())["results"]
            refused = [x for x in results if "error" in x]
            if refused:
                print(f"refused {len(refused)}: {refused[0]['error']}", flush=True)
            await asyncio.sleep(max(0.0, start + (n + 1) * TICK_S - time.perf_counter()))
        deadline = time.perf_counter() + 60
        while (
            len(final.keys() & submitted.keys()) < len(submitted) and time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.2)
        follower.cancel()
    done = [final[t] - submitted[t] for t in submitted if t in final]
    if not done:
        raise SystemExit("no tx was confirmed")
    first_submit = min(submitted.values())
    last_final = max(final[t] for t in submitted if t in final)
    tps = len(done) / (last_final - first_submit)
    latencies = sorted(1000 * d for d in done)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    intervals = [b - a for a, b in itertools.pairwise(block_times)]
    block_ms = 1000 * statistics.mean(intervals) if intervals else 0.0
    print(f"submitted {len(submitted)}, confirmed {len(done)} in {last_final - first_submit:.1f}s")
    print(
        f"devnet: confirmed_tps={tps:.0f} p50_final_ms={p50:.0f} "
        f"p99_final_ms={p99:.0f} block_ms={block_ms:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2_000, help="target submitted tx/s")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flux-bench-devnet-"))
    # The genesis names each node's API endpoint: runs of ports leased before the launch.
    p2p_ports, api_ports = lease_ports(4, contiguous=True), lease_ports(4, contiguous=True)
    genesis, members = create_devnet(
        work / "net",
        4,
        p2p_base=p2p_ports.ports[0],
        api_base=api_ports.ports[0],
        log_level="warning",
        agents=False,
    )
    procs = [start_node(m.home, m.home / "node.log") for m in members]
    try:
        asyncio.run(run(args.rate, args.seconds, [m.api for m in members], genesis.chain_id))
    finally:
        stop(procs)
        p2p_ports.release()
        api_ports.release()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
