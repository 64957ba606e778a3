"""Stakeless Sybils claiming to hold every proposal do not hold back a compact
proposal's rebuild (fix16b 1).

A node that lacks some of a compact proposal's txs asks other peers for them in turn,
one PROPOSAL_TXS_TIMEOUT_S (1 s) each. Peers whose ROUND_STATE shows the proposal held
came first, but nothing checks that claim: Sybils (fresh node keys, no stake, inbound)
that announce every proposal they hear of, and never answer, were asked before a
validator that holds the block, and past MAX_PROPOSAL_TXS_SOURCES of them the validator
was never asked at all: the node waited for the full block. Sources that cannot be
faked cheaply (validators, by the node key their handshake proved) now come first."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey
from fluxchain.node.node import PROPOSAL_TXS_TIMEOUT_S, Node
from p2p.messages import Gossip, Kind, RoundState
from tests.integration.test_compact_proposal import (
    ROUND,
    _asked,
    _missing_txs,
    _proposer_key,
    _raw_peer,
    _rebuilt_from,
)
from tests.p2p.harness import RawPeer, raw_peer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path


@contextlib.asynccontextmanager
async def _validator_peer(node: Node, key: SigningKey) -> AsyncIterator[RawPeer]:
    """A raw peer that proves `key` (a validator's node key) in its handshake."""
    async with raw_peer(f"127.0.0.1:{node.config.p2p_port}", key) as peer:
        await peer.handshake(chain_id=node.genesis.chain_id, genesis_hash=node.chain.genesis_hash)
        await wait_until_async(
            lambda: peer.id in {p.peer_id for p in node.network.peers()},
            what="the validator's link accepted",
        )
        yield peer


def _other_validator_key(node: Node, proposer_key: SigningKey) -> SigningKey:
    """The node key of a devnet validator that is neither `node` nor the proposer."""
    return next(
        key
        for key in (derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4))
        if key.public_key not in (node.key.public_key, proposer_key.public_key)
    )


@pytest.mark.parametrize("sybils", [3, 8])
def test_a_validator_holding_the_proposal_is_asked_before_sybils_claiming_it(
    tmp_path: Path, sybils: int
) -> None:
    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, txs, compact),
            contextlib.AsyncExitStack() as stack,
        ):
            # A validator other than the node and the proposer: it holds the block.
            validator_key = _other_validator_key(node, _proposer_key(node))
            claimers = [await stack.enter_async_context(_raw_peer(node)) for _ in range(sybils)]
            validator = await stack.enter_async_context(_validator_peer(node, validator_key))
            holding = RoundState(1, ROUND, 1, block.hash(), ())
            for peer in [*claimers, validator]:
                await peer.send(holding)
            await wait_until_async(
                lambda: len(node.consensus_gossip.holders(1, ROUND, block.hash())) == sybils + 1,
                what="every claim read by the node",
            )
            started = time.monotonic()
            # The first copy comes from a Sybil too (Sybils relay without rebuilding).
            await claimers[0].send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            wait_s = 3 * PROPOSAL_TXS_TIMEOUT_S + 1.0
            request = await _asked(
                validator,
                wait_s,
                f"the validator holding the proposal was not asked for its txs "
                f"within {wait_s:.0f} s: {sybils} Sybils claiming it came first",
            )
            asked_after = time.monotonic() - started
            await _rebuilt_from(
                validator, request.request_id, node, block, txs, "the rebuilt block"
            )
            rebuilt_after = time.monotonic() - started
            print(
                f"sybils={sybils} validator asked after {asked_after:.2f} s, "
                f"block rebuilt after {rebuilt_after:.2f} s"
            )
            assert asked_after < PROPOSAL_TXS_TIMEOUT_S / 2, (
                f"the validator was asked {asked_after:.2f} s after the compact copy: "
                "the node asked Sybils first"
            )

    asyncio.run(scenario())
