"""Which gossiped proposals a node refuses by their signer, and whom it punishes (red23a
2, 3, 5): one of the height it decides not signed by its round's proposer is refused
before its block is decoded or rebuilt and costs the sender (no honest peer relays one);
one of a height past the engine's next, whose set the node does not know, costs nobody
(the engine's next height, whose set it knows, costs as the height decided does:
test_p2p24_next_height_non_proposer.py); the round's proposer's is taken and relayed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import first_block
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

HONEST, JUNK_NOW, JUNK_COMPACT, JUNK_LATER = (f"02{n:02x}" + "11" * 31 for n in range(4))


def test_a_non_proposers_proposal_is_refused_and_punished_only_where_it_can_be_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block = first_block(tmp_path / "builder", devnet.genesis)
    chain_id = devnet.genesis.chain_id
    thief = SigningKey(b"\x7a" * 32)  # no validator's key
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            punished: list[tuple[str, float]] = []
            monkeypatch.setattr(
                node.network, "punish", lambda peer, points, why: punished.append((peer, points))
            )
            decoded: list[int] = []
            real_decode = Block.decode

            def counting_decode(raw: bytes, max_bytes: int, max_txs: int) -> Block:
                decoded.append(len(raw))
                return real_decode(raw, max_bytes, max_txs)

            monkeypatch.setattr(Block, "decode", staticmethod(counting_decode))
            # The height being decided, a re-proposal on pol_round 0 by a non-validator.
            junk = Proposal.create(thief, chain_id, 1, 1, 0, block.hash())
            payload = encode_proposal(junk, block.encode())
            assert await node.on_gossip(JUNK_NOW, Kind.PROPOSAL, payload) is False
            compact = encode_compact_proposal(
                Proposal.create(thief, chain_id, 1, 0, -1, block.hash()), block
            )
            assert await node.on_gossip(JUNK_COMPACT, Kind.COMPACT_PROPOSAL, compact) is False
            assert decoded == [] and not node._rebuilding
            assert [peer for peer, points in punished if points >= 100] == [
                JUNK_NOW,
                JUNK_COMPACT,
            ]
            # A height past the engine's next: no set of it is known, nobody is punished
            # (an honest peer ahead relays that height's proposals).
            later = Proposal.create(thief, chain_id, 3, 0, -1, block.hash())
            await node.on_gossip(JUNK_LATER, Kind.PROPOSAL, encode_proposal(later, block.encode()))
            assert all(peer != JUNK_LATER for peer, _ in punished)
            monkeypatch.setattr(Block, "decode", staticmethod(real_decode))
            # The round's proposer's own: taken and relayed, its sender unpunished.
            chosen = proposer(node.chain.validators(), 1, 0)
            signer = next(k for k in keys if k.public_key == chosen)
            real = Proposal.create(signer, chain_id, 1, 0, -1, block.hash())
            relayed = await node.on_gossip(
                HONEST, Kind.PROPOSAL, encode_proposal(real, block.encode())
            )
            assert relayed is True
            assert all(peer != HONEST for peer, _ in punished)
        finally:
            await node.stop()

    asyncio.run(scenario())
