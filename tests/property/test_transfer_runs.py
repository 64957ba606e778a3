"""Runs of transfers executed in one go (`accounts.process_transfers`) against the same
blocks executed tx by tx (the per-kind handlers alone): over random blocks, seeded, the
two give byte-identical outcomes: the same state root, events, events root, encoded
state changes and tx ids, or the same refusal (reason and message) for a block with a
tx that fails, wherever it sits in the run.

The blocks mix what a run must get right: senders that are payees of earlier txs in the
same block, new accounts (some below the deposit), wrong nonces, balances that do not
cover the fee or the amount, fees around the base fee, and txs of other kinds between
transfers (node unregistrations by validator owners who also send, and ones that fail).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import fields, replace

import pytest

from fluxchain.core import accounts
from fluxchain.core import execute as ex
from fluxchain.core import tx as tx_module
from fluxchain.core.accounts import get_account
from fluxchain.core.block import Block, Header
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import SigningKey, address_of, sha256
from fluxchain.core.encoding import MAX_AMOUNT, pack, unpack
from fluxchain.core.epochs import get_validators
from fluxchain.core.errors import BlockError
from fluxchain.core.genesis import build_genesis_state
from fluxchain.core.params import COIN, Params
from fluxchain.core.proposer import proposer as proposer_of
from fluxchain.core.records import NODE
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.statetree import StateTree
from fluxchain.core.tx import (
    TX_VERSION,
    NodeUnregister,
    Transfer,
    Tx,
    TxKind,
    _decode_transfers_one_by_one,
    decode_transfer_run,
)
from tests.support.chain import VALIDATORS, devnet_genesis, owner_key, reveal_of

GENESIS = devnet_genesis()
PARAMS = GENESIS.params
# validator owners (0..3, who also send), funded dev accounts (4..7), and two accounts
# that start with nothing (8, 9: their txs fail until a transfer creates them)
KEYS = [owner_key(i) for i in range(VALIDATORS + 6)]
SEEDS = range(40)
BLOCKS_PER_SEED = 3


def _fresh() -> tuple[State, StateTree]:
    state, tree = new_state(), StateTree()
    build_genesis_state(GENESIS, state)
    tree.update(state.pending_changes())
    state.commit()
    return state, tree


def _tx_by_tx(ctx: BlockContext, txs: Sequence[Tx], start: int) -> int:
    """The reference: no run taken, every tx goes through its kind's handler."""
    del ctx, txs
    return start


Outcome = tuple[str, object]


def _execute(state: State, tree: StateTree, height: int, txs: list[Tx]) -> Outcome:
    validators = get_validators(state)
    proposer = proposer_of(validators, height, 0)
    reveal = reveal_of(PARAMS.chain_id, validators, height, 0)
    try:
        execution = ex.execute(state, tree, PARAMS, height, proposer, reveal, txs)
    except BlockError as exc:
        return "refused", (exc.reason, exc.message)
    ex.finish(state, execution)
    return "executed", execution


def _random_block(rng: random.Random, state: State, nonces: dict[bytes, int]) -> list[Tx]:
    nodes = [(key, node) for key, node in state.items(NODE)]
    strangers = [rng.randbytes(20) for _ in range(3)]
    txs: list[Tx] = []

    def next_nonce(key: SigningKey) -> int:
        nonce = nonces.get(key.public_key, 0)
        if rng.random() < 0.005:
            return nonce + rng.choice((-1, 1))  # a wrong nonce: refused
        nonces[key.public_key] = nonce + 1
        return nonce

    funded, empty = KEYS[:-2], KEYS[-2:]
    for _ in range(rng.randrange(1, 40)):
        # each kind of failure at about 1 % a tx, so that about half the blocks apply
        sender = rng.choice(empty if rng.random() < 0.01 else funded)
        fee = rng.choice((PARAMS.min_fee, PARAMS.min_fee + 1, 3 * PARAMS.base_fee, 10_000))
        if rng.random() < 0.02:
            owned = [n.node_id for _, n in nodes if n.owner == address_of(sender.public_key)]
            # another's node (refused) a third of the time
            node_id = owned[0] if owned and rng.random() < 0.67 else rng.randbytes(20)
            txs.append(
                Tx.create(sender, PARAMS.chain_id, next_nonce(sender), fee, NodeUnregister(node_id))
            )
            continue
        roll = rng.random()
        if roll < 0.15:
            to = rng.choice(strangers)  # a new account, at times below the deposit
            amount = PARAMS.account_deposit - 1 if rng.random() < 0.07 else COIN
            amount = rng.choice((amount, PARAMS.account_deposit, COIN))
        else:
            payees = empty if rng.random() < 0.03 else funded
            payee = rng.choice([k for k in payees if k is not sender])
            to = address_of(payee.public_key)
            amount = rng.choice((1, 1_000, COIN, 50 * COIN))
            if roll > 0.99:
                amount = 2_000_000 * COIN  # more than anyone holds: refused
        txs.append(
            Tx.create(sender, PARAMS.chain_id, next_nonce(sender), fee, Transfer(to, amount))
        )
    return txs


def _run(seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    state, tree = _fresh()
    nonces: dict[bytes, int] = {}
    outcomes = []
    for height in range(1, BLOCKS_PER_SEED + 1):
        txs = _random_block(rng, state, nonces)
        kind, result = _execute(state, tree, height, txs)
        outcomes.append((kind, result))
        if kind == "refused":
            # the next block starts again from the chain's nonces
            nonces = {
                k.public_key: get_account(state, address_of(k.public_key)).nonce for k in KEYS
            }
    return outcomes


def _run_tx_by_tx(seed: int, monkeypatch: pytest.MonkeyPatch) -> list[Outcome]:
    with monkeypatch.context() as patch:
        patch.setattr(accounts, "process_transfers", _tx_by_tx)
        return _run(seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_run_of_transfers_executes_as_tx_by_tx(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    batched = _run(seed)
    reference = _run_tx_by_tx(seed, monkeypatch)
    assert len(batched) == len(reference)
    for height, ((kind, got), (want_kind, want)) in enumerate(
        zip(batched, reference, strict=True), 1
    ):
        assert kind == want_kind, f"seed {seed}, block {height}: {kind} != {want_kind}"
        if kind == "refused":
            assert got == want, f"seed {seed}, block {height}"
            continue
        assert isinstance(got, ex.Execution) and isinstance(want, ex.Execution)
        assert got.state_root == want.state_root, f"seed {seed}, block {height}"
        assert got.events == want.events, f"seed {seed}, block {height}"
        assert got.events_root == want.events_root, f"seed {seed}, block {height}"
        assert got.changes == want.changes, f"seed {seed}, block {height}"
        assert got.tx_ids == want.tx_ids, f"seed {seed}, block {height}"


def test_the_random_blocks_cover_runs_that_fail_and_runs_that_apply() -> None:
    """The seeds above exercise both outcomes, so the comparison is not vacuous."""
    kinds = [kind for seed in SEEDS[:10] for kind, _ in _run(seed)]
    assert "refused" in kinds and "executed" in kinds, kinds


# -- decoding: `tx.decode_transfer_run` against `Tx.decode` and `check_stateless` ----------

HEADER = Header(PARAMS.chain_id, 1, 0, 0, bytes(32), bytes(33), bytes(96), *[bytes(32)] * 5)


def _transfer_raw(
    rng: random.Random,
    *,
    chain_id: str = PARAMS.chain_id,
    sender: bytes | None = None,
    to: bytes | None = None,
    fee: int | None = None,
) -> bytes:
    sender = sender if sender is not None else rng.choice(KEYS).public_key
    to = to if to is not None else rng.choice((rng.randbytes(20), address_of(KEYS[0].public_key)))
    fee = fee if fee is not None else rng.choice((PARAMS.min_fee, 10_000, MAX_AMOUNT))
    nonce = rng.choice((0, 1, 127, 128, 2**32, 2**64 - 1))
    amount = rng.choice((1, 127, 128, COIN, MAX_AMOUNT))
    return pack(
        [
            TX_VERSION,
            chain_id,
            int(TxKind.TRANSFER),
            sender,
            nonce,
            fee,
            [to, amount],
            rng.randbytes(64),
        ]
    )


def _mutated(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    where = rng.randrange(len(data))
    action = rng.randrange(4)
    if action == 0:
        data[where] ^= 1 << rng.randrange(8)
    elif action == 1:
        data.insert(where, rng.randrange(256))
    elif action == 2:
        del data[where]
    else:
        data += bytes([rng.randrange(256)])
    return bytes(data)


def _random_raws(rng: random.Random) -> list[bytes]:
    """Mostly valid transfers, with each way a tx can leave the run among them."""
    raws: list[bytes] = []
    for _ in range(rng.randrange(1, 40)):
        roll = rng.random()
        if roll < 0.75 or not raws:
            raws.append(_transfer_raw(rng))
        elif roll < 0.78:  # a memo: the codec's path, valid
            memo_tx = Tx.create(
                rng.choice(KEYS),
                PARAMS.chain_id,
                0,
                2 * PARAMS.min_fee,
                Transfer(rng.randbytes(20), COIN, b"hi"),
            )
            raws.append(memo_tx.raw)
        elif roll < 0.81:  # another kind, valid
            raws.append(
                Tx.create(
                    rng.choice(KEYS),
                    PARAMS.chain_id,
                    0,
                    PARAMS.min_fee,
                    NodeUnregister(rng.randbytes(20)),
                ).raw
            )
        elif roll < 0.83:
            raws.append(_transfer_raw(rng, chain_id="another-chain"))
        elif roll < 0.85:
            raws.append(_transfer_raw(rng, chain_id="x" * 65))  # longer than a chain id
        elif roll < 0.87:
            raws.append(_transfer_raw(rng, fee=PARAMS.min_fee - 1))
        elif roll < 0.89:
            key = rng.choice(KEYS)
            raws.append(_transfer_raw(rng, sender=key.public_key, to=address_of(key.public_key)))
        elif roll < 0.92:
            raws.append(rng.choice(raws))  # a repeat
        elif roll < 0.95:
            raws.append(_mutated(rng, _transfer_raw(rng)))
        elif roll < 0.97:  # the amount in a longer form than msgpack's shortest
            raw = _transfer_raw(rng)
            fields = unpack(raw)
            head = pack(fields[:6])[1:]  # the first six items, without the array's prefix
            payload = b"\x92" + pack(fields[6][0]) + b"\xcf" + fields[6][1].to_bytes(8, "big")
            raws.append(b"\x98" + head + payload + pack(fields[7]))
        else:
            raws.append(rng.randbytes(rng.randrange(1, 200)))
    return raws


def _decoded(raws: list[bytes], with_ids: bool, params: Params = PARAMS) -> object:
    ids = [sha256(raw) for raw in raws] if with_ids else None
    try:
        txs = ex.decode_block_txs(Block(HEADER, tuple(raws), None), params, {}, ids)
    except BlockError as exc:
        return exc.reason, exc.message
    # every slot, the off-wire ones (raw, id, sender address) included, and the classes
    return [
        (type(tx), type(tx.payload), tx.payload, *(getattr(tx, f.name) for f in fields(Tx)))
        for tx in txs
    ]


@pytest.mark.parametrize("seed", range(300))
def test_a_run_of_transfers_decodes_as_tx_by_tx(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    raws = _random_raws(rng)
    with_ids = seed % 2 == 1
    # a third of the blocks under a tx size limit that some transfers exceed
    params = replace(PARAMS, max_tx_bytes=150) if seed % 3 == 0 else PARAMS
    batched = _decoded(raws, with_ids, params)
    with monkeypatch.context() as patch:
        patch.setattr(ex, "decode_transfer_run", _decoded_tx_by_tx)
        reference = _decoded(raws, with_ids, params)
    assert batched == reference, f"seed {seed}"


def _decoded_tx_by_tx(
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


def test_the_random_raws_cover_every_verdict() -> None:
    """The seeds above see blocks decoded whole and refused for each reason."""
    verdicts = set()
    for seed in range(300):
        outcome = _decoded(_random_raws(random.Random(seed)), False)
        if isinstance(outcome, list):
            verdicts.add("decoded")
        else:
            assert isinstance(outcome, tuple)
            reason, message = outcome
            # an invalid tx names its own reason after its index: "tx 3: wrong_chain: ..."
            verdicts.add(message.split(": ")[1] if reason == "invalid_tx" else reason)
    assert verdicts >= {"decoded", "duplicate_tx", "wrong_chain", "fee_too_low", "self_transfer"}, (
        verdicts
    )


# -- a run's checks in one go (`decode_transfer_run`) against its tx-by-tx loop ------------

BAD_TXS = (
    "memo",
    "another kind",
    "wrong chain",
    "long chain id",
    "fee below the floor",
    "self-transfer",
    "repeat",
    "mutated",
    "long amount",
    "garbage",
    "too large",
)


def _bad_raw(rng: random.Random, bad: str, raws: list[bytes]) -> bytes:
    """One tx that a run of transfers does not take whole, of kind `bad`."""
    if bad == "memo":
        return Tx.create(
            KEYS[0], PARAMS.chain_id, 0, 2 * PARAMS.min_fee, Transfer(rng.randbytes(20), 1, b"m")
        ).raw
    if bad == "another kind":
        unregister = NodeUnregister(rng.randbytes(20))
        other: Tx = Tx.create(KEYS[1], PARAMS.chain_id, 0, PARAMS.min_fee, unregister)
        return other.raw
    if bad == "wrong chain":
        return _transfer_raw(rng, chain_id="another-chain")
    if bad == "long chain id":
        return _transfer_raw(rng, chain_id="x" * 65)
    if bad == "fee below the floor":
        return _transfer_raw(rng, fee=PARAMS.min_fee - 1)
    if bad == "self-transfer":
        key = rng.choice(KEYS)
        return _transfer_raw(rng, sender=key.public_key, to=address_of(key.public_key))
    if bad == "repeat":
        return rng.choice(raws)
    if bad == "mutated":
        return _mutated(rng, _transfer_raw(rng))
    if bad == "long amount":  # msgspec decodes it; only the re-encoding tells it apart
        fields = unpack(_transfer_raw(rng))
        head = pack(fields[:6])[1:]
        payload = b"\x92" + pack(fields[6][0]) + b"\xcf" + fields[6][1].to_bytes(8, "big")
        long_amount: bytes = b"\x98" + head + payload + pack(fields[7])
        return long_amount
    if bad == "too large":  # a valid transfer, over the limit `_long_run` sets
        return _transfer_raw(rng, chain_id="c" * 60)
    return rng.randbytes(rng.randrange(1, 200))


def _long_run(seed: int) -> tuple[list[bytes], Params, str]:
    """Dozens of valid transfers and, but for one seed in twelve, one tx of each kind of
    `BAD_TXS` in turn at a random place among them."""
    rng = random.Random(seed)
    raws = [
        _transfer_raw(rng, to=rng.randbytes(20), fee=PARAMS.min_fee)
        for _ in range(rng.randrange(1, 80))
    ]
    bad = "none" if seed % 12 == 11 else BAD_TXS[seed % 12]
    if bad != "none":
        raws.insert(rng.randrange(len(raws) + 1), _bad_raw(rng, bad, raws))
    # every valid transfer here fits 180 bytes; "too large" is over it
    params = replace(PARAMS, max_tx_bytes=180) if bad == "too large" else PARAMS
    return raws, params, bad


@pytest.mark.parametrize("seed", range(240))
def test_a_long_run_decodes_as_its_loop_tx_by_tx(seed: int) -> None:
    """The run's checks in one go take the txs the loop takes, stop where it stops, and
    give the block the verdict it gives: the same txs (every slot), the same index, the
    same ids seen, the same refusal of the block."""
    raws, params, bad = _long_run(seed)
    start = random.Random(seed).randrange(len(raws))
    with_ids = seed % 2 == 0
    ids = [sha256(raw) for raw in raws] if with_ids else None
    # an id seen before the run (a tx earlier in the block) stops it where it recurs
    earlier = {sha256(raws[-1])} if seed % 5 == 0 else set()
    got_seen, got = set(earlier), list[Tx]()
    want_seen, want = set(earlier), list[Tx]()
    stop = decode_transfer_run(raws, start, ids, params, got_seen, got)
    want_stop = _decode_transfers_one_by_one(raws, start, ids, params, want_seen, want)
    assert (stop, got_seen) == (want_stop, want_seen), f"seed {seed} ({bad})"
    slots = [(type(tx), type(tx.payload), *(getattr(tx, f.name) for f in fields(Tx))) for tx in got]
    assert slots == [
        (type(tx), type(tx.payload), *(getattr(tx, f.name) for f in fields(Tx))) for tx in want
    ], f"seed {seed} ({bad})"
    block = _decoded(raws, with_ids, params)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ex, "decode_transfer_run", _decoded_tx_by_tx)
        assert block == _decoded(raws, with_ids, params), f"seed {seed} ({bad})"


def test_a_run_of_valid_transfers_is_checked_in_one_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of valid transfers, and runs cut short by a self-transfer, never go tx by tx
    (the comparisons above are not all of the loop against itself)."""

    def refuse(*args: object) -> int:
        raise AssertionError("the run was decoded tx by tx")

    monkeypatch.setattr(tx_module, "_decode_transfers_one_by_one", refuse)
    rng = random.Random(7)
    raws = [_transfer_raw(rng, to=rng.randbytes(20), fee=PARAMS.min_fee) for _ in range(50)]
    out: list[Tx] = []
    assert decode_transfer_run(raws, 0, None, PARAMS, set(), out) == 50
    assert [tx.raw for tx in out] == raws
    raws.insert(20, _bad_raw(rng, "self-transfer", raws))
    out, seen = [], set[bytes]()
    assert decode_transfer_run(raws, 0, None, PARAMS, seen, out) == 20
    assert seen == {sha256(raw) for raw in raws[:20]}


def test_the_long_runs_cover_every_verdict() -> None:
    """The seeds above see whole blocks decoded and each refusal a run can lead to."""
    verdicts = set()
    for seed in range(240):
        raws, params, _ = _long_run(seed)
        outcome = _decoded(raws, False, params)
        if isinstance(outcome, list):
            verdicts.add("decoded")
        else:
            assert isinstance(outcome, tuple)
            reason, message = outcome
            verdicts.add(message.split(": ")[1] if reason == "invalid_tx" else reason)
    assert verdicts >= {
        "decoded",
        "duplicate_tx",
        "wrong_chain",
        "fee_too_low",
        "self_transfer",
        "too_large",
    }, verdicts
