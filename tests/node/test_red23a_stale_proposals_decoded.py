"""Red team red23a: a proposal of a committed height has its whole block decoded.

`Node.on_gossip` takes a full PROPOSAL of a height at or below the chain's ("stale"),
and unless it is the head block byte for byte (`_committed_copy`), decodes and checks
its block (`check_proposal_block`: the block decoded, every tx hashed, the Merkle root)
and its signature, and only then drops it, unpunished (`if stale: return False`).

Committed blocks are free to anyone (GET_BLOCKS serves them), and a proposal of one
needs only a signature by any key: nothing asks whether its signer proposed that round,
since the proposal is dropped anyway. So one peer re-wraps the chain's old blocks (up to
max_block_bytes each, 4 MiB in production) in proposals signed by a throw-away key, one
signature each, and has the node decode up to its byte budget of them (16 MiB a second
a connection) for nothing, unpunished, for as long as it likes.

The fix belongs in `Node.on_gossip`: a stale proposal is dropped before its block is
decoded (its checks only serve a proposal consensus may take); or a stale proposal not
signed by its round's proposer is refused and punished first (an honest node never relays
one), and only the rest decoded.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from consensus.messages import Proposal
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer
from fluxchain.node.driver import Driver, encode_proposal
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.support.chain import Builder, NoGossip, funded_key, node_hot_key


def test_a_proposal_of_a_committed_height_is_dropped_before_its_block_is_decoded(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        builder = Builder(chain)
        payer = funded_key()
        for n in range(3):  # blocks with a few txs, as committed blocks are
            txs = [
                builder.tx(
                    payer, Transfer(bytes([n * 10 + i + 1]) * 20, COIN, b"m" * 200), fee=5_000
                )
                for i in range(5)
            ]
            builder.commit(txs)
        builder.commit()  # the head: a copy of it is compared, not decoded
        driver = Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip())
        driver._new_height()
        punished: list[str] = []
        host = SimpleNamespace(
            driver=driver,
            chain=chain,
            genesis=SimpleNamespace(chain_id=chain.params.chain_id),
            network=SimpleNamespace(
                punish=lambda peer_id, points, reason: punished.append(reason),
                unrelayed=lambda kind, payload: None,
            ),
        )
        host._on_proposal = lambda *args: Node._on_proposal(host, *args)  # type: ignore[arg-type]
        host._held_copy = lambda *args: Node._held_copy(host, *args)  # type: ignore[arg-type]
        host._check_head_copy = lambda *args: Node._check_head_copy(host, *args)  # type: ignore[arg-type]
        thief = SigningKey(b"\x6c" * 32)  # no validator's key
        payloads = []
        for height in range(1, chain.height):
            old = chain.get_block(height)
            assert old.txs
            proposal = Proposal.create(
                thief, chain.params.chain_id, height, old.header.round, -1, old.hash()
            )
            payloads.append(encode_proposal(proposal, old.encode()))
        decoded: list[int] = []
        real_decode = Block.decode

        def counting_decode(raw: bytes, max_bytes: int, max_txs: int) -> Block:
            decoded.append(len(raw))
            return real_decode(raw, max_bytes, max_txs)

        monkeypatch.setattr(Block, "decode", staticmethod(counting_decode))
        relayed = [
            await Node.on_gossip(host, "02" + "11" * 32, Kind.PROPOSAL, payload)  # type: ignore[arg-type]
            for payload in payloads
        ]
        monkeypatch.undo()
        print(
            f"stale proposals={len(payloads)} blocks decoded={len(decoded)} "
            f"bytes={sum(decoded)} punished={punished}"
        )
        assert not any(relayed)
        # Either fix passes: no decode, or a decode that costs the sender (an honest node
        # never sends a proposal not signed by its round's proposer).
        assert decoded == [] or punished, (
            f"{len(decoded)} blocks ({sum(decoded)} bytes) of committed heights decoded for "
            "proposals that are dropped unpunished anyway"
        )
        await driver.stop()

    asyncio.run(scenario())
