"""The proposal budget (params.max_block_bytes): a proposer fills its block up to it and
never past it, and a block past it is refused however it arrives (issue 22).

Without a bound a proposer put its whole mempool in one proposal (7,936 txs, 1.2 MB at
400 tx/s on the WAN testnet): too big to reach the other regions within the propose
timeout, so rounds failed one after another while the mempool grew.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from consensus.messages import Proposal
from fluxchain.core import execute as ex
from fluxchain.core.block import BLOCK_FRAMING_BYTES, Block, Header, fixed_bytes
from fluxchain.core.encoding import U64
from fluxchain.core.errors import BlockError, DecodeError, Reason
from fluxchain.core.genesis import Genesis
from fluxchain.core.params import COIN
from fluxchain.core.tx import Tx
from fluxchain.core.votes import MAX_ROUND, Commit
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from fluxchain.node.driver import decode_proposal, encode_proposal
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key, open_chain

BUDGET = 16 * 1024  # about a hundred transfers


def _small_budget_genesis() -> Genesis:
    params = dataclasses.replace(devnet_params(), max_block_bytes=BUDGET)
    return new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)


def _transfers(b: Builder, count: int) -> list[Tx]:
    """`count` transfers from two senders (more than one block's budget holds)."""
    senders = [funded_key(VALIDATORS), funded_key(VALIDATORS + 1)]
    return [b.transfer(senders[i % 2], bytes([i % 250 + 1]) * 20, COIN + i) for i in range(count)]


def test_a_proposer_never_exceeds_the_proposal_budget(tmp_path: Path) -> None:
    """Offered three blocks' worth of txs, the proposer fills its block close to the
    budget and stops there; the block is valid to every node of the chain."""
    b = Builder(open_chain(tmp_path / "a", _small_budget_genesis()))
    b.commit()
    txs = _transfers(b, 3 * BUDGET // 140)
    block, commit = b.block(txs)
    size = len(block.encode())
    assert size <= BUDGET
    assert 0 < len(block.txs) < len(txs)
    one_more = len(txs[len(block.txs)].raw) + ex.TX_FRAMING_BYTES
    assert size + one_more > BUDGET - BLOCK_FRAMING_BYTES, "the block was not filled"
    b.chain.import_block(Block.decode(block.encode(), BUDGET, 10_000), commit)
    assert b.chain.height == 2


def test_an_oversized_proposal_is_refused(tmp_path: Path) -> None:
    """A proposer that ignores the budget (its own node built with a larger one) signs a
    block over it: peers refuse the proposal when they decode it, a block over the budget
    is invalid to the chain's rules (a prevote nil), and sync refuses it as well."""
    genesis = _small_budget_genesis()
    b = Builder(open_chain(tmp_path / "a", genesis))
    b.commit()
    honest_params = b.chain.params
    b.chain.params = dataclasses.replace(honest_params, max_block_bytes=4 * BUDGET)
    try:
        block, commit = b.block(_transfers(b, 2 * BUDGET // 140))
    finally:
        b.chain.params = honest_params
    assert len(block.encode()) > BUDGET
    (signer,) = [
        k for k in map(node_hot_key, range(VALIDATORS)) if k.public_key == block.header.proposer
    ]
    proposal = Proposal.create(signer, honest_params.chain_id, 2, 0, -1, block.hash())
    payload = encode_proposal(proposal, block.encode())
    with pytest.raises(DecodeError) as refused:
        decode_proposal(payload, honest_params.max_block_bytes, honest_params.max_block_txs)
    assert refused.value.reason in (Reason.TOO_LARGE, Reason.BAD_FIELD)

    decoded = Block.decode(block.encode(), 1 << 30, 1 << 20)  # past any decoding bound
    with pytest.raises(BlockError) as invalid:
        b.chain.execute_proposal(decoded)
    assert invalid.value.reason is Reason.BLOCK_TOO_LARGE
    assert not b.chain.state.has_pending()
    with pytest.raises(BlockError) as synced:
        b.chain.import_block(decoded, commit)
    assert synced.value.reason is Reason.BLOCK_TOO_LARGE
    assert b.chain.height == 1


def test_the_framing_allowance_covers_the_largest_header() -> None:
    """`tx_room` counts the parent commit exactly and the header by an allowance: a header
    with every field at its largest, in a block whose tx list has the widest prefix, fits."""
    zero = b"\0" * 32
    header = Header(
        "c" * 64, U64, MAX_ROUND, U64, zero, b"\2" * 33, b"\3" * 96, zero, zero, zero, zero, zero
    )
    empty = len(Block(header, (), None).encode())
    list_prefix_growth = 5 - 1  # an array of 65,536 txs or more takes a 5-byte prefix
    assert empty + list_prefix_growth <= BLOCK_FRAMING_BYTES


def test_the_fixed_bytes_cover_an_empty_block_with_the_largest_commit() -> None:
    """rev26h 2: what `nodes.max_active` and genesis count as a block's bytes no tx may
    use: an empty block with every header field at its largest and a parent commit of
    `max_validators` signatures, every field at its longest, fits them; at 100 validators
    that is over 10 KB, none of it room for attestations."""
    zero = b"\0" * 32
    header = Header(
        "c" * 64, U64, MAX_ROUND, U64, zero, b"\2" * 33, b"\3" * 96, zero, zero, zero, zero, zero
    )
    validators = devnet_params().max_validators
    signatures = tuple((bytes([2, i]) + bytes(31), b"\4" * 64) for i in range(validators))
    commit = Commit(U64, MAX_ROUND, zero, signatures)
    empty = len(Block(header, (), commit).encode())
    list_prefix_growth = 5 - 1  # an array of 65,536 txs or more takes a 5-byte prefix
    print(f"empty block {empty} bytes, fixed_bytes {fixed_bytes(validators)}")
    assert empty + list_prefix_growth <= fixed_bytes(validators)
    assert empty > 10_000
