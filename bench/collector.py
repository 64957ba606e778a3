"""The cyclic collector's CPU per block, collecting after every block against on the bound.

    python -P -m bench.collector [--blocks 40] [--txs 1000] [--senders 64] [--rounds 3]

A devnet-shaped load in one process: blocks of transfers are imported with their txs
decoded beforehand, as a node holds its admitted txs, and the next block's txs are
decoded (the pool) before each block commits. Each round imports the same blocks twice
into fresh homes, once as main did (a full `gc.collect()` + `gc.freeze()` after every
block, the collector's default thresholds between blocks) and once with
`store/collector.py`'s schedule, in turns; the figure is the collector's process time
(every collection, from `gc.callbacks`) a tx, and the import's process time a tx. After
each import on the bound, one full sweep (`gc.unfreeze` + collect + freeze, what every
`SWEEP_EVERY`th collection does) is timed over the process's whole heap.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from fluxchain.core.block import Block
from fluxchain.core.genesis import Genesis
from fluxchain.core.tx import Tx
from fluxchain.core.votes import Commit
from fluxchain.store import collector
from fluxchain.store.chain import Chain

_bench_import = importlib.import_module("bench.import")  # `import` is a keyword


class _CollectorClock:
    """Process time spent in collections while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds += time.process_time() - self._start
            self.collections += 1


def _main_after_block() -> None:
    """main's schedule: a collection after every block, no sweep."""
    gc.collect()
    gc.freeze()


def _sweep() -> tuple[int, float]:
    """One full sweep now: (objects frozen after it, process seconds)."""
    start = time.process_time()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count(), time.process_time() - start


def _run(
    home: Path, genesis: Genesis, blocks: list[tuple[bytes, Commit]], every_block: bool
) -> tuple[float, float, int]:
    """Import `blocks`; (collector seconds, import seconds, collections)."""
    default_thresholds = gc.get_threshold()
    chain = Chain.open(home, genesis)
    after_block = collector.after_block
    if every_block:  # main's schedule
        gc.set_threshold(700, 10, 10)
        collector.after_block = _main_after_block
    params = chain.params

    def admitted(index: int) -> dict[bytes, Tx]:
        if index >= len(blocks):
            return {}
        raw = blocks[index][0]
        raws = Block.decode(raw, params.max_block_bytes, params.max_block_txs).txs
        txs = [Tx.decode(tx_raw, params.max_tx_bytes) for tx_raw in raws]
        return {tx.id: tx for tx in txs}

    clock = _CollectorClock()
    gc.callbacks.append(clock)
    start = time.process_time()
    try:
        pool = admitted(0)
        for index, (raw, commit) in enumerate(blocks):
            block = Block.decode(raw, params.max_block_bytes, params.max_block_txs)
            checked, pool = pool, admitted(index + 1)
            chain.import_block(block, commit, checked=checked)
            del checked
        seconds = time.process_time() - start
        gc.callbacks.remove(clock)  # the sweep is timed on its own, not a block's
        if not every_block:
            objects, sweep_s = _sweep()
            print(f"collector: sweep objects={objects} sweep_ms={sweep_s * 1e3:.1f}")
    finally:
        if clock in gc.callbacks:
            gc.callbacks.remove(clock)
        collector.after_block = after_block
        gc.set_threshold(*default_thresholds)
        chain.close()
    return clock.seconds, seconds, clock.collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--txs", type=int, default=1_000)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="flux-bench-collector-"))
    try:
        print(f"building {args.blocks} blocks of {args.txs} transfers from {args.senders} senders…")
        blocks, txs, genesis = _bench_import.make_blocks(
            workdir, args.blocks, args.txs, args.senders
        )
        n = len(txs)
        del txs
        for round_ in range(args.rounds):
            for every_block in (round_ % 2 == 0, round_ % 2 == 1):
                home = workdir / f"r{round_}-{int(every_block)}"
                gc_s, import_s, collections = _run(home, genesis, blocks, every_block)
                shutil.rmtree(home, ignore_errors=True)
                name = "every_block" if every_block else "on_bound"
                print(
                    f"collector: round={round_ + 1} schedule={name} "
                    f"gc_us_per_tx={gc_s * 1e6 / n:.3f} import_us_per_tx={import_s * 1e6 / n:.2f} "
                    f"collections={collections}"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
