"""State sync against replay from genesis, on a chain with a million state keys.

    python -m bench.statesync [--blocks 10000] [--txs 100] [--cache DIR]

Builds (once; cached, see below) a chain of BLOCKS blocks of TXS transfers, each to a
fresh address, so the state ends with BLOCKS x TXS accounts more than genesis (1,000,000
by default) and takes a snapshot of its last block. Then, from the same built home:

- replay: imports every block into a scratch chain in this process, with the node's
  signature verifier processes, as a node syncing from genesis does (no network);
- state sync: starts the built home as a node process (`fluxchain run`) and a fresh node
  process initialised with `--trust-height`/`--trust-hash` of the last block, and times
  the fresh node from its start to its API answering at that height (snapshot fetched
  over real websockets on 127.0.0.1, every chunk checked, the state written).

Prints `statesync: state_keys=… snapshot_s=… replay_s=… ratio=…` last.

Building a million-key chain takes minutes on a 2-core machine, so the built home is kept
under the system's temp dir (or --cache), keyed by the parameters, and reused by later
runs; delete it to rebuild.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.sync import build_chain
from fluxchain.core.block import Block
from fluxchain.core.votes import Commit
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.home import Home, NodeConfig, init_home
from fluxchain.store.chain import Chain
from fluxchain.store.db import ChainDB
from fluxchain.store.snapshots import build_snapshot
from fluxchain.store.verifier import VerifierPool
from tests.support.ports import node_ports
from tests.support.wait import wait_until
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

FORMAT = 1  # bump when the cached home's layout changes
RUN = [sys.executable, "-P", "-m", "fluxchain.cli", "run", "--home"]


def build_cached(cache: Path, blocks: int, txs: int) -> dict[str, object]:
    """The built home under `cache`, built now if it is not there yet."""
    done = cache / "built.json"
    if done.exists():
        print(f"using the chain built in {cache}", flush=True)
        info: dict[str, object] = json.loads(done.read_text())
        return info
    shutil.rmtree(cache, ignore_errors=True)
    genesis = new_devnet_genesis(4, genesis_time_ms=1_000)
    home = cache / "serving"
    config = NodeConfig(p2p_port=0, api_port=0, duties=False, snapshot_interval=0)
    init_home(home, genesis, config, derive_key(INSECURE_TEST_MNEMONIC, node_key_path(0)))
    print(f"building {blocks} blocks of {txs} transfers to fresh addresses…", flush=True)
    started = time.perf_counter()
    build_chain(home / "data", genesis, blocks, txs)
    print(f"built in {time.perf_counter() - started:.0f} s; taking a snapshot…", flush=True)
    chain = Chain.open(home / "data", genesis)
    assert chain.head is not None
    height, block_hash, root = chain.height, chain.head_hash, chain.head.state_root
    keys = len(chain.tree)
    chain.close()
    db = ChainDB(home / "data")
    view = db.state_view()
    started = time.perf_counter()
    manifest, chunks = build_snapshot(view, height, root)
    db.write_snapshot(height, [manifest.encode(), *chunks], keep=1)
    view.close()
    db.close()
    print(
        f"snapshot of {keys:,} keys: {len(chunks)} chunks, depth {manifest.depth}, "
        f"taken in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    info = {"height": height, "hash": block_hash.hex(), "state_keys": keys}
    done.write_text(json.dumps(info))
    return info


def replay_seconds(source: Path, scratch: Path, blocks: int) -> float:
    """Import every block of `source` into a new chain, as sync from genesis does."""
    genesis = new_devnet_genesis(4, genesis_time_ms=1_000)
    src = ChainDB(source)
    pool = VerifierPool((os.cpu_count() or 1) - 1)
    dst = Chain.open(scratch, genesis, pool)
    p = dst.params
    try:
        started = time.perf_counter()
        for height in range(1, blocks + 1):
            raw = src.get(b"B" + height.to_bytes(8, "big"))
            commit = src.get_obj(b"C" + height.to_bytes(8, "big"))
            assert raw is not None and commit is not None
            dst.import_block(
                Block.decode(raw, p.max_block_bytes, p.max_block_txs), Commit.from_fields(commit)
            )
            if height % 1000 == 0:
                print(f"  replayed {height} blocks…", flush=True)
        return time.perf_counter() - started
    finally:
        pool.close()
        dst.close()
        src.close()


def api_height(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
            return int(json.loads(response.read())["height"])
    except OSError:
        return -1


def state_sync_seconds(serving: Path, fresh: Path, height: int, block_hash: str) -> float:
    """Start the built home and a fresh state-syncing node; the fresh node's time from
    its start to its API answering at `height`."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([*RUN, str(serving)], stderr=subprocess.DEVNULL))
        p2p = node_ports(serving, procs[0]).p2p
        genesis = new_devnet_genesis(4, genesis_time_ms=1_000)
        config = NodeConfig(
            p2p_port=0,
            api_port=0,
            duties=False,
            persistent_peers=(f"127.0.0.1:{p2p}",),
            trust_height=height,
            trust_hash=block_hash,
            log_level="info",
        )
        init_home(fresh, genesis, config)
        started = time.perf_counter()
        log = (fresh / "node.log").open("wb")
        procs.append(subprocess.Popen([*RUN, str(fresh)], stderr=log))
        # Its API (and port file) comes up once the state is written: wait for it here,
        # not with node_ports' start-up deadline.
        home = Home(fresh)

        def synced() -> bool:
            if procs[1].poll() is not None:
                raise SystemExit(f"the fresh node exited; see {fresh / 'node.log'}")
            ports = home.bound_ports()
            return (
                ports is not None and ports.pid == procs[1].pid and api_height(ports.api) >= height
            )

        wait_until(synced, 1_200, "the fresh node to state-sync", poll_s=0.05)
        elapsed = time.perf_counter() - started
        for line in (fresh / "node.log").read_text().splitlines():
            if "state sync" in line or "node started" in line:
                print("  " + line, flush=True)
        return elapsed
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--txs", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    cache = args.cache / f"flux-bench-statesync-v{FORMAT}-{args.blocks}x{args.txs}"
    info = build_cached(cache, args.blocks, args.txs)
    height, block_hash = int(str(info["height"])), str(info["hash"])
    work = Path(tempfile.mkdtemp(prefix="flux-bench-statesync-"))
    try:
        print("state sync of a fresh node from the built one…", flush=True)
        snapshot_s = state_sync_seconds(cache / "serving", work / "fresh", height, block_hash)
        print(f"state sync: {snapshot_s:.1f} s; replaying {height} blocks…", flush=True)
        replay_s = replay_seconds(cache / "serving" / "data", work / "scratch", height)
        print(
            f"statesync: state_keys={info['state_keys']} snapshot_s={snapshot_s:.1f} "
            f"replay_s={replay_s:.1f} ratio={replay_s / snapshot_s:.1f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
