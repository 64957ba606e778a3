"""Signature checks on block import: the verifier processes, and txs admitted before."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ecdsa
import msgpack
import pytest
from ecdsa.util import sigdecode_string, sigencode_string

from fluxchain.core.block import Block
from fluxchain.core.crypto import tagged_hash, verify
from fluxchain.core.encoding import chain_id_fits, pack, unpack_fields
from fluxchain.core.errors import BlockError, DecodeError, FluxError, GenesisError, Reason
from fluxchain.core.genesis import Genesis
from fluxchain.core.params import COIN
from fluxchain.core.tx import (
    Transfer,
    Tx,
    signature_verdicts,
    signature_verdicts_of,
    signing_digest,
)
from fluxchain.core.votes import Commit
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.admission import TxAdmission
from fluxchain.store import verifier
from fluxchain.store.chain import Chain
from fluxchain.store.verifier import MIN_BATCH, PendingSignatures, VerifierPool
from tests.support.chain import Builder, funded_key, open_chain
from tests.support.wait import wait_until

RECEIVER = bytes(range(20))
ORDER = ecdsa.SECP256k1.order


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifierPool]:
    verifier = VerifierPool(2)
    yield verifier
    verifier.close()


def _forge(tx: Tx) -> Tx:
    """The same tx with one bit of its signature flipped."""
    raw = tx.raw[:-1] + bytes([tx.raw[-1] ^ 1])
    return Tx.decode(raw, 1 << 20)


def _transfers(builder: Builder, count: int) -> list[Tx]:
    keys = [funded_key(4 + i % 3) for i in range(count)]
    return [builder.transfer(key, RECEIVER, COIN + i) for i, key in enumerate(keys)]


def test_signature_verdicts_agree_with_the_tx() -> None:
    builder_key = funded_key(4)
    tx = Tx.create(builder_key, "flux-test", 0, 1_000, Transfer(RECEIVER, 5))
    forged = _forge(tx)
    other_chain = tx.raw.replace(b"flux-test", b"flux-tesu")  # signed for another chain
    raws = [tx.raw, forged.raw, other_chain, b"\x93\x01\x02\x03", b"", tx.raw + b"\x00"]
    assert signature_verdicts(raws) == bytes([1, 0, 0, 0, 0, 0])
    assert [tx.signature_valid(), forged.signature_valid()] == [True, False]
    assert signature_verdicts([]) == b""


@pytest.mark.parametrize("seed", range(5))
def test_the_batch_verdicts_are_verifys(seed: int) -> None:
    """The verifier processes' loop (`signature_verdicts`, on raw txs) and the importer's
    (`signature_verdicts_of`, on decoded ones) give, tx by tx, what `verify` says of the
    tx's signature (raw: when its three fields read, else 0): valid txs mixed with every
    way a signature or its fields are refused, in seeded random batches."""
    rng = random.Random(seed)
    keys = [funded_key(4 + i) for i in range(3)]

    def resigned(raw: bytes, index: int, value: object) -> bytes:
        fields = msgpack.unpackb(raw)
        fields[index] = value
        return pack(fields)

    def variant() -> bytes:
        key = rng.choice(keys)
        raw = Tx.create(key, "flux-test", rng.randrange(100), 1_000, Transfer(RECEIVER, 5)).raw
        r, s = sigdecode_string(raw[-64:], ORDER)
        return rng.choice(
            [
                raw,  # valid, most often
                raw,
                raw,
                raw[:-1] + bytes([raw[-1] ^ 1]),  # a bit of the signature flipped
                raw.replace(b"flux-test", b"flux-tesu"),  # signed for another chain
                resigned(raw, 7, sigencode_string(r, ORDER - s, ORDER)),  # high S
                resigned(raw, 3, rng.choice(keys).public_key),  # maybe another sender
                resigned(raw, 3, b"\x02" + b"\xff" * 32),  # a sender off the curve
                resigned(raw, 3, key.public_key[:32]),  # a short sender
                resigned(raw, 7, raw[-64:-1]),  # a short signature
                resigned(raw, 7, raw[-64:] + b"\x00"),  # a long signature
                resigned(raw, 7, b"\xff" * 64),  # r and s past the order
                resigned(raw, 1, 7),  # a chain id that is not text
                _hostile_chain_id_tx(Tx.decode(raw, 1 << 20)),  # one past its byte bound
                raw + b"\x00",  # a byte after the tx
                raw[:-70],  # cut short
                pack([1, 2, 3]),  # another shape
                b"\xc1",  # not msgpack
            ]
        )

    def verify_each(raw: bytes) -> bool:
        """What the workers said before their batch loop: `verify`, a tx at a time."""
        try:
            fields = unpack_fields(raw)
        except DecodeError:
            return False
        if type(fields) is not list or len(fields) != 8:
            return False
        chain_id, sender, signature = fields[1], fields[3], fields[7]
        if not (type(chain_id) is str and chain_id_fits(chain_id)):
            return False
        if type(sender) is not bytes or type(signature) is not bytes:
            return False
        return verify(sender, signing_digest(chain_id, raw), signature)

    for _ in range(8):
        raws = [variant() for _ in range(rng.randrange(0, 60))]
        expected = bytes(verify_each(raw) for raw in raws)
        assert signature_verdicts(raws) == expected, f"seed {seed}"
        txs = []
        for raw in raws:
            with contextlib.suppress(DecodeError):
                txs.append(Tx.decode(raw, 1 << 20))
        expected = bytes(tx.signature_valid() for tx in txs)
        assert signature_verdicts_of(txs) == expected, f"seed {seed}"


@pytest.mark.parametrize("use_pool", [False, True])
def test_import_checks_every_signature(tmp_path: Path, pool: VerifierPool, use_pool: bool) -> None:
    chain = open_chain(tmp_path / "a", verifier=pool if use_pool else None)
    builder = Builder(chain)
    builder.commit(_transfers(builder, 2 * MIN_BATCH))
    assert chain.height == 1


@pytest.mark.parametrize("use_pool", [False, True])
@pytest.mark.parametrize("bad_index", [0, 2 * MIN_BATCH - 1, 3 * MIN_BATCH - 1])
def test_a_bad_signature_voids_the_block(
    tmp_path: Path, pool: VerifierPool, use_pool: bool, bad_index: int
) -> None:
    chain = open_chain(tmp_path / "a", verifier=pool if use_pool else None)
    builder = Builder(chain)
    builder.commit()
    root, height = chain.tree.root, chain.height
    txs = _transfers(builder, 3 * MIN_BATCH)
    txs[bad_index] = _forge(txs[bad_index])
    block, commit = builder.block(txs)
    assert len(block.txs) == len(txs)  # a proposer does not check signatures
    with pytest.raises(BlockError) as refused:
        chain.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), commit)
    assert refused.value.reason is Reason.INVALID_TX
    assert "bad_signature" in refused.value.message
    assert txs[bad_index].id.hex()[:16] in refused.value.message
    assert (chain.tree.root, chain.height) == (root, height)
    assert not chain.state.has_pending()
    # The pool answers the next block in step: nothing of this one is left in the pipes.
    builder.nonces.clear()
    builder.commit(_transfers(builder, 2 * MIN_BATCH))
    assert chain.height == height + 1


def test_admitted_txs_are_not_checked_again(
    tmp_path: Path, pool: VerifierPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain: Chain = open_chain(tmp_path / "a", verifier=pool)
    admission = TxAdmission(chain)
    builder = Builder(chain)
    txs = _transfers(builder, 2 * MIN_BATCH)
    for tx in txs:
        admission.admit(tx.raw)
    block, commit = builder.block(txs)

    def no_more_checks(*args: object) -> bool:
        raise AssertionError("an admitted tx was verified again")

    def none_checked(
        keys: Sequence[bytes], digests: Sequence[bytes], signatures: Sequence[bytes]
    ) -> int | None:
        assert not signatures, "an admitted tx was verified again"
        return None

    monkeypatch.setattr("fluxchain.core.tx.first_invalid", none_checked)
    monkeypatch.setattr(VerifierPool, "submit", no_more_checks)
    chain.import_block(
        Block.decode(block.encode(), 1 << 30, 1 << 20), commit, checked=admission.checked
    )
    assert chain.height == 1


def test_workers_exit_when_their_parent_dies() -> None:
    script = (
        "import os\n"
        "from fluxchain.store.verifier import VerifierPool\n"
        "pool = VerifierPool(3)\n"
        "print(' '.join(str(p.pid) for p in pool._processes), flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=60
    ).stdout
    pids = [int(pid) for pid in out.split()]
    assert len(pids) == 3
    wait_until(
        lambda: not any(_running(pid) for pid in pids), 10, "the pool's workers gone", poll_s=0.05
    )


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize("admitted", [0, MIN_BATCH])
def test_the_first_bad_signature_is_named_whoever_checks_it(
    tmp_path: Path, pool: VerifierPool, admitted: int
) -> None:
    """Workers check the front of a block, the importer the tail (its own share); with a
    bad signature in each, the earlier one is reported, and nothing of the block stays."""
    chain = open_chain(tmp_path / "a", verifier=pool)
    admission = TxAdmission(chain)
    builder = Builder(chain)
    txs = _transfers(builder, admitted + 4 * MIN_BATCH)
    for tx in txs[:admitted]:
        admission.admit(tx.raw)  # known txs are skipped: the shares are of the others
    early, late = admitted + MIN_BATCH, len(txs) - 1
    txs[early], txs[late] = _forge(txs[early]), _forge(txs[late])
    block, commit = builder.block(txs)
    root = chain.tree.root
    with pytest.raises(BlockError) as refused:
        chain.import_block(
            Block.decode(block.encode(), 1 << 30, 1 << 20), commit, checked=admission.checked
        )
    assert txs[early].id.hex()[:16] in refused.value.message
    assert chain.tree.root == root and not chain.state.has_pending()
    txs[early] = _transfers(Builder(chain), 1)[0]  # only the importer's share is bad now
    block, commit = builder.block(txs)
    with pytest.raises(BlockError) as refused:
        chain.import_block(
            Block.decode(block.encode(), 1 << 30, 1 << 20), commit, checked=admission.checked
        )
    assert txs[late].id.hex()[:16] in refused.value.message


def test_a_dead_worker_costs_speed_not_safety(tmp_path: Path) -> None:
    """A verifier process killed between blocks: the next block's signatures are all
    checked in the importing process, a bad one is still refused, and the pool retires."""
    pool = VerifierPool(1)
    try:
        chain = open_chain(tmp_path / "a", verifier=pool)
        builder = Builder(chain)
        builder.commit(_transfers(builder, 2 * MIN_BATCH))
        pool._processes[0].kill()
        pool._processes[0].join(timeout=10)
        txs = _transfers(builder, 3 * MIN_BATCH)
        txs[MIN_BATCH] = _forge(txs[MIN_BATCH])
        block, commit = builder.block(txs)
        with pytest.raises(BlockError) as refused:
            chain.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), commit)
        assert txs[MIN_BATCH].id.hex()[:16] in refused.value.message
        assert not pool.healthy
        builder.nonces.clear()
        builder.commit(_transfers(builder, 2 * MIN_BATCH))  # verified in process from now on
        assert chain.height == 2
    finally:
        pool.close()


def test_a_bad_signature_in_the_last_chunk_is_found(tmp_path: Path) -> None:
    """The queue is many chunks, shared by the worker and the importer: a bad signature
    in the last one is found whoever takes it, and the pool stays in service."""
    pool = VerifierPool(1)
    try:
        chain = open_chain(tmp_path / "a", verifier=pool)
        builder = Builder(chain)
        txs = _transfers(builder, 12 * MIN_BATCH)
        txs[-1] = _forge(txs[-1])
        block, commit = builder.block(txs)
        with pytest.raises(BlockError) as refused:
            chain.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), commit)
        assert txs[-1].id.hex()[:16] in refused.value.message
        assert pool.healthy
    finally:
        pool.close()


SEED = 20261126


@pytest.mark.parametrize("round_", range(6))
def test_the_pool_and_the_importer_alone_agree_on_every_block(
    tmp_path: Path, pool: VerifierPool, round_: int
) -> None:
    """Random block sizes, random bad signatures, some txs admitted beforehand: importing
    with the workers gives exactly the verdict of importing without them."""
    rng = random.Random(SEED + round_)
    size = rng.randrange(MIN_BATCH, 12 * MIN_BATCH)
    bad = sorted(rng.sample(range(size), rng.choice([0, 1, 1, 3])))
    admitted = rng.sample(range(size), rng.randrange(0, size // 2))
    outcomes = []
    for use_pool in (False, True):
        chain = open_chain(tmp_path / f"{use_pool}", verifier=pool if use_pool else None)
        admission = TxAdmission(chain)
        builder = Builder(chain)
        txs = _transfers(builder, size)
        for index in admitted:
            if index not in bad:
                admission.admit(txs[index].raw)
        for index in bad:
            txs[index] = _forge(txs[index])
        block, commit = builder.block(txs)
        try:
            chain.import_block(
                Block.decode(block.encode(), 1 << 30, 1 << 20), commit, checked=admission.checked
            )
            outcomes.append("imported")
        except BlockError as exc:
            outcomes.append(exc.message)
        chain.close()
    expected = f"tx {txs[bad[0]].id.hex()[:16]}: bad_signature" if bad else "imported"
    assert outcomes == [expected, expected], f"seed {SEED + round_}"


def _two_blocks(
    tmp_path: Path, forged: int | None = None
) -> tuple[tuple[Block, Commit], tuple[Block, Commit], list[Tx]]:
    """Blocks 1 and 2 of a chain built elsewhere, each with signatures for the pool; one
    tx of block 2 forged if asked."""
    builder = Builder(open_chain(tmp_path / "source"))
    first = builder.commit(_transfers(builder, 2 * MIN_BATCH))
    assert builder.last_commit is not None
    txs = _transfers(builder, 2 * MIN_BATCH)
    if forged is not None:
        txs[forged] = _forge(txs[forged])
    second, commit = builder.block(txs)
    builder.chain.close()
    decoded = Block.decode(second.encode(), 1 << 30, 1 << 20)
    return (first, builder.last_commit), (decoded, commit), txs


def test_the_next_blocks_signatures_go_out_while_one_commits(
    tmp_path: Path, pool: VerifierPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, first_commit), (second, second_commit), _ = _two_blocks(tmp_path)
    chain = open_chain(tmp_path / "a", verifier=pool)
    heights_at_submit: list[int] = []
    submit = VerifierPool.submit

    def recording(self: VerifierPool, raws: Sequence[bytes]) -> PendingSignatures:
        heights_at_submit.append(chain.height)
        return submit(self, raws)

    monkeypatch.setattr(VerifierPool, "submit", recording)
    chain.import_block(first, first_commit, upcoming=second)
    chain.import_block(second, second_commit)
    assert chain.height == 2
    assert heights_at_submit == [0, 0]  # block 2's went out before block 1 committed
    chain.close()


def test_a_bad_signature_sent_ahead_still_voids_its_block(
    tmp_path: Path, pool: VerifierPool
) -> None:
    (first, first_commit), (second, second_commit), txs = _two_blocks(tmp_path, forged=3)
    chain = open_chain(tmp_path / "a", verifier=pool)
    chain.import_block(first, first_commit, upcoming=second)
    root = chain.tree.root
    with pytest.raises(BlockError) as refused:
        chain.import_block(second, second_commit)
    assert txs[3].id.hex()[:16] in refused.value.message
    assert (chain.height, chain.tree.root) == (1, root) and not chain.state.has_pending()
    chain.close()


def test_signatures_sent_ahead_for_another_block_are_dropped(
    tmp_path: Path, pool: VerifierPool
) -> None:
    """The block that comes is not the one announced (a peer's fork, a retried sync): the
    verdicts sent ahead are collected and dropped, and the block that came is checked."""
    (first, first_commit), (second, _), _ = _two_blocks(tmp_path / "x")
    chain = open_chain(tmp_path / "a", verifier=pool)
    chain.import_block(first, first_commit, upcoming=second)
    builder = Builder(chain, last_commit=first_commit, time_ms=first.header.time_ms)
    other = _transfers(builder, 2 * MIN_BATCH)
    other[5] = _forge(other[5])
    block, commit = builder.block(other)
    with pytest.raises(BlockError) as refused:
        chain.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), commit)
    assert other[5].id.hex()[:16] in refused.value.message
    builder.nonces.clear()
    builder.commit(_transfers(builder, 2 * MIN_BATCH))
    assert chain.height == 2
    chain.close()


def test_a_body_swapped_under_the_header_sent_ahead_is_checked_as_its_own(
    tmp_path: Path, pool: VerifierPool
) -> None:
    """Attack: a sync peer announces block 2 (its signatures go out ahead), then serves its
    header over another body in which one tx's signature is forged. The verdicts and ids
    sent ahead are the announced body's: the body that came is checked on its own, and
    refused exactly as without the pipeline (naming the forged tx), then the real block 2
    imports."""
    (first, first_commit), (second, second_commit), txs = _two_blocks(tmp_path / "x")
    forged = _forge(txs[3])
    spoiled = replace(second, txs=(*second.txs[:3], forged.raw, *second.txs[4:]))
    assert spoiled.hash() == second.hash()
    refusals = []
    for upcoming in (None, second):
        chain = open_chain(tmp_path / f"ahead-{upcoming is not None}", verifier=pool)
        chain.import_block(first, first_commit, upcoming=upcoming)
        root = chain.tree.root
        with pytest.raises(BlockError) as refused:
            chain.import_block(spoiled, second_commit)
        refusals.append((refused.value.reason, refused.value.message))
        assert (chain.height, chain.tree.root) == (1, root) and not chain.state.has_pending()
        chain.import_block(second, second_commit)
        assert chain.get_block_bytes(2) == second.encode()
        chain.close()
    assert refusals[0] == (Reason.INVALID_TX, f"tx {forged.id.hex()[:16]}: bad_signature")
    assert refusals[1] == refusals[0]


def test_closing_with_signatures_sent_ahead_does_not_hang(
    tmp_path: Path, pool: VerifierPool
) -> None:
    (first, first_commit), (second, _), _ = _two_blocks(tmp_path)
    chain = open_chain(tmp_path / "a", verifier=pool)
    chain.import_block(first, first_commit, upcoming=second)
    chain.close()  # collects the verdicts nobody will read
    reopened = open_chain(tmp_path / "a", verifier=pool)
    builder = Builder(reopened, last_commit=first_commit, time_ms=first.header.time_ms)
    builder.commit(_transfers(builder, 2 * MIN_BATCH))  # the pool answers in step
    assert reopened.height == 2
    reopened.close()


def _nonce_as_uint64(raw: bytes) -> bytes:
    """The same tx with its nonce in a longer form: msgpack reads the same fields."""
    fields: list[Any] = msgpack.unpackb(raw)
    nonce = b"\xcf" + int(fields[4]).to_bytes(8, "big")
    return b"\x98" + b"".join(map(pack, fields[:4])) + nonce + b"".join(map(pack, fields[5:]))


@pytest.mark.parametrize(
    ("flaw", "reason"),
    [
        (lambda raw: raw[:-1], "malformed"),  # cut short
        (lambda raw: raw + b"\x00", "malformed"),  # a second object after it
        (_nonce_as_uint64, "non_canonical"),
    ],
)
@pytest.mark.parametrize("index", [0, 7, 2 * MIN_BATCH - 1])
def test_a_malformed_tx_is_named_however_the_block_is_parsed(
    tmp_path: Path, flaw: Callable[[bytes], bytes], reason: str, index: int
) -> None:
    """A block with one tx that does not decode is refused, naming that tx and why, and
    leaves nothing behind."""
    chain = open_chain(tmp_path / "a")
    builder = Builder(chain)
    txs = _transfers(builder, 2 * MIN_BATCH)
    block, commit = builder.block(txs)
    raws = list(block.txs)
    raws[index] = flaw(raws[index])
    assert raws[index] != block.txs[index]
    spoiled = replace(block, txs=tuple(raws))
    with pytest.raises(BlockError) as refused:
        chain.import_block(spoiled, commit)
    assert refused.value.reason is Reason.INVALID_TX
    assert refused.value.message.startswith(f"tx {index}: {reason}:")
    assert chain.height == 0 and not chain.state.has_pending()
    chain.import_block(block, commit)  # the block as it was imports
    assert chain.height == 1


def test_a_stuck_queue_retires_the_pool_in_the_importer_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim that cannot get the queue's lock gives up: in a worker, on that block only
    and saying so; in the importer, for good, verifying in process from then on."""
    pool = VerifierPool(1)
    try:
        monkeypatch.setattr(verifier, "_LOCK_TIMEOUT_S", 0.01)
        assert pool._lock.acquire()  # held, as by a process killed inside a claim
        importer = os.getpid()
        monkeypatch.setattr(os, "getpid", lambda: importer + 1)  # as a worker
        assert pool.claim(100) is None
        assert pool.healthy
        assert "stops on this block" in caplog.text
        assert "from now on" not in caplog.text
        monkeypatch.setattr(os, "getpid", lambda: importer)
        assert pool.claim(100) is None
        assert not pool.healthy
        assert "verifying signatures in the importing process from now on" in caplog.text
    finally:
        pool._lock.release()
        pool.close()


def _hostile_chain_id_tx(tx: Tx) -> bytes:
    """`tx` re-encoded with a chain id of 64 four-byte characters (256 bytes of UTF-8):
    64 characters, so it passed a bound counted in characters."""
    fields = msgpack.unpackb(tx.raw)
    fields[1] = "\U0001d509" * 64
    return pack(fields)


def test_multibyte_chain_id_is_refused_and_the_verifier_pool_survives(
    tmp_path: Path, pool: VerifierPool
) -> None:
    """Issue 17: a block with such a tx made every verifier process raise ValueError (a
    digest stores the chain id's length in one byte), retiring the pool for good, and the
    error escaped the import path. Now the tx is refused as malformed, the pool stays,
    and the next block is verified on it."""
    chain = open_chain(tmp_path / "a", verifier=pool)
    builder = Builder(chain)
    builder.commit()
    txs = _transfers(builder, 2 * MIN_BATCH)
    block, commit = builder.block(txs)
    hostile_raw = _hostile_chain_id_tx(txs[-1])
    assert signature_verdicts([hostile_raw]) == b"\x00"
    with pytest.raises(DecodeError) as malformed:
        Tx.decode(hostile_raw, 1 << 20)
    assert malformed.value.reason is Reason.BAD_FIELD
    hostile = Block(block.header, (*block.txs[:-1], hostile_raw), block.last_commit)
    root, height = chain.tree.root, chain.height
    with pytest.raises(BlockError) as refused:
        chain.import_block(Block.decode(hostile.encode(), 1 << 30, 1 << 20), commit)
    assert refused.value.reason is Reason.INVALID_TX
    assert (chain.tree.root, chain.height) == (root, height)
    assert pool.healthy
    builder.nonces.clear()
    builder.commit(_transfers(builder, 2 * MIN_BATCH))
    assert chain.height == height + 1 and pool.healthy


def test_a_chain_id_is_bounded_in_bytes() -> None:
    """Genesis, txs and digests agree: at most 64 bytes of UTF-8, whatever the characters."""
    assert chain_id_fits("a" * 64) and not chain_id_fits("a" * 65)
    assert chain_id_fits("\U0001d509" * 16) and not chain_id_fits("\U0001d509" * 17)
    assert not chain_id_fits("\ud800")  # a lone surrogate has no UTF-8 form
    with pytest.raises(FluxError):
        tagged_hash(b"tag", "\U0001d509" * 64, b"")
    params = new_devnet_genesis(1).to_json()
    params["chain_id"] = params["params"]["chain_id"] = "\U0001d509" * 17
    with pytest.raises(GenesisError):
        Genesis.from_json(params)


def test_a_worker_that_fails_on_a_block_reports_it_and_serves_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a block still make a worker raise, the worker lives on: the importer checks
    that block's signatures itself, and the pool stays to verify the next block."""
    chain = open_chain(tmp_path / "a")
    builder = Builder(chain)
    block, commit = builder.block(_transfers(builder, 2 * MIN_BATCH))
    poison = block.txs[-1]
    importer = os.getpid()

    def choke(chunk: Sequence[bytes]) -> bytearray:
        if poison in chunk and os.getpid() != importer:
            raise RuntimeError("a bug in a worker")
        return signature_verdicts(chunk)

    # Patched before the fork, so that the workers of this pool inherit it.
    monkeypatch.setattr(verifier, "signature_verdicts", choke)
    own = VerifierPool(2)
    chain.close()
    try:
        chain = open_chain(tmp_path / "a", verifier=own)
        for _ in range(2):
            own.submit(block.txs).check()  # every signature is good: no BlockError
            assert own.healthy
        chain.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), commit)
        assert chain.height == 1 and own.healthy
    finally:
        own.close()


def test_a_stalled_worker_leaves_every_signature_to_the_importer() -> None:
    """A worker that does not run (stopped, or starved of CPU) claims nothing: the
    importer takes every chunk itself, counts them in `joined` (the split bench.import
    reports), and the verdicts are the same; the worker, let run again, finds the queue
    empty and answers for the block."""
    pool = VerifierPool(1)
    try:
        key = funded_key(4)
        txs = [Tx.create(key, "flux-test", i, 1_000, Transfer(RECEIVER, 5)) for i in range(40)]
        txs[33] = _forge(txs[33])
        worker = pool.pids[0]
        os.kill(worker, signal.SIGSTOP)
        try:
            pending = pool.submit([tx.raw for tx in txs])  # 40 small txs fit in the pipe
            pending.join(lambda start, end: signature_verdicts_of(txs[start:end]))
        finally:
            os.kill(worker, signal.SIGCONT)
        assert pool.joined == len(txs)
        with pytest.raises(BlockError) as refused:
            pending.check()
        assert txs[33].id.hex()[:16] in refused.value.message
        assert pool.healthy
    finally:
        pool.close()
