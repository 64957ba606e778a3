"""Restart cost: reopening a node's home against rebuilding its state tree, same run.

    python -m bench.restart [--keys 1000000] [--blocks 3]

Writes a devnet home whose genesis funds `--keys` extra accounts (one state record each),
lets LevelDB compact that one huge genesis batch (as a node's store is after many blocks),
commits `--blocks` blocks of transfers on top, closes it, then:
- open_s: `Chain.open` of that home, as a node starts: the stored state tree is reopened
  from its root record and checked against the head block's state root; state records
  are read on demand;
- rebuild_s: what a start cost before the tree was stored: every state record read and
  decoded, and the tree built from all of them (the same root is checked);
- first_block_s: the first block imported after the reopen (it reads the branches and
  records it touches), beside the same block's import by the node that never stopped.
The last line is the summary: target open_s <= 2 and rebuild_s / open_s >= 10.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path

import plyvel

from fluxchain.core.block import Block
from fluxchain.core.genesis import Genesis
from fluxchain.core.schema import new_state
from fluxchain.core.statetree import StateTree
from fluxchain.core.votes import Commit
from fluxchain.store.chain import Chain
from fluxchain.store.db import ChainDB
from tests.support.chain import Builder, devnet_genesis, funded_key


@dataclass(frozen=True, slots=True)
class _Written:
    """A home written by a node that ran, and the block it imported last (from both homes)."""

    state_keys: int
    head_root: bytes  # before the next block
    next_block: Block
    next_commit: Commit
    final_root: bytes  # after it
    running_block_s: float


def _write_home(
    work: Path, genesis: Genesis, extra: tuple[tuple[bytes, int], ...], blocks: int
) -> _Written:
    """work/home: the genesis (compacted) and `blocks` blocks of transfers; work/running:
    its copy, which the next block is imported into by the node that never stopped."""
    Chain.open(work / "home", genesis).close()
    # The genesis went to disk as one batch of the whole state, which LevelDB replays
    # from its log at the next open unless it is compacted first. A node's log holds
    # its last few MB of blocks (write_buffer_size), so settle it as a node's would be.
    raw = plyvel.DB(str(work / "home"))
    raw.compact_range()
    raw.close()
    chain = Chain.open(work / "home", genesis)
    builder = Builder(chain)
    for height in range(blocks):
        builder.commit([builder.transfer(funded_key(), extra[height][0]) for _ in range(50)])
    state_keys = len(chain.state)
    head_root = chain.tree.root
    # the block the reopened node will import first, and what the running node takes
    next_block, next_commit = builder.block(
        [builder.transfer(funded_key(), extra[-1 - i][0]) for i in range(200)]
    )
    next_block = Block.decode(next_block.encode(), 1 << 30, 1 << 20)
    shutil.copytree(work / "home", work / "running")
    t = time.perf_counter()
    chain.import_block(next_block, next_commit)
    running_block_s = time.perf_counter() - t
    final_root = chain.tree.root
    chain.close()
    return _Written(state_keys, head_root, next_block, next_commit, final_root, running_block_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args()
    base = devnet_genesis()
    extra = tuple((sha256(i.to_bytes(8, "big")).digest()[:20], 1 + i) for i in range(args.keys))
    genesis = replace(base, balances=base.balances + extra)
    work = Path(tempfile.mkdtemp(prefix="fluxchain-bench-restart-"))
    try:
        started = time.perf_counter()
        written = _write_home(work, genesis, extra, args.blocks)
        setup_s = time.perf_counter() - started - written.running_block_s
        print(f"setup: {args.keys:,} accounts, {args.blocks} blocks in {setup_s:.1f} s")

        t = time.perf_counter()
        reopened = Chain.open(work / "running", genesis)
        open_s = time.perf_counter() - t
        assert reopened.tree.root == written.head_root
        t = time.perf_counter()
        reopened.import_block(written.next_block, written.next_commit)
        first_block_s = time.perf_counter() - t
        assert reopened.tree.root == written.final_root
        reopened.close()

        db = ChainDB(work / "home")
        t = time.perf_counter()
        state = new_state()
        state.load(db.state_items())
        rebuilt = StateTree.from_items(state.encoded_items())
        rebuild_s = time.perf_counter() - t
        db.close()
        assert rebuilt.root == written.final_root
        print(
            f"first block after the reopen: {first_block_s:.3f} s "
            f"(the running node: {written.running_block_s:.3f} s)"
        )
        print(f"ratio rebuild/open: {rebuild_s / open_s:.0f}x")
        print(
            f"restart: state_keys={written.state_keys} open_s={open_s:.3f} "
            f"rebuild_s={rebuild_s:.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
