"""A hostile block gets a refusal, never an exception: fuzzing the proposal and import paths.

A valid block (signatures enough to go to the verifier processes, several tx kinds, its
parent's commit) is mutated the ways an attacker can: bytes flipped, cut or inserted;
any value of the decoded block replaced by a value of any type (huge and negative
integers, multi-byte text, nested arrays); a tx's fields changed and the tx signed again,
so that it gets past the signature check into execution. Each mutant goes through what a
validator does with a proposal (decode the gossiped proposal, execute the block) and what
a syncing node does (decode, check, execute). Only BlockError or DecodeError may come
out; the chain is left as it was, and the verifier pool stays alive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.events import ValidateBlock
from consensus.messages import Proposal
from fluxchain.core.block import Block, Header
from fluxchain.core.crypto import TAG_TX, SigningKey, address_of, tagged_hash
from fluxchain.core.encoding import pack
from fluxchain.core.errors import BlockError, DecodeError, FluxError
from fluxchain.core.params import COIN, Tier
from fluxchain.core.proposer import proposer
from fluxchain.core.tx import AppRegister, Evidence, Hardware, Tx
from fluxchain.core.votes import Commit, Vote, VoteType, evidence_pair, sign_commit
from fluxchain.node.driver import Driver, decode_proposal, encode_proposal
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from fluxchain.store.verifier import MIN_BATCH, VerifierPool
from tests.support.chain import VALIDATORS, Builder, NoGossip, funded_key, node_hot_key, open_chain
from tests.support.state import spec

RECEIVER = bytes(range(20))
REFUSALS = (BlockError, DecodeError)


@dataclass
class Target:
    """A chain at height 1 with a verifier pool, and a valid block 2 for it."""

    chain: Chain
    pool: VerifierPool
    driver: Driver
    block: Block
    fields: list[Any]
    senders: dict[bytes, SigningKey]
    signers: list[SigningKey]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    pool = VerifierPool(2)
    chain = open_chain(Path(tmp_path_factory.mktemp("hostile")) / "home", verifier=pool)
    b = Builder(chain)
    b.commit()
    senders = [funded_key(VALIDATORS + i) for i in range(3)]
    txs = [b.transfer(senders[i % 3], RECEIVER, COIN + i) for i in range(2 * MIN_BATCH)]
    hot = SigningKey(bytes([0x55]) * 32)
    hardware = Hardware(4, 32_000, 440)  # within a cumulus node's caps
    txs.append(b.node_register(senders[0], hot, Tier.CUMULUS, hardware=hardware))
    offender = node_hot_key(1)
    votes = [
        Vote.create(offender, chain.params.chain_id, VoteType.PREVOTE, 1, 0, bytes([n]) * 32)
        for n in (1, 2)
    ]
    txs.append(b.tx(senders[1], Evidence(*evidence_pair(*votes))))
    txs.append(b.tx(senders[2], AppRegister(spec(address_of(senders[2].public_key)))))
    block, _ = b.block(txs)
    assert len(block.txs) == len(txs), "the base block must hold every tx"
    validator = node_hot_key(0)
    driver = Driver(chain, NodeService(chain), validator, None, NoGossip())
    yield Target(
        chain,
        pool,
        driver,
        block,
        msgpack.unpackb(block.encode()),
        {k.public_key: k for k in senders},
        b.signers,
    )
    pool.close()


# --- mutations ------------------------------------------------------------------------

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from([0, 1, -1, 2**31, 2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1])
    | st.text(max_size=80)
    | st.text(alphabet="\U0001d509é", min_size=60, max_size=70)
    | st.just("\U0001d509" * 64)  # 64 characters, 256 bytes: issue 17's chain id
    | st.binary(max_size=80),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=12,
)


def _paths(obj: Any, prefix: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    """Every position in a nested list, the lists themselves included."""
    yield prefix
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _paths(item, (*prefix, i))


def _replace(obj: Any, path: tuple[int, ...], value: Any) -> Any:
    if not path:
        return value
    copy = list(obj)
    copy[path[0]] = _replace(copy[path[0]], path[1:], value)
    return copy


@st.composite
def mutated_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


def _nested_tx(raw: bytes) -> Any:
    return msgpack.unpackb(raw)


def _sign_again(fields: list[Any], senders: dict[bytes, SigningKey]) -> bytes:
    """A tx encoding from (mutated) tx fields, signed by the sender when we have its key
    and the fields can be signed at all: an attacker signs its own hostile txs."""
    if isinstance(fields, list) and len(fields) == 8:
        key = senders.get(fields[3]) if isinstance(fields[3], bytes) else None
        if key is not None and isinstance(fields[1], str):
            try:
                digest = tagged_hash(TAG_TX, fields[1], pack(fields[:7]))
            except (FluxError, OverflowError, TypeError, ValueError):
                pass  # not signable: the old signature stays
            else:
                fields = [*fields[:7], key.sign(digest)]
    return pack(fields)


# --- the two paths --------------------------------------------------------------------


def _as_proposal(t: Target, raw: bytes) -> None:
    """What a validator does with a gossiped proposal carrying `raw` as its block."""
    header_hash = t.block.hash()
    try:
        header = Header.from_fields(msgpack.unpackb(raw)[0])
        header_hash = header.hash()
    except Exception:
        pass  # an undecodable header: the proposal names the original hash
    round_ = 0
    key = {k.public_key: k for k in t.signers}[proposer(t.chain.validators(), 2, round_)]
    proposal = Proposal.create(key, t.chain.params.chain_id, 2, round_, -1, header_hash)
    with contextlib.suppress(*REFUSALS):
        decode_proposal(
            encode_proposal(proposal, raw),
            t.chain.params.max_block_bytes,
            t.chain.params.max_block_txs,
        )
    # What the engine's ValidateBlock makes the driver do: execute, then judge the time.
    t.driver._validate(ValidateBlock(2, header_hash, raw))
    t.driver._abort_pending()


def _as_synced(t: Target, raw: bytes) -> None:
    """What a syncing node does with `raw` served as block 2 with a commit for it."""
    params = t.chain.params
    try:
        block = Block.decode(raw, params.max_block_bytes, params.max_block_txs)
    except REFUSALS:
        return
    commit = sign_commit(t.signers, params.chain_id, 2, 0, block.hash())
    commit = Commit.from_fields(msgpack.unpackb(pack(commit.to_fields())))
    try:
        execution = t.chain.execute_proposal(block)
    except REFUSALS:
        return
    t.chain.abort(execution)  # a valid mutant (a no-op): keep the chain at height 1


def _feed(t: Target, raw: bytes) -> None:
    root, height = t.chain.tree.root, t.chain.height
    _as_proposal(t, raw)
    _as_synced(t, raw)
    assert (t.chain.tree.root, t.chain.height) == (root, height)
    assert not t.chain.state.has_pending()
    assert t.pool.healthy, "a hostile block retired the verifier pool"


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(data=st.data())
def test_mutated_block_bytes_are_refused(target: Target, data: st.DataObject) -> None:
    _feed(target, data.draw(mutated_bytes(target.block.encode())))


@FUZZ
@given(data=st.data(), value=values)
def test_any_value_anywhere_in_a_block_is_refused(
    target: Target, data: st.DataObject, value: Any
) -> None:
    paths = list(_paths(target.fields))
    path = data.draw(st.sampled_from(paths))
    _feed(target, pack(_replace(target.fields, path, value)))


@FUZZ
@given(data=st.data(), value=values)
def test_any_value_in_the_header_or_the_parent_commit_is_refused(
    target: Target, data: st.DataObject, value: Any
) -> None:
    """As above, aimed at the header and the parent's commit (the txs hold most values)."""
    part = data.draw(st.sampled_from([0, 2]))
    path = data.draw(st.sampled_from(list(_paths(target.fields[part], (part,)))))
    _feed(target, pack(_replace(target.fields, path, value)))


@FUZZ
@given(data=st.data(), value=values)
def test_hostile_txs_signed_by_their_sender_are_refused(
    target: Target, data: st.DataObject, value: Any
) -> None:
    """The attacker signs its own malformed txs: they reach past the signature check."""
    txs = target.fields[1]
    index = data.draw(st.integers(0, len(txs) - 1))
    tx_fields = _nested_tx(txs[index])
    inner = [p for p in _paths(tx_fields) if p and p[0] != 7]  # not the signature itself
    path = data.draw(st.sampled_from(inner))
    hostile = _sign_again(_replace(tx_fields, path, value), target.senders)
    fields = [target.fields[0], [*txs[:index], hostile, *txs[index + 1 :]], target.fields[2]]
    _feed(target, pack(fields))


def test_the_base_block_is_valid(target: Target) -> None:
    """The fuzzing starts from a block both paths accept."""
    execution = target.chain.execute_proposal(Block.decode(target.block.encode(), 1 << 30, 1 << 20))
    target.chain.abort(execution)
    kinds = [Tx.decode(raw, 1 << 20).kind.name for raw in target.block.txs[-3:]]
    assert kinds == ["NODE_REGISTER", "EVIDENCE", "APP_REGISTER"]
