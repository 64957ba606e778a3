"""An attacker's review of the runs of transfers (`accounts.process_transfers` in block
execution, `tx.decode_transfer_run` in block decoding): the blocks here go after the
corners that tests/property/test_transfer_runs.py does not reach, and each holds the
run to the path it replaces (the per-kind handlers, `Tx.decode` + `check_stateless`).

- execution: balances at the type's bound (a credit that would pass MAX_AMOUNT), fees
  of 0 and MAX_AMOUNT, a self-payment that only `check_stateless` keeps out (a run must
  not be what turns it into another state), memos, accounts created and spent from in
  the same run, nonce gaps and repeats, a non-transfer that debits a sender between two
  of its transfers; outcomes compared whole, refusals (type, reason, message) and what
  a refused block leaves pending included.
- decoding: valid blocks whose txs get a msgpack header or integer re-encoded in a
  longer form, a byte flipped, cut or added, or a repeat; the decoded txs compared
  slot by slot, by hash and by their pickles (the form the verifier processes see).
- a store: a block that the proposer built tx by tx is imported through the runs, and
  again after the node restarts, and after the same proposal was aborted once.

Every seed is in the test's id and in its failure message.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import pytest

from fluxchain.core import accounts
from fluxchain.core import execute as ex
from fluxchain.core.accounts import get_account
from fluxchain.core.block import Block
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import address_of, sha256
from fluxchain.core.encoding import MAX_AMOUNT
from fluxchain.core.epochs import get_validators
from fluxchain.core.errors import BlockError
from fluxchain.core.genesis import build_genesis_state
from fluxchain.core.params import COIN, Params
from fluxchain.core.proposer import proposer as proposer_of
from fluxchain.core.records import Account, account_key
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.statetree import StateTree
from fluxchain.core.tx import NodeUnregister, Transfer, Tx
from tests.property.test_transfer_runs import HEADER, _mutated, _transfer_raw
from tests.support.chain import (
    VALIDATORS,
    Builder,
    app_register,
    app_spec,
    devnet_genesis,
    open_chain,
    owner_key,
    reveal_of,
)

GENESIS = devnet_genesis()
PARAMS = GENESIS.params
KEYS = [owner_key(i) for i in range(VALIDATORS + 6)]
ADDRESSES = [address_of(key.public_key) for key in KEYS]


def _general_path(ctx: BlockContext, txs: Sequence[Tx], start: int) -> int:
    """The reference: no run taken, every tx goes through its kind's handler."""
    del ctx, txs
    return start


def _fresh(balances: dict[bytes, int]) -> tuple[State, StateTree]:
    """The devnet genesis state with some balances set outright (at the type's bound too,
    beyond what a genesis file would hold)."""
    state, tree = new_state(), StateTree()
    build_genesis_state(GENESIS, state)
    for address, balance in balances.items():
        account: Account = state.get(account_key(address)) or Account(0, 0)
        state.put(account_key(address), Account(balance, account.nonce))
    tree.update(state.pending_changes())
    state.commit()
    return state, tree


def _outcome(balances: dict[bytes, int], txs: list[Tx]) -> tuple[object, ...]:
    state, tree = _fresh(balances)
    root = tree.root
    validators = get_validators(state)
    proposer = proposer_of(validators, 1, 0)
    reveal = reveal_of(PARAMS.chain_id, validators, 1, 0)
    try:
        execution = ex.execute(state, tree, PARAMS, 1, proposer, reveal, txs)
    except BaseException as exc:  # the run must fail as the handlers do, whatever the type
        message = f"{exc.reason}: {exc.message}" if isinstance(exc, BlockError) else str(exc)
        # a refused block leaves nothing: no pending write, the tree as before
        return "refused", type(exc).__name__, message, state.has_pending(), tree.root == root
    return (
        "executed",
        execution.state_root,
        execution.events,
        execution.events_root,
        execution.changes,
        execution.tx_ids,
    )


def _hostile_block(rng: random.Random) -> tuple[dict[bytes, int], list[Tx]]:
    bound = (0, 1, PARAMS.min_fee, 10**6, MAX_AMOUNT // 2, MAX_AMOUNT - 1, MAX_AMOUNT)
    balances = {
        ADDRESSES[i]: rng.choice(bound) if rng.random() < 0.3 else rng.choice((10**9, 10**15))
        for i in rng.sample(range(len(KEYS)), rng.randrange(len(KEYS) + 1))
    }
    strangers = [rng.randbytes(20) for _ in range(2)]
    nonces: dict[int, int] = {}
    txs: list[Tx] = []
    for _ in range(rng.randrange(1, 30)):
        k = rng.randrange(len(KEYS))
        nonce = nonces.get(k, 0)
        if rng.random() < 0.03:
            nonce += rng.choice((-1, 1, 2))  # a repeat or a gap
        else:
            nonces[k] = nonce + 1
        fee = rng.choice((0, 1, PARAMS.base_fee, PARAMS.min_fee, 10**5, MAX_AMOUNT))
        if rng.random() < 0.97:
            fee = rng.choice((PARAMS.base_fee, PARAMS.min_fee, PARAMS.min_fee + 1, 10**5))
        roll = rng.random()
        if roll < 0.04:  # another kind between transfers: fee and nonce, then refused or not
            payload: Transfer | NodeUnregister = NodeUnregister(rng.randbytes(20))
        else:
            if roll < 0.06:
                to = ADDRESSES[k]  # a self-payment (refused only by check_stateless)
            elif roll < 0.2:
                to = rng.choice(strangers)
            else:
                to = rng.choice(ADDRESSES[:k] + ADDRESSES[k + 1 :])
            amount = rng.choice(
                (1, PARAMS.account_deposit - 1, PARAMS.account_deposit, COIN, 10**9)
            )
            if rng.random() < 0.03:
                amount = rng.choice((MAX_AMOUNT // 2 + 1, MAX_AMOUNT - 1, MAX_AMOUNT))
            memo = b"invoice 7" if rng.random() < 0.05 else b""
            payload = Transfer(to, amount, memo)
        txs.append(Tx.create(KEYS[k], PARAMS.chain_id, nonce, fee, payload))
    return balances, txs


@pytest.mark.parametrize("seed", range(0, 400, 50))
def test_transfer_runs_at_the_bounds_execute_as_tx_by_tx(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 hostile blocks a seed: the run and the handlers give the same outcome."""
    executed = 0
    for block_seed in range(seed, seed + 50):
        balances, txs = _hostile_block(random.Random(block_seed))
        batched = _outcome(balances, txs)
        with monkeypatch.context() as patch:
            patch.setattr(accounts, "process_transfers", _general_path)
            reference = _outcome(balances, txs)
        assert batched == reference, f"seed {block_seed}"
        executed += batched[0] == "executed"
    # not vacuous: some blocks of each seed apply whole (most are refused somewhere)
    assert executed > 0, f"seeds {seed}..{seed + 49}: no block applied"


def _longer_form(rng: random.Random, raw: bytes) -> bytes:
    """`raw` with one msgpack header or small int at a random place re-encoded in a longer
    (non-canonical) form, where there is one there."""
    data = bytearray(raw)
    at = rng.randrange(len(data))
    byte = data[at]
    if byte <= 0x7F:  # positive fixint -> uint8 or uint16
        data[at : at + 1] = bytes((0xCC, byte)) if rng.random() < 0.5 else bytes((0xCD, 0, byte))
    elif 0xA0 <= byte <= 0xBF:  # fixstr -> str8
        data[at : at + 1] = bytes((0xD9, byte & 0x1F))
    elif 0x90 <= byte <= 0x9F:  # fixarray -> array16
        data[at : at + 1] = bytes((0xDC, 0, byte & 0x0F))
    elif byte == 0xC4 and at + 1 < len(data):  # bin8 -> bin16
        data[at : at + 2] = bytes((0xC5, 0, data[at + 1]))
    else:
        data[at] ^= 1
    return bytes(data)


def _hostile_raws(rng: random.Random) -> list[bytes]:
    raws: list[bytes] = []
    for _ in range(rng.randrange(1, 25)):
        if rng.random() < 0.8:
            base = _transfer_raw(rng)
        else:  # signed by the codec's encoder: an empty memo, a memo, a zero amount
            base = Tx.create(
                rng.choice(KEYS),
                PARAMS.chain_id,
                rng.randrange(3),
                rng.choice((0, PARAMS.min_fee - 1, PARAMS.min_fee, 10**6)),
                Transfer(
                    rng.randbytes(20), rng.choice((0, 1, MAX_AMOUNT)), rng.choice((b"", b"x"))
                ),
            ).raw
        roll = rng.random()
        if roll < 0.55 or not raws:
            raws.append(base)
        elif roll < 0.7:
            raws.append(_mutated(rng, base))
        elif roll < 0.9:
            raws.append(_longer_form(rng, base))
        else:
            raws.append(rng.choice(raws))
    return raws


def _decoded(raws: list[bytes], ids: list[bytes] | None, params: Params) -> object:
    try:
        txs = ex.decode_block_txs(Block(HEADER, tuple(raws), None), params, {}, ids)
    except BlockError as exc:
        return exc.reason, exc.message
    return [
        (
            type(tx),
            type(tx.payload),
            tx.payload,
            hash(tx),
            pickle.dumps(tx),
            *(getattr(tx, f.name) for f in fields(Tx)),
        )
        for tx in txs
    ]


def _decode_general_path(
    raws: Sequence[bytes],
    start: int,
    ids: Sequence[bytes] | None,
    params: Params,
    seen: set[bytes],
    out: list[Tx],
) -> int:
    """The reference: no run taken, every tx decoded by `Tx.decode` and checked."""
    del raws, ids, params, seen, out
    return start


@pytest.mark.parametrize("seed", range(0, 4000, 500))
def test_mutated_transfer_blocks_decode_as_tx_by_tx(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500 blocks a seed, with and without ids, some under a tx size limit at the size
    of a transfer: the same txs (slots, hashes, pickles) or the same refusal."""
    decoded = 0
    for block_seed in range(seed, seed + 500):
        rng = random.Random(block_seed)
        raws = _hostile_raws(rng)
        ids = [sha256(raw) for raw in raws] if block_seed % 2 else None
        params = PARAMS
        if block_seed % 3 == 0:
            params = replace(PARAMS, max_tx_bytes=rng.choice((150, 160, 170)))
        batched = _decoded(raws, ids, params)
        with monkeypatch.context() as patch:
            patch.setattr(ex, "decode_transfer_run", _decode_general_path)
            reference = _decoded(raws, ids, params)
        assert batched == reference, f"seed {block_seed}"
        if isinstance(batched, list):
            decoded += 1
            # and as the generic codec alone builds them (what `decode`'s shortcut is held to)
            for entry in batched:
                raw = entry[-3]
                assert isinstance(raw, bytes)
                codec = Tx.decode_by_codec(raw, params.max_tx_bytes)
                assert entry[4] == pickle.dumps(codec), f"seed {block_seed}"
                assert entry[3] == hash(codec), f"seed {block_seed}"
    assert decoded > 0, f"seeds {seed}..{seed + 499}: every block refused"


def _spends_within_the_block(b: Builder, rng: random.Random) -> list[Tx]:
    """Transfers that create accounts whose new holders spend in the same block, payments
    back and forth, and app registrations debiting senders between their transfers."""
    funded = [owner_key(i) for i in range(VALIDATORS, VALIDATORS + 4)]
    newcomers = [owner_key(i) for i in range(VALIDATORS + 20, VALIDATORS + 24)]  # not in genesis
    txs: list[Tx] = []
    for key, newcomer in zip(funded, newcomers, strict=True):
        txs.append(b.transfer(key, address_of(newcomer.public_key), 10 * COIN))
    for round_ in range(3):
        for i, key in enumerate(funded + newcomers):
            to = (funded + newcomers)[(i + 1 + round_) % 8]
            txs.append(b.transfer(key, address_of(to.public_key), rng.choice((1, COIN))))
        owner = funded[round_]
        txs.append(
            app_register(b, owner, app_spec(owner, f"runapp{rng.randrange(10**6)}", expire=200))
        )
    return txs


def test_a_block_built_tx_by_tx_imports_through_runs_on_a_store_and_after_a_restart(
    tmp_path: Path,
) -> None:
    """The proposer builds tx by tx (`build_block`), importers run the same block through
    the runs: the header's state root, checked on import, must agree, on a LevelDB state
    read through its cache, after an aborted execution of the same proposal, and once the
    node has restarted (nothing but the store carries over)."""
    seed = 12
    rng = random.Random(seed)
    chain = open_chain(tmp_path / "chain")
    try:
        b = Builder(chain)
        txs = _spends_within_the_block(b, rng)
        block, commit = b.block(txs)
        assert not b.rejected, f"seed {seed}: {b.rejected}"
        assert len(block.txs) == len(txs)
        # a proposal executed and then lost its round, then the block commits
        ex.abort(chain.state, chain.tree, chain.execute_proposal(block))
        chain.import_block(block, commit)
        b.last_commit = commit
        balances = {a: get_account(chain.state, a) for a in ADDRESSES}
        root = chain.head.state_root if chain.head is not None else b""
    finally:
        chain.close()
    chain = open_chain(tmp_path / "chain")
    try:
        assert chain.head is not None and chain.head.state_root == root
        assert {a: get_account(chain.state, a) for a in ADDRESSES} == balances
        b = Builder(chain, time_ms=b.time_ms, last_commit=b.last_commit)
        b.commit(_spends_within_the_block(b, rng))
        assert not b.rejected, f"seed {seed}: {b.rejected}"
        assert chain.height == 2
    finally:
        chain.close()
