"""Block import throughput against the bare signature check that bounds it.

    python -m bench.import [--blocks 4] [--txs 5000] [--senders 1000]

Builds blocks of signed transfers on a devnet-shaped chain, then imports them into fresh
homes (decode, stateless checks, signature verification, execution, state root, events
root, one LevelDB batch per block) with everything on one core, then with signatures
verified by two worker processes while the block executes (the node's VerifierPool, one
worker per core). Against that: bare coincurve verification of
the same signatures on one core. The last line is the one to compare across runs.

The three measurements are interleaved, --rounds times, and each keeps its best: on a
shared VM the CPU's speed drifts by a third from one second to the next, and a ratio of
two single timings taken seconds apart measures the drift as much as the code.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from coincurve import PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.core.votes import Commit, sign_commit
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.store.chain import Chain
from fluxchain.store.verifier import VerifierPool
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

SEED = 20261126


def make_blocks(
    workdir: Path, n_blocks: int, n_txs: int, n_senders: int
) -> tuple[list[tuple[bytes, Commit]], list[Tx], object]:
    rng = random.Random(SEED)
    senders = [SigningKey(rng.randbytes(32)) for _ in range(n_senders)]
    receivers = [rng.randbytes(20) for _ in range(10_000)]
    params = replace(devnet_params("flux-bench"), max_block_txs=n_txs, max_block_bytes=8_000_000)
    base = new_devnet_genesis(4, chain_id="flux-bench", params=params)
    genesis = replace(
        base,
        balances=base.balances
        + tuple((address_of(k.public_key), 1_000_000 * COIN) for k in senders),
    )
    validators = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    chain = Chain.open(workdir / "builder", genesis)
    blocks, all_txs, nonces = [], [], [0] * n_senders
    last_commit = None
    for b in range(n_blocks):
        txs = []
        for i in range(n_txs):
            s = i % n_senders
            txs.append(
                Tx.create(
                    senders[s],
                    genesis.chain_id,
                    nonces[s],
                    1_000,
                    Transfer(rng.choice(receivers), rng.randrange(1, 10 * COIN)),
                )
            )
            nonces[s] += 1
        block, execution, rejected = chain.build_block(
            time_ms=10_000 * (b + 1),
            proposer=validators[0].public_key,
            last_commit=last_commit,
            candidates=txs,
        )
        assert not rejected and len(block.txs) == n_txs, rejected[:1]
        commit = sign_commit(validators, genesis.chain_id, block.height, 0, block.hash())
        chain.commit_block(block, commit, execution)
        blocks.append((block.encode(), commit))
        all_txs.extend(txs)
        last_commit = commit
    chain.close()
    return blocks, all_txs, genesis


def import_all(
    workdir: Path, genesis: object, blocks: list[tuple[bytes, Commit]], workers: int
) -> float:
    home = workdir / f"import-{workers}"
    pool = VerifierPool(workers) if workers > 1 else None  # as the node does: before opening
    chain = Chain.open(home, genesis)  # type: ignore[arg-type]
    chain.use_verifier(pool)
    params = chain.params
    start = time.perf_counter()
    for raw, commit in blocks:
        block = Block.decode(raw, params.max_block_bytes, params.max_block_txs)
        chain.import_block(block, commit)
    elapsed = time.perf_counter() - start
    chain.close()
    if pool:
        pool.close()
    shutil.rmtree(home)
    return elapsed


def bare_verify(txs: list[Tx]) -> float:
    """libsecp256k1 through coincurve's public API, keys pre-parsed, signatures as DER."""
    items = [
        (PublicKey(tx.sender), cdata_to_der(deserialize_compact(tx.signature)), tx.signing_digest())
        for tx in txs
    ]
    start = time.perf_counter()
    for pub, sig, digest in items:
        if not pub.verify(sig, digest, hasher=None):
            raise AssertionError("bench signature failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--txs", type=int, default=5_000)
    parser.add_argument("--senders", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs; best kept")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="flux-bench-import-"))
    try:
        print(f"building {args.blocks} blocks of {args.txs} transfers from {args.senders} senders…")
        blocks, txs, genesis = make_blocks(workdir, args.blocks, args.txs, args.senders)
        n = len(txs)
        verify_tps = one = two = 0.0
        for _ in range(args.rounds):
            verify_tps = max(verify_tps, n / bare_verify(txs))
            one = max(one, n / import_all(workdir, genesis, blocks, workers=1))
            two = max(two, n / import_all(workdir, genesis, blocks, workers=2))
        print(f"bare coincurve verify, 1 core:   {verify_tps:10,.0f} tx/s")
        print(f"block import, verify on 1 core:  {one:10,.0f} tx/s  ratio {one / verify_tps:.2f}")
        print(f"block import, verify on 2 cores: {two:10,.0f} tx/s  ratio {two / verify_tps:.2f}")
        print(
            f"import: import_tps={one:.0f} verify_tps={verify_tps:.0f} "
            f"ratio={one / verify_tps:.2f} "
            f"import_tps_2core={two:.0f} ratio_2core={two / verify_tps:.2f}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
