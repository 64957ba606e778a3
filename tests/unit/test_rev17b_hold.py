"""Review rev17b: attacks on gc17's collector schedule that the code withstood."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from fluxchain.core.block import Block
from fluxchain.core.errors import StoreError, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.service import NodeService
from fluxchain.store import collector
from tests.support.chain import FEE, Builder, funded_key, history_genesis, open_chain


def test_refused_txs_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    """A flood of refused txs (malformed, forged signature, nonce too far) leaves nothing
    for the collector: the refusals are freed by refcounting (or kept, bounded, for `tx
    status`), so a stall does not pile up cycles from them."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, gossip=lambda tx: None)
        good = Builder(chain).transfer(funded_key(), b"\x01" * 20)
        forged = good.raw[:-1] + bytes([good.raw[-1] ^ 1])
        raws = [b"\x00" + i.to_bytes(4, "big") * 50 for i in range(200)] + [forged]
        raws += [
            Tx.create(
                funded_key(), chain.params.chain_id, 10**6 + i, FEE, Transfer(b"\x02" * 20, 1)
            ).raw
            for i in range(50)
        ]
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for raw in raws:
                with pytest.raises(TxError):
                    service.submit(raw, from_peer=True)
            gc.collect()
            garbage = list(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert garbage == []
    finally:
        chain.close()


def test_when_the_collector_runs_changes_no_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing consensus-visible depends on the collector: blocks built on a chain that
    collects after every block import, with the same results, on one that never does."""
    monkeypatch.setattr(collector, "COLLECT_AFTER", 0)
    a = open_chain(tmp_path / "a")
    builder = Builder(a)
    blocks = []
    for i in range(5):
        block = builder.commit([builder.transfer(funded_key(), bytes([i + 1]) * 20)])
        blocks.append((block.encode(), builder.last_commit))
    monkeypatch.setattr(collector, "COLLECT_AFTER", 10**12)
    b = open_chain(tmp_path / "b")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for raw, commit in blocks:
            assert commit is not None
            b.import_block(Block.decode(raw, 1 << 30, 1 << 20), commit)
    finally:
        if was_enabled:
            gc.enable()
    assert a.head is not None and b.head is not None
    assert b.head.hash() == a.head.hash()
    assert b.tree.root == a.tree.root
    a.close()
    b.close()


def test_a_chain_dropped_unclosed_releases_its_database_without_the_collector(
    tmp_path: Path,
) -> None:
    """A chain dropped without `close` (a CLI command that failed half-way, a refused
    open) is freed by refcounting: its LevelDB lock goes at once, not at the collector's
    next run 200,000 objects later, and the home opens again in the same process."""
    home = tmp_path / "home"
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        chain = open_chain(home)
        Builder(chain).commit([])
        del chain
        with pytest.raises(StoreError):
            open_chain(home, history_genesis())
        again = open_chain(home)
        assert again.height == 1
        again.close()
    finally:
        if was_enabled:
            gc.enable()
