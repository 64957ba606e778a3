"""Compact proposals (issue 22, fluxchain/node/compact.py): a proposal's block sent as its
header, parent commit and tx ids is rebuilt, from the txs a node holds, into exactly the
bytes the proposer signed; a compact proposal that lies about its block is refused
before a single tx is looked up, and a rebuilt block is checked again before it goes on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.messages import Proposal
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.tx import Transfer
from fluxchain.node.compact import (
    CompactProposal,
    assemble,
    decode_compact_proposal,
    encode_compact_proposal,
    gather,
)
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain

MAX_TXS = 10_000


@pytest.fixture(scope="module")
def proposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chain, Proposal, Block]]:
    """A block of height 2 with 12 transfers (1 KB memos) and a parent commit, proposed."""
    chain = open_chain(Path(tmp_path_factory.mktemp("compact")))
    try:
        builder = Builder(chain)
        builder.commit()
        sender = funded_key()
        txs = [
            builder.tx(sender, Transfer(bytes([i]) * 20, 10**8, b"m" * 900), fee=5_000)
            for i in range(1, 13)
        ]
        block, _commit = builder.block(txs)
        assert len(block.txs) == 12 and block.last_commit is not None
        key = proposer_key(chain, block)
        proposal = Proposal.create(key, chain.params.chain_id, block.height, 0, -1, block.hash())
        yield chain, proposal, block
    finally:
        chain.close()


def proposer_key(chain: Chain, block: Block) -> SigningKey:
    for i in range(len(chain.validators().validators)):
        if node_hot_key(i).public_key == block.header.proposer:
            return node_hot_key(i)
    raise AssertionError("no known key proposed the block")


def test_a_compact_proposal_rebuilds_the_exact_block_from_the_txs_a_node_holds(
    proposed: tuple[Chain, Proposal, Block],
) -> None:
    _chain, proposal, block = proposed
    payload = encode_compact_proposal(proposal, block)
    # The point of it: the ids are 32 bytes a tx where the block carries ~1 KB a tx.
    assert len(payload) < len(block.encode()) // 5
    compact = decode_compact_proposal(payload, MAX_TXS)
    assert compact.proposal == proposal and compact.ids() == [sha256(tx) for tx in block.txs]
    held = {sha256(tx): tx for tx in block.txs[:9]}
    txs, missing = gather(compact.ids(), lambda ids: [held.get(i) for i in ids])
    assert missing == [9, 10, 11]
    for i in missing:  # what the peer that sent it answers
        txs[i] = block.txs[i]
    rebuilt = assemble(compact, [tx for tx in txs if tx is not None], 4 * 1024 * 1024)
    assert rebuilt == block.encode()  # the consensus engine sees the very same bytes


def test_tx_ids_that_do_not_match_the_header_tx_root_are_refused(
    proposed: tuple[Chain, Proposal, Block],
) -> None:
    """A proposer or a relay names other txs than the header commits to (one swapped, one
    left out, one added): refused as bad_proposal before any tx is looked up."""
    _chain, proposal, block = proposed
    ids = [sha256(tx) for tx in block.txs]
    forged = sha256(b"a tx the proposer never included")
    for lie in ([*ids[:5], forged, *ids[6:]], ids[:-1], [*ids, forged], ids[::-1]):
        compact = CompactProposal(proposal, block.header, b"".join(lie), block.last_commit)
        with pytest.raises(DecodeError) as caught:
            decode_compact_proposal(pack(compact.to_fields()), MAX_TXS)
        assert caught.value.reason is Reason.BAD_PROPOSAL
        assert "tx_root" in caught.value.message


def test_a_compact_proposal_with_another_header_or_parent_commit_is_refused(
    proposed: tuple[Chain, Proposal, Block],
) -> None:
    _chain, proposal, block = proposed
    ids = b"".join(sha256(tx) for tx in block.txs)
    other_header = dataclasses.replace(block.header, time_ms=block.header.time_ms + 1)
    compact = CompactProposal(proposal, other_header, ids, block.last_commit)
    with pytest.raises(DecodeError, match="does not hash to the proposal's") as caught:
        decode_compact_proposal(pack(compact.to_fields()), MAX_TXS)
    assert caught.value.reason is Reason.BAD_PROPOSAL
    assert block.last_commit is not None
    fewer = dataclasses.replace(block.last_commit, signatures=block.last_commit.signatures[:-1])
    compact = CompactProposal(proposal, block.header, ids, fewer)
    with pytest.raises(DecodeError, match="last_commit_hash") as caught:
        decode_compact_proposal(pack(compact.to_fields()), MAX_TXS)
    assert caught.value.reason is Reason.BAD_PROPOSAL


def test_a_compact_proposal_naming_more_txs_than_a_block_may_hold_is_refused(
    proposed: tuple[Chain, Proposal, Block],
) -> None:
    _chain, proposal, block = proposed
    payload = encode_compact_proposal(proposal, block)
    with pytest.raises(DecodeError) as caught:
        decode_compact_proposal(payload, max_block_txs=11)  # the block has 12
    assert caught.value.reason is Reason.TOO_LARGE
    ragged = CompactProposal(proposal, block.header, b"\x01" * 33, block.last_commit)
    with pytest.raises(DecodeError) as caught:
        decode_compact_proposal(pack(ragged.to_fields()), MAX_TXS)
    assert caught.value.reason is Reason.BAD_FIELD


def test_a_rebuilt_block_is_checked_against_the_tx_root_before_it_goes_on(
    proposed: tuple[Chain, Proposal, Block],
) -> None:
    """Whatever filled a gap (a bug, a lying lookup), a rebuilt block whose txs are not the
    header's, or that is over max_block_bytes, never reaches consensus."""
    _chain, proposal, block = proposed
    compact = decode_compact_proposal(encode_compact_proposal(proposal, block), MAX_TXS)
    txs = list(block.txs)
    txs[3] = txs[4]
    with pytest.raises(DecodeError) as caught:
        assemble(compact, txs, 4 * 1024 * 1024)
    assert caught.value.reason is Reason.BAD_PROPOSAL
    with pytest.raises(DecodeError) as caught:
        assemble(compact, list(block.txs), len(block.encode()) - 1)
    assert caught.value.reason is Reason.TOO_LARGE
