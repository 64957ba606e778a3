"""bench/import.py's two-core accounting: the figures the lead compares across runs
(docs/performance.md, "Import on two cores") must add up for a real two-core import."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxchain.store.verifier import VerifierPool

bench_import = importlib.import_module("bench.import")  # `import` is a keyword


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifierPool]:
    verifier = VerifierPool(1)
    yield verifier
    verifier.close()


def test_the_two_core_account_splits_every_signature_between_the_sides(
    tmp_path: Path, pool: VerifierPool
) -> None:
    blocks, txs, genesis = bench_import.make_blocks(tmp_path, 3, 64, 8)
    importer = bench_import.Importer(tmp_path / "two", genesis, pool)
    joined = pool.joined
    try:
        account = bench_import.import_on_two_cores(importer, pool, blocks, len(txs))
        assert importer.chain.height == len(blocks)
    finally:
        importer.close()
    assert account is not None  # Linux: the worker's CPU is read from /proc
    by_importer = pool.joined - joined
    assert 0 <= by_importer <= len(txs)
    assert account.worker_share == pytest.approx(1 - by_importer / len(txs))
    assert account.importer_cpu_us > 0 and account.worker_cpu_us >= 0
    assert account.worker_busy >= 0


def test_bare_verification_on_two_processes_checks_every_signature(tmp_path: Path) -> None:
    """The two-process figure verifies the same signatures as the one-process one (a
    failed one raises in either process) and takes some time."""
    _, txs, _ = bench_import.make_blocks(tmp_path, 1, 32, 4)
    items = bench_import.verify_items(txs)
    assert bench_import.bare_verify_on_two(items) > 0
    pub, sig, _ = items[-1]
    with pytest.raises(AssertionError, match="bench signature failed"):
        bench_import.bare_verify_on_two([*items[:-1], (pub, sig, bytes(32))])
