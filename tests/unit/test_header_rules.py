"""Header rules against a hostile proposer: block times, and whose block it is.

Each test builds a block as an honest proposer would, changes what an attacker would,
and shows every node refusing it, or an honest node carrying on after it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from consensus.events import BlockValidated, BuildProposal, ProposeBlock, ValidateBlock
from consensus.messages import Proposal
from fluxchain.core.block import Block, Header
from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import U64
from fluxchain.core.errors import BlockError, DecodeError, Reason
from fluxchain.core.params import COIN
from fluxchain.core.proposer import proposer
from fluxchain.core.votes import Commit, sign_commit
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.driver import Driver, decode_proposal, encode_proposal
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import (
    VALIDATORS,
    Builder,
    NoGossip,
    funded_key,
    node_hot_key,
    open_chain,
    proposer_reveal,
)


def _key_of(pubkey: bytes) -> SigningKey:
    (key,) = [k for k in map(node_hot_key, range(VALIDATORS)) if k.public_key == pubkey]
    return key


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _forged(b: Builder, block: Block, round_: int = 0, **changes: object) -> tuple[Block, Commit]:
    """`block` with header fields changed, committed by every validator in `round_`: what
    a sync peer could serve if the attacker's proposal had been accepted."""
    header = dataclasses.replace(block.header, **changes)  # type: ignore[arg-type]
    forged = Block(header, block.txs, block.last_commit)
    commit = sign_commit(b.signers, b.chain.params.chain_id, block.height, round_, forged.hash())
    return Block.decode(forged.encode(), 1 << 30, 1 << 20), commit


def _refused(chain: Chain, block: Block, commit: Commit) -> Reason:
    """Import `block`; it must be refused, leaving the chain as it was."""
    root, height = chain.tree.root, chain.height
    with pytest.raises(BlockError) as refused:
        chain.import_block(block, commit)
    assert (chain.tree.root, chain.height) == (root, height)
    assert not chain.state.has_pending()
    return refused.value.reason


def _driver(chain: Chain, key: SigningKey) -> Driver:
    return Driver(chain, NodeService(chain), key, None, NoGossip())


# --- block time -----------------------------------------------------------------------


def test_far_future_block_time_is_refused(tmp_path: Path) -> None:
    """The attack of issue 17: a header timed 2**64 - 1 is accepted, and no honest block
    can follow it. Now every node refuses it, syncing or not, as it refuses any time more
    than max_time_advance_ms after the parent's."""
    b = Builder(open_chain(tmp_path / "a"))
    b.commit()
    block, _ = b.block([])
    parent_ms = b.chain.head_time_ms
    limit = parent_ms + b.chain.params.max_time_advance_ms
    for hostile in (U64, limit + 1):
        assert _refused(b.chain, *_forged(b, block, time_ms=hostile)) is Reason.BAD_TIME
    b.chain.import_block(*_forged(b, block, time_ms=limit))  # the limit itself is a time
    assert b.chain.head_time_ms == limit


def test_block_time_before_the_parent_is_refused(tmp_path: Path) -> None:
    b = Builder(open_chain(tmp_path / "a"))
    b.commit()
    block, _ = b.block([])
    forged = _forged(b, block, time_ms=b.chain.head_time_ms)
    assert _refused(b.chain, *forged) is Reason.BAD_TIME


def test_proposal_ahead_of_the_voters_clock_is_prevoted_nil(tmp_path: Path) -> None:
    """A proposal timed beyond the voter's clock plus max_clock_drift_ms is untimely to
    that voter (so it prevotes nil on it as a fresh proposal), though the block is valid:
    the header rules allow it, and a later round may re-propose it with a proof of lock."""
    chain = open_chain(tmp_path / "a", new_devnet_genesis(VALIDATORS, genesis_time_ms=_now_ms()))
    b = Builder(chain, time_ms=_now_ms())
    b.commit()
    drift = chain.params.max_clock_drift_ms
    driver = _driver(chain, node_hot_key(0))
    block, _ = b.block([])
    ahead = dataclasses.replace(block.header, time_ms=_now_ms() + drift + 60_000)
    hostile = Block(ahead, block.txs, block.last_commit)
    assert _verdict(driver, hostile) == (True, False)
    # Within the drift (a fast clock, a slow voter) the same block is timely.
    timely_header = dataclasses.replace(ahead, time_ms=_now_ms() + drift // 2)
    assert _verdict(driver, Block(timely_header, block.txs, block.last_commit)) == (True, True)
    driver._abort_pending()
    assert not chain.state.has_pending()


def _verdict(driver: Driver, block: Block) -> tuple[bool, bool]:
    answer = driver._validate(ValidateBlock(block.height, block.hash(), block.encode()))
    assert isinstance(answer, BlockValidated)
    return answer.valid, answer.timely


def test_committed_block_ahead_of_our_clock_is_imported(tmp_path: Path) -> None:
    """A committed block is judged by its commit, never by this node's clock: sync
    imports it however far ahead of our clock it is (within the header rules)."""
    chain = open_chain(tmp_path / "a", new_devnet_genesis(VALIDATORS, genesis_time_ms=_now_ms()))
    b = Builder(chain, time_ms=_now_ms())
    b.commit()
    block, _ = b.block([])
    ahead = _now_ms() + 3_600_000  # an hour ahead of this node's clock
    b.chain.import_block(*_forged(b, block, time_ms=ahead))
    assert b.chain.head_time_ms == ahead


def test_honest_proposer_builds_after_a_hostile_head_time(tmp_path: Path) -> None:
    """A head as far in the future as the rules allow: the honest proposer's clock is far
    behind it, and it builds the next block at head + 1 ms instead of failing."""
    chain = open_chain(tmp_path / "a", new_devnet_genesis(VALIDATORS, genesis_time_ms=_now_ms()))
    b = Builder(chain, time_ms=_now_ms())
    b.commit()
    block, _ = b.block([])
    limit = b.chain.head_time_ms + b.chain.params.max_time_advance_ms
    b.chain.import_block(*_forged(b, block, time_ms=limit))
    height = b.chain.height + 1
    round_ = 0
    key = _key_of(proposer(b.chain.validators(), height, round_))
    driver = _driver(b.chain, key)
    built = driver._build(BuildProposal(height, round_))
    assert isinstance(built, ProposeBlock)
    proposal = Block.decode(built.block_bytes, 1 << 30, 1 << 20)
    assert proposal.header.time_ms == limit + 1
    assert proposal.header.proposer == key.public_key
    driver._abort_pending()
    assert not b.chain.state.has_pending()


def test_a_build_with_no_valid_time_fails_and_leaves_no_execution(tmp_path: Path) -> None:
    """At the very end of the time range no block time is valid: the build is refused
    with a reason, its execution undone, rather than raising OverflowError half-way."""
    chain = open_chain(tmp_path / "a", new_devnet_genesis(VALIDATORS, genesis_time_ms=U64))
    b = Builder(chain, time_ms=0)
    b.commit()
    assert chain.head_time_ms == U64
    root = chain.tree.root
    with pytest.raises(BlockError) as refused:
        chain.build_block(
            now_ms=0,
            round_=0,
            last_commit=b.last_commit,
            candidates=[],
            reveal=proposer_reveal(chain, 0),
        )
    assert refused.value.reason is Reason.BAD_TIME
    assert chain.tree.root == root and not chain.state.has_pending()
    key = _key_of(proposer(chain.validators(), 2, 0))
    assert _driver(chain, key)._build(BuildProposal(2, 0)) is None
    assert chain.tree.root == root and not chain.state.has_pending()


# --- proposer -------------------------------------------------------------------------


def test_header_proposer_must_be_the_round_proposer(tmp_path: Path) -> None:
    """Issue 17's reward redirection: a header naming some other validator as proposer
    (who gets the proposer's share and the fees) is refused by every node, as is a round
    whose proposer is not the one named."""
    b = Builder(open_chain(tmp_path / "a"))
    b.commit()
    validators = b.chain.validators()
    # A block executed with another validator as proposer (paid, so its state root is
    # that of a block naming it), then offered in round 0 by round 0's proposer.
    other_round = next(
        r for r in range(1, 50) if proposer(validators, 2, r) != proposer(validators, 2, 0)
    )
    block, _ = b.block([], round_=other_round)
    redirected = _forged(b, block, round_=0, round=0)
    assert redirected[0].header.proposer != proposer(validators, 2, 0)
    assert _refused(b.chain, *redirected) is Reason.BAD_PROPOSER
    # Naming a validator whose round it is not, in the block's own round, is refused too.
    stranger = next(v.pubkey for v in validators.validators if v.pubkey != block.header.proposer)
    named = _forged(b, block, round_=other_round, proposer=stranger)
    assert _refused(b.chain, *named) is Reason.BAD_PROPOSER
    b.chain.import_block(*_forged(b, block, round_=other_round))  # as built, it is fine
    assert b.chain.height == 2


def test_block_committed_before_its_round_is_refused(tmp_path: Path) -> None:
    """A block names the round it was built for; it cannot be decided in an earlier one."""
    b = Builder(open_chain(tmp_path / "a"))
    b.commit()
    block, commit = b.block([], round_=2)
    early = sign_commit(b.signers, b.chain.params.chain_id, block.height, 1, block.hash())
    assert _refused(b.chain, block, early) is Reason.BAD_PROPOSER
    b.chain.import_block(block, commit)
    assert b.chain.head is not None and b.chain.head.round == 2


def test_reproposed_block_keeps_its_proposer_and_commits_in_a_later_round(
    tmp_path: Path,
) -> None:
    """Tendermint re-proposes a locked block in later rounds: the block still names the
    proposer of the round it was built for, and commits in the later round."""
    b = Builder(open_chain(tmp_path / "a"))
    b.commit()
    block, _ = b.block([], round_=0)
    late = sign_commit(b.signers, b.chain.params.chain_id, block.height, 3, block.hash())
    b.chain.import_block(block, late)
    assert b.chain.height == 2


def test_proposal_of_a_block_naming_another_proposer_is_refused(tmp_path: Path) -> None:
    """The round's proposer signs a fresh proposal of a block built for another round
    (which names that round's proposer, to be paid in its place): refused at decoding,
    before the engine sees it. A re-proposal of an earlier round's block is fine."""
    b = Builder(open_chain(tmp_path / "a"))
    b.commit()
    chain_id = b.chain.params.chain_id
    validators = b.chain.validators()
    block, _ = b.block([], round_=0)
    round_ = next(r for r in range(1, 50) if proposer(validators, 2, r) != block.header.proposer)
    signer = _key_of(proposer(validators, 2, round_))
    fresh = Proposal.create(signer, chain_id, 2, round_, -1, block.hash())
    with pytest.raises(DecodeError) as refused:
        decode_proposal(
            encode_proposal(fresh, block.encode()), b.chain.params.max_block_bytes, 1 << 20
        )
    assert refused.value.reason is Reason.BAD_PROPOSAL
    again = Proposal.create(signer, chain_id, 2, round_, round_ - 1, block.hash())
    decoded, _ = decode_proposal(encode_proposal(again, block.encode()), 1 << 30, 1 << 20)
    assert decoded == again
    own, _ = b.block([], round_=round_)
    assert own.header.proposer == signer.public_key
    mine = Proposal.create(signer, chain_id, 2, round_, -1, own.hash())
    assert decode_proposal(encode_proposal(mine, own.encode()), 1 << 30, 1 << 20)[0] == mine


def test_header_round_is_part_of_the_encoding() -> None:
    zero = b"\0" * 32
    header = Header("c", 1, 7, 5, zero, b"\2" * 33, b"\3" * 96, zero, zero, zero, zero, zero)
    assert Header.from_fields(header.to_fields()) == header
    with pytest.raises(DecodeError):
        Header.from_fields([*header.to_fields()[:3], 2**31 + 1, *header.to_fields()[4:]])


def test_a_relay_cannot_swap_a_proposals_body(tmp_path: Path) -> None:
    """Only the header is signed, so a peer relaying an honest proposal could keep it and
    swap the txs or the parent commit: every receiver would execute a block that fails and
    prevote nil. The body is checked against the header when the proposal is decoded."""
    b = Builder(open_chain(tmp_path / "a"))
    b.commit()
    sender = funded_key(VALIDATORS)
    txs = [b.transfer(sender, bytes(range(20)), COIN + i) for i in range(3)]
    block, _ = b.block(txs, round_=0)
    signer = _key_of(block.header.proposer)
    proposal = Proposal.create(signer, b.chain.params.chain_id, 2, 0, -1, block.hash())
    limits = (b.chain.params.max_block_bytes, b.chain.params.max_block_txs)
    assert decode_proposal(encode_proposal(proposal, block.encode()), *limits)[0] == proposal
    assert block.last_commit is not None
    short_commit = dataclasses.replace(
        block.last_commit, signatures=block.last_commit.signatures[:-1]
    )
    for body in (
        Block(block.header, block.txs[:-1], block.last_commit),  # a tx dropped
        Block(block.header, block.txs[::-1], block.last_commit),  # reordered
        Block(block.header, block.txs, short_commit),  # another parent commit
    ):
        with pytest.raises(DecodeError) as refused:
            decode_proposal(encode_proposal(proposal, body.encode()), *limits)
        assert refused.value.reason is Reason.BAD_PROPOSAL
