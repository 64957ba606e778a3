"""Block import's pipeline (issue 24): the next block's txs are decoded while a block's
batch is written, a block reads each key it finds absent from the store once, and the
store's tables are no longer compressed.

Neither may change an outcome: the blocks, roots and errors are those of an import
without them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import plyvel
import pytest

from fluxchain.core import execute as ex
from fluxchain.core.block import Block
from fluxchain.core.errors import BlockError, Reason, StoreError
from fluxchain.core.params import COIN
from fluxchain.core.records import account_key
from fluxchain.core.tx import Tx
from fluxchain.core.votes import Commit
from fluxchain.store.chain import Chain
from fluxchain.store.verifier import MIN_BATCH
from tests.support.chain import Builder, funded_key, open_chain

Blocks = tuple[tuple[Block, Commit], tuple[Block, Commit], list[Tx]]


def _two_blocks(tmp_path: Path) -> Blocks:
    """Blocks 1 and 2 of a chain built elsewhere, as decoded from the wire, and the txs
    of block 2."""
    builder = Builder(open_chain(tmp_path / "source"))
    first = builder.commit(_transfers(builder, 2 * MIN_BATCH))
    assert builder.last_commit is not None
    first_commit = builder.last_commit
    txs = _transfers(builder, 2 * MIN_BATCH)
    second, commit = builder.block(txs)
    builder.chain.close()
    return (first, first_commit), (Block.decode(second.encode(), 1 << 30, 1 << 20), commit), txs


def _transfers(builder: Builder, count: int) -> list[Tx]:
    keys = [funded_key(4 + i % 3) for i in range(count)]
    return [builder.transfer(key, bytes([i]) * 20, COIN + i) for i, key in enumerate(keys)]


def _decodes(monkeypatch: pytest.MonkeyPatch, chain: Chain) -> list[tuple[int, int]]:
    """(chain height, block height) of every block decoding from now on."""
    seen: list[tuple[int, int]] = []
    decode = ex.decode_block_txs

    def recording(block: Block, *args: Any) -> list[Tx]:
        seen.append((chain.height, block.height))
        return decode(block, *args)

    monkeypatch.setattr(ex, "decode_block_txs", recording)
    return seen


def test_the_next_blocks_txs_are_decoded_while_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, first_commit), (second, second_commit), _ = _two_blocks(tmp_path)
    chain = open_chain(tmp_path / "a")
    decodes = _decodes(monkeypatch, chain)
    chain.import_block(first, first_commit, upcoming=second)
    chain.import_block(second, second_commit)
    # block 2 was decoded once, before block 1 had committed
    assert decodes == [(0, 1), (0, 2)]
    assert (chain.height, chain.tree.root) == (2, second.header.state_root)
    chain.close()


def test_txs_decoded_ahead_for_another_block_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block that comes is not the one announced (a peer's fork, a retried sync)."""
    (first, first_commit), (second, _), _ = _two_blocks(tmp_path / "x")
    chain = open_chain(tmp_path / "a")
    chain.import_block(first, first_commit, upcoming=second)
    builder = Builder(chain, last_commit=first_commit, time_ms=first.header.time_ms)
    decodes = _decodes(monkeypatch, chain)
    builder.commit(_transfers(builder, MIN_BATCH))
    assert decodes[-1] == (1, 2)  # the block that came was decoded in its turn
    assert chain.height == 2
    chain.close()


def test_a_body_swapped_under_a_header_decoded_ahead_is_refused(tmp_path: Path) -> None:
    """Attack: a sync peer announces block 2, then serves its header over another body
    (one tx replaced by another valid tx of the same sender and nonce). The txs decoded
    ahead belong to the announced body: used for this one, they would pass the header's
    tx root, and the swapped body would be stored as block 2."""
    (first, first_commit), (second, second_commit), txs = _two_blocks(tmp_path / "x")
    chain = open_chain(tmp_path / "a")
    chain.import_block(first, first_commit, upcoming=second)
    swapped = Tx.create(
        funded_key(4), chain.params.chain_id, txs[0].nonce, txs[0].fee + 1, txs[0].payload
    )
    assert swapped.sender == txs[0].sender and swapped.raw != txs[0].raw
    spoiled = replace(second, txs=(swapped.raw, *second.txs[1:]))
    assert spoiled.hash() == second.hash()
    with pytest.raises(BlockError) as refused:
        chain.import_block(spoiled, second_commit)
    assert refused.value.reason is Reason.BAD_TX_ROOT
    assert chain.height == 1 and not chain.state.has_pending()
    chain.import_block(second, second_commit)
    assert chain.get_block_bytes(2) == second.encode()
    chain.close()


def test_a_malformed_block_decoded_ahead_fails_in_its_turn(tmp_path: Path) -> None:
    """Decoding ahead never raises: the block before it commits, and the malformed block
    is refused when it comes, naming the tx as an import without the pipeline does."""
    (first, first_commit), (second, second_commit), _ = _two_blocks(tmp_path / "x")
    spoiled = replace(second, txs=(second.txs[0][:-1], *second.txs[1:]))
    chain = open_chain(tmp_path / "a")
    chain.import_block(first, first_commit, upcoming=spoiled)
    assert chain.height == 1
    with pytest.raises(BlockError) as refused:
        chain.import_block(spoiled, second_commit)
    assert refused.value.reason is Reason.INVALID_TX
    assert refused.value.message.startswith("tx 0: malformed:")
    chain.import_block(second, second_commit)
    assert chain.height == 2
    chain.close()


class _FailingBatch:
    """A write batch whose write fails as a full disk does; puts go to the real one."""

    def __init__(self, batch: Any) -> None:
        self._batch = batch

    def put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)

    def write(self) -> None:
        raise OSError("IO error: No space left on device")


class _FailingDB:
    """The chain's LevelDB, with the next block batch's write failing."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def write_batch(self, **options: Any) -> _FailingBatch:
        return _FailingBatch(self._db.write_batch(**options))


def test_a_failed_write_beside_the_next_blocks_decoding_undoes_the_block(
    tmp_path: Path,
) -> None:
    """The write runs on a helper thread while this one decodes the next block: its
    failure still reaches the caller as STORE_WRITE_FAILED, with the chain as before the
    block, and the same import goes through once the disk takes it."""
    (first, first_commit), (second, second_commit), _ = _two_blocks(tmp_path / "x")
    chain = open_chain(tmp_path / "a")
    root, real = chain.tree.root, chain.db._db
    chain.db._db = _FailingDB(real)
    with pytest.raises(StoreError) as failed:
        chain.import_block(first, first_commit, upcoming=second)
    assert failed.value.reason is Reason.STORE_WRITE_FAILED
    assert (chain.height, chain.tree.root, chain.state.has_pending()) == (0, root, False)
    chain.db._db = real
    chain.import_block(first, first_commit, upcoming=second)
    chain.import_block(second, second_commit)
    assert chain.height == 2
    chain.close()
    reopened = open_chain(tmp_path / "a")
    assert (reopened.height, reopened.tree.root) == (2, second.header.state_root)
    reopened.close()


def test_a_block_reads_a_new_payees_account_from_the_store_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transfer to a new address used to read the absent account from the store (a
    walk of the state tree) three times on import: for the deposit rule, to credit it,
    and to pin it before the tree takes the block. Reads of absent keys outside a block
    are not kept (an API query for any address must not grow memory)."""
    payee = b"\x77" * 20
    builder = Builder(open_chain(tmp_path / "source"))
    block, commit = builder.block([builder.transfer(funded_key(), payee, 10 * COIN)])
    builder.chain.close()
    chain = open_chain(tmp_path / "a")
    key = account_key(payee)
    reads: list[bytes] = []
    stored = chain.state._backing
    assert stored is not None
    get = stored.get

    def counting(k: bytes) -> bytes | None:
        reads.append(k)
        return get(k)

    monkeypatch.setattr(stored, "get", counting)
    assert chain.state.get(key) is None and chain.state.get(key) is None
    assert reads.count(key) == 2  # outside a block: read each time, not kept
    reads.clear()
    chain.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), commit)
    assert reads.count(key) == 1
    assert chain.state.get(key) is not None
    chain.close()


def test_a_home_written_with_compressed_tables_opens_and_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store no longer compresses its tables (issue 24: Snappy cost ~3 µs a transfer
    for 17 % of space); a home written before, with Snappy, still opens, reads its state
    and takes new blocks, and the mix of tables reopens."""
    (first, first_commit), (second, second_commit), _ = _two_blocks(tmp_path / "x")
    real = plyvel.DB

    def snappy(path: str, **options: Any) -> Any:
        return real(path, **{**options, "compression": "snappy"})

    monkeypatch.setattr(plyvel, "DB", snappy)
    chain = open_chain(tmp_path / "a")
    chain.import_block(first, first_commit)
    chain.db._db.compact_range()  # every record in compressed tables
    chain.close()
    monkeypatch.setattr(plyvel, "DB", real)
    chain = open_chain(tmp_path / "a")
    assert (chain.height, chain.tree.root) == (1, first.header.state_root)
    chain.import_block(second, second_commit)
    chain.db._db.compact_range()
    chain.close()
    reopened = open_chain(tmp_path / "a")
    assert (reopened.height, reopened.tree.root) == (2, second.header.state_root)
    assert reopened.get_block_bytes(1) == first.encode()
    reopened.close()
