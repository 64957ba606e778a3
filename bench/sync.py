"""Block sync throughput against local import of the same blocks.

    python -m bench.sync [--blocks 5000] [--txs 20] [--profile DIR]

Builds a chain of BLOCKS blocks (each with TXS signed transfers) in a node home, then:
- imports the same blocks into a scratch chain in this process (the local import rate);
- starts that home as a node process (`fluxchain run`) and a fresh node process that
  knows it as its only peer, and times the fresh node from its first synced block to the
  last one, over real websockets on 127.0.0.1 (fetch, verify commits, import).
Prints `sync: blocks_per_s=… tps=… ratio_to_import=…` last; before it the CPU time each
side spent per block (`cpu_ms_per_block`: the local import's, the fresh node's and the
serving node's, each process with its verifier processes), which a loaded machine
disturbs much less than the wall clock. `--profile DIR` runs both nodes under cProfile
(`FLUXCHAIN_PROFILE`, fluxchain/node/profiling.py) and prints the top of each profile.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fluxchain.core.block import Block
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.core.votes import sign_commit
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.home import NodeConfig, init_home
from fluxchain.node.profiling import PROFILE_ENV
from fluxchain.store.chain import Chain
from tests.support.chain import proposer_reveal
from tests.support.ports import node_ports
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path

SEED = 5000


def build_chain(home_data: Path, genesis: object, blocks: int, txs: int) -> None:
    rng = random.Random(SEED)
    validators = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    senders = [derive_key(INSECURE_TEST_MNEMONIC, account_path(i)) for i in range(8)]
    chain = Chain.open(home_data, genesis)  # type: ignore[arg-type]
    nonces = [0] * len(senders)
    last_commit = None
    for b in range(blocks):
        batch = []
        for i in range(txs):
            s = (b * txs + i) % len(senders)
            batch.append(
                Tx.create(
                    senders[s],
                    chain.params.chain_id,
                    nonces[s],
                    1_000,
                    Transfer(rng.randbytes(20), rng.randrange(COIN // 100, COIN)),
                )
            )
            nonces[s] += 1
        block, execution, rejected = chain.build_block(
            now_ms=chain.head_time_ms + 1_000,
            round_=0,
            last_commit=last_commit,
            candidates=batch,
            reveal=proposer_reveal(chain, 0),
        )
        assert not rejected
        commit = sign_commit(validators, chain.params.chain_id, block.height, 0, block.hash())
        chain.commit_block(block, commit, execution)
        last_commit = commit
    chain.close()


def local_import_rate(
    source: Path, scratch: Path, genesis: object, blocks: int
) -> tuple[float, float]:
    """Blocks per second and CPU seconds per block of importing `source`'s blocks here."""
    src = Chain.open(source, genesis)  # type: ignore[arg-type]
    raw = [(src.get_block_bytes(h), src.get_commit(h)) for h in range(1, blocks + 1)]
    src.close()
    dst = Chain.open(scratch, genesis)  # type: ignore[arg-type]
    p = dst.params
    start, cpu = time.perf_counter(), time.process_time()
    for block_bytes, commit in raw:
        assert block_bytes is not None and commit is not None
        dst.import_block(Block.decode(block_bytes, p.max_block_bytes, p.max_block_txs), commit)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    dst.close()
    return blocks / elapsed, cpu / blocks


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by process `pid` and by its live children
    (a node's verifier and sync-check processes), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    own, total, todo = 0.0, 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / ticks
            own = used if current == pid else own
            total += used
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue  # it exited meanwhile
    return own, total - own


def print_profile(path: Path, title: str) -> None:
    print(f"--- {title}: top 25 by own time ({path})")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


def height(api_port: int) -> int:
    """The node's height as its API reports it (-1 while it does not answer). A syncing
    node answers between import batches (up to a second each, several on a loaded
    machine): a short timeout would miss every answer and the sync's start with them."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/status", timeout=30) as r:
            return int(json.loads(r.read())["height"])
    except OSError:
        return -1


def start_node(home: Path, profile: Path | None) -> subprocess.Popen[bytes]:
    """`fluxchain run` on `home`, under cProfile into `profile` if given."""
    env = dict(os.environ)
    if profile is not None:
        env[PROFILE_ENV] = str(profile)
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "fluxchain.cli", "run", "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def time_sync(
    api: int, procs: list[subprocess.Popen[bytes]], blocks: int
) -> tuple[int, int, float, list[tuple[float, float]]]:
    """Watch the fresh node from its first synced block to `blocks`: (first height seen,
    last height, seconds, CPU seconds of each process in `procs` and of its children
    meanwhile)."""
    deadline = time.monotonic() + 1_200
    while height(api) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    first, start = height(api), time.perf_counter()
    cpu_start = [tree_cpu_s(proc.pid) for proc in procs]
    while height(api) < blocks and time.monotonic() < deadline:
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    cpu = [
        (own - own_was, helpers - helpers_was)
        for (own, helpers), (own_was, helpers_was) in zip(
            (tree_cpu_s(proc.pid) for proc in procs), cpu_start, strict=True
        )
    ]
    return first, height(api), elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5_000)
    parser.add_argument("--txs", type=int, default=20)
    parser.add_argument("--profile", type=Path, help="profile both nodes into this directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flux-bench-sync-"))
    procs: list[subprocess.Popen[bytes]] = []
    profiles: dict[str, Path] = {}
    try:
        # Only validator 0 runs (serving): without a quorum nobody extends the chain.
        genesis = new_devnet_genesis(4, genesis_time_ms=1_000)
        home_a, home_b = work / "serving", work / "fresh"
        # Port 0: each node binds what the OS gives it and writes it to its home's port file.
        init_home(
            home_a,
            genesis,
            NodeConfig(p2p_port=0, api_port=0, duties=False),
            derive_key(INSECURE_TEST_MNEMONIC, node_key_path(0)),
        )
        print(f"building {args.blocks} blocks of {args.txs} transfers…", flush=True)
        build_chain(home_a / "data", genesis, args.blocks, args.txs)
        import_bps, import_cpu = local_import_rate(
            home_a / "data", work / "scratch", genesis, args.blocks
        )
        print(f"local import: {import_bps:,.0f} blocks/s; starting the serving node…", flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiles.update(
                serving=args.profile / "serving.prof", fresh=args.profile / "fresh.prof"
            )
        procs.append(start_node(home_a, profiles.get("serving")))
        serving = node_ports(home_a, procs[0])
        api_a = serving.api
        deadline = time.monotonic() + 120
        while height(api_a) < args.blocks and time.monotonic() < deadline:
            time.sleep(0.1)
        if height(api_a) < args.blocks:
            raise SystemExit(f"the serving node did not come up (height {height(api_a)})")
        print("syncing a fresh node from it…", flush=True)
        init_home(
            home_b,
            genesis,
            NodeConfig(
                p2p_port=0,
                api_port=0,
                duties=False,
                persistent_peers=(f"127.0.0.1:{serving.p2p}",),
            ),
        )
        procs.append(start_node(home_b, profiles.get("fresh")))
        first, done, elapsed, cpu = time_sync(node_ports(home_b, procs[1]).api, procs, args.blocks)
        if done < args.blocks:
            raise SystemExit(f"sync did not finish: height {done} of {args.blocks}")
        bps = (done - first) / elapsed
        print(f"sync over p2p: {bps:,.0f} blocks/s ({done - first} blocks in {elapsed:.1f}s)")
        synced = max(1, done - first)
        (serving_own, serving_helpers), (fresh_own, fresh_helpers) = (
            (1_000 * own / synced, 1_000 * helpers / synced) for own, helpers in cpu
        )
        # The node's own process (event loop, import) is the serial path; its helper
        # processes (verifier, sync checks) work beside it.
        print(
            f"cpu_ms_per_block: import={1_000 * import_cpu:.2f} "
            f"fresh={fresh_own + fresh_helpers:.2f} fresh_importer={fresh_own:.2f} "
            f"fresh_helpers={fresh_helpers:.2f} serving={serving_own + serving_helpers:.2f}"
        )
        print(
            f"sync: blocks_per_s={bps:.0f} tps={bps * args.txs:.0f} "
            f"ratio_to_import={bps / import_bps:.2f}"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    for name, path in profiles.items():
        if path.exists():
            print_profile(path, f"{name} node")


if __name__ == "__main__":
    main()
