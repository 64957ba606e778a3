"""Review rev15b: defences that held against the once-checked tx root of a rebuilt
compact proposal (perf15d) and compact-first consensus gossip (wan15)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from consensus.messages import Proposal
from fluxchain.core.block import Block
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.merkle import merkle_root
from fluxchain.core.tx import Transfer
from fluxchain.node.compact import assemble, decode_compact_proposal, encode_compact_proposal
from fluxchain.node.driver import Driver, decode_proposal, encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from p2p.messages import Gossip, Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import (
    ROUND,
    _proposed_block,
    _proposer_key,
    _raw_peer,
    watch_handed,
)
from tests.integration.test_rev15b_compact_first import run_started
from tests.support.chain import VALIDATORS, Builder, NoGossip, funded_key, node_hot_key, open_chain
from tests.support.wait import wait_until_async

MAX_BLOCK_BYTES = 4 * 1024 * 1024


def test_rev15b_hold_a_rebuilt_block_naming_one_tx_twice_is_invalid_with_its_ids_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A byzantine proposer's header names the same tx twice (its tx_root is the root of
    those ids, so the compact proposal and the rebuild pass): the block check, which takes
    the noted ids and skips the root, still refuses it as duplicate_tx."""
    chain = open_chain(tmp_path / "node")
    try:
        builder = Builder(chain)
        tx = builder.tx(funded_key(), Transfer(b"\x01" * 20, 10**8))
        block, _commit = builder.block([tx])
        header = dataclasses.replace(block.header, tx_root=merkle_root([tx.id, tx.id]))
        twice = Block(header, (tx.raw, tx.raw), block.last_commit)
        key = next(
            node_hot_key(i)
            for i in range(VALIDATORS)
            if node_hot_key(i).public_key == header.proposer
        )
        proposal = Proposal.create(key, chain.params.chain_id, 1, 0, -1, twice.hash())
        compact = decode_compact_proposal(encode_compact_proposal(proposal, twice), 10_000)
        assert compact.ids() == [tx.id, tx.id]
        block_bytes = assemble(compact, [tx.raw, tx.raw], MAX_BLOCK_BYTES)
        driver = Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip())
        driver.note_tx_ids(twice.hash(), block_bytes, compact.ids())
        with caplog.at_level(logging.WARNING, logger="fluxchain.consensus"):
            assert driver._execute(block_bytes, twice.hash()) is None
        assert Reason.DUPLICATE_TX.value in caplog.text
    finally:
        chain.close()


def test_rev15b_hold_a_full_proposal_of_a_rebuilt_header_over_another_body_is_refused(
    tmp_path: Path,
) -> None:
    """After a node rebuilt (and noted the ids of) a compact proposal, a relay sends the
    full PROPOSAL of the same header with two txs swapped (or a re-proposal of it): it is
    refused at decoding, before the engine or the noted ids could meet it."""
    devnet = Devnet(tmp_path / "net")
    block, _txs = _proposed_block(tmp_path, devnet)
    node = Node(Home(devnet.homes[0]))

    async def scenario() -> None:
        proposal = Proposal.create(
            _proposer_key(node), devnet.genesis.chain_id, 1, ROUND, -1, block.hash()
        )
        swapped = list(block.txs)
        swapped[0], swapped[1] = swapped[1], swapped[0]
        other = Block(block.header, tuple(swapped), block.last_commit).encode()
        params = node.chain.params
        with pytest.raises(DecodeError) as refused:
            decode_proposal(
                encode_proposal(proposal, other), params.max_block_bytes, params.max_block_txs
            )
        assert refused.value.reason is Reason.BAD_PROPOSAL

    run_started(node, scenario)


def test_rev15b_hold_each_proposal_gets_its_own_cached_compact_payload(tmp_path: Path) -> None:
    """Consensus gossip's cached COMPACT_PROPOSAL payloads are keyed by the proposal's
    signature: a re-proposal of the same block in a later round gets its own (its round
    and proof-of-lock), never its first round's, and a new height starts a new cache."""
    devnet = Devnet(tmp_path / "net")
    block, _txs = _proposed_block(tmp_path, devnet)
    node = Node(Home(devnet.homes[0]))

    async def scenario() -> None:
        chain_id = devnet.genesis.chain_id
        first = Proposal.create(_proposer_key(node), chain_id, 1, ROUND, -1, block.hash())
        again = Proposal.create(_proposer_key(node), chain_id, 1, ROUND + 1, ROUND, block.hash())
        block_bytes = block.encode()
        max_txs = node.chain.params.max_block_txs
        for proposal in (first, again, first, again):
            payload = node._compact_payload(proposal, block_bytes)
            assert decode_compact_proposal(payload, max_txs).proposal == proposal
        later = Proposal.create(_proposer_key(node), chain_id, 2, 0, -1, block.hash())
        node._compact_payload(later, block_bytes)
        assert list(node._compact_payloads) == [later.signature]

    run_started(node, scenario)


def test_rev15b_hold_a_full_proposal_refused_for_now_can_come_again(tmp_path: Path) -> None:
    """The contrast to test_rev15b_a_compact_proposal_refused_for_now_can_come_again: a
    full PROPOSAL the engine refused for now (round far ahead) is let through again."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, _txs = _proposed_block(tmp_path, devnet)

    async def scenario() -> None:
        handed = watch_handed(node)
        proposal = Proposal.create(
            _proposer_key(node), devnet.genesis.chain_id, 1, ROUND, -1, block.hash()
        )
        full = encode_proposal(proposal, block.encode())
        async with _raw_peer(node) as flooder, _raw_peer(node) as gossiper:
            await flooder.send(Gossip(Kind.PROPOSAL, full))
            await wait_until_async(lambda: len(handed) == 1, what="the proposal handed on")
            await wait_until_async(
                lambda: not node.driver.holds(proposal) and node.driver._inbox.empty(),
                what="the proposal refused by the engine",
            )
            await gossiper.send(Gossip(Kind.PROPOSAL, full))
            await wait_until_async(lambda: len(handed) == 2, what="the copy let through again")

    run_started(node, scenario)
