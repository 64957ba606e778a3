"""A node killed with SIGKILL at any instant while importing blocks reopens consistent.

The child imports pre-built blocks; the parent kills it at seeded random moments, reopens
the home each time and checks that the head is a block of the clean chain and that both
the stored state tree's root and the root rebuilt from the stored state equal that block's
state root, then lets the child continue from there.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.encoding import pack
from fluxchain.core.params import COIN
from fluxchain.core.statetree import StateTree
from tests.support.chain import Builder, devnet_genesis, funded_key, open_chain, owner_key

BLOCKS = 80
TXS_PER_BLOCK = 150
KILLS = 25
SEED = int(os.environ.get("FLUX_CRASH_SEED", "7"))
ROOT = Path(__file__).resolve().parents[2]


def _build_blocks(home: Path) -> tuple[list[list[Any]], list[bytes]]:
    b = Builder(open_chain(home))
    senders = [funded_key(4 + i) for i in range(4)]
    to = [address_of(owner_key(i).public_key) for i in range(4)]
    rng = random.Random(SEED)
    for _ in range(BLOCKS):
        b.commit(
            [
                b.transfer(rng.choice(senders), rng.choice(to), rng.randrange(1, COIN))
                for _ in range(TXS_PER_BLOCK)
            ]
        )
    out, hashes = [], []
    for h in range(1, BLOCKS + 1):
        commit = b.chain.get_commit(h)
        assert commit is not None
        out.append([b.chain.get_block_bytes(h), commit.to_fields()])
        hashes.append(b.chain.get_block(h).hash())
    b.chain.close()
    return out, hashes


@pytest.mark.slow
def test_sigkill_during_import_never_corrupts(tmp_path: Path) -> None:
    blocks, hashes = _build_blocks(tmp_path / "clean")
    blocks_file = tmp_path / "blocks.bin"
    blocks_file.write_bytes(pack(blocks))
    home = tmp_path / "victim"
    rng = random.Random(SEED)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    heights = []
    for attempt in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.crash_importer", str(home), str(blocks_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        child.stdout.readline()  # "resuming at N": imports start now
        time.sleep(rng.uniform(0.0, 0.12))  # the random instant of the crash, not a wait
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        chain = open_chain(home, devnet_genesis())  # raises store_mismatch if inconsistent
        try:
            h = chain.height
            heights.append(h)
            if h:
                assert chain.head_hash == hashes[h - 1], f"seed {SEED} attempt {attempt}"
                assert chain.tree.root == chain.head.state_root  # type: ignore[union-attr]
                # the stored tree and the stored state agree: rebuild one from the other
                rebuilt = StateTree.from_items(chain.state.encoded_items())
                assert rebuilt.root == chain.tree.root, f"seed {SEED} attempt {attempt}"
                for i in range(1, h + 1):
                    assert chain.get_block_bytes(i) == blocks[i - 1][0]
            assert chain.get_block_bytes(h + 1) is None
        finally:
            chain.close()
        if h == BLOCKS:
            break
    # finish the import and check the end state equals the clean chain's
    subprocess.run(
        [sys.executable, "-m", "tests.integration.crash_importer", str(home), str(blocks_file)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    chain = open_chain(home, devnet_genesis())
    assert chain.height == BLOCKS and chain.head_hash == hashes[-1]
    chain.close()
    print(f"crash test seed={SEED} kills={len(heights)} heights={heights}")
    assert len(set(heights)) > 3, f"kills should land at many heights, got {heights} (seed {SEED})"
