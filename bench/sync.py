"""Block sync throughput against local import of the same blocks.

    python -m bench.sync [--blocks 5000] [--txs 20]

Builds a chain of BLOCKS blocks (each with TXS signed transfers) in a node home, then:
- imports the same blocks into a scratch chain in this process (the local import rate);
- starts that home as a node process (`fluxchain run`) and a fresh node process that
  knows it as its only peer, and times the fresh node from its first synced block to the
  last one, over real websockets on 127.0.0.1 (fetch, verify commits, import).
Prints `sync: blocks_per_s=… tps=… ratio_to_import=…` last.
"""

from __future__ import annotations

import argparse
import json
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


def local_import_rate(source: Path, scratch: Path, genesis: object, blocks: int) -> float:
    src = Chain.open(source, genesis)  # type: ignore[arg-type]
    raw = [(src.get_block_bytes(h), src.get_commit(h)) for h in range(1, blocks + 1)]
    src.close()
    dst = Chain.open(scratch, genesis)  # type: ignore[arg-type]
    p = dst.params
    start = time.perf_counter()
    for block_bytes, commit in raw:
        assert block_bytes is not None and commit is not None
        dst.import_block(Block.decode(block_bytes, p.max_block_bytes, p.max_block_txs), commit)
    elapsed = time.perf_counter() - start
    dst.close()
    return blocks / elapsed


def height(api_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/status", timeout=2) as r:
            return int(json.loads(r.read())["height"])
    except OSError:
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5_000)
    parser.add_argument("--txs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flux-bench-sync-"))
    procs: list[subprocess.Popen[bytes]] = []
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
        import_bps = local_import_rate(home_a / "data", work / "scratch", genesis, args.blocks)
        print(f"local import: {import_bps:,.0f} blocks/s; starting the serving node…", flush=True)
        run = [sys.executable, "-P", "-m", "fluxchain.cli", "run", "--home"]
        procs.append(
            subprocess.Popen(
                [*run, str(home_a)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
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
        procs.append(
            subprocess.Popen(
                [*run, str(home_b)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        api_b = node_ports(home_b, procs[1]).api
        deadline = time.monotonic() + 1_200
        while height(api_b) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        first, start = height(api_b), time.perf_counter()
        while height(api_b) < args.blocks and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        done = height(api_b)
        if done < args.blocks:
            raise SystemExit(f"sync did not finish: height {done} of {args.blocks}")
        bps = (done - first) / elapsed
        print(f"sync over p2p: {bps:,.0f} blocks/s ({done - first} blocks in {elapsed:.1f}s)")
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


if __name__ == "__main__":
    main()
