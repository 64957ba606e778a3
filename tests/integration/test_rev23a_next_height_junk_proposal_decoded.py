"""Review rev23a: a non-proposer's proposal of the engine's next height is decoded in
full, though the node knows that height's set and the engine drops it.

`Node._check_proposer` judges only the chain's height + 1; a proposal of the height after
(the engine's next, which honest peers a height ahead relay) goes on to `proposal.verify`
and `check_proposal_block` (`Block.decode` of up to max_block_bytes, every tx hashed),
then `Engine._buffer_proposal` drops it at once when it knows the next set
(`next_validators`: every height but an epoch's first) and it is not that round's
proposer's. The votes of that height were given this very check in red23a 1 (a signer
outside a known next set: refused, 10 points); proposals were not.

The block costs the attacker nothing: `check_proposal_block` never compares the block's
height with the proposal's, so any committed block (GET_BLOCKS serves them), re-proposed
on pol_round 0 for round 1, 2, ..., under any key, is decoded and hashed whole, at the
PROPOSAL byte budget, unpunished and unbounded in time.

Further heights (the chain's + 3 and on) fare alike: decoded and signature-checked, then
`Refused` by the engine ("we are behind"), forgotten to come again, unpunished; nothing of
them is used before they come again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import first_block
from tests.support.wait import wait_until_async

JUNK = "02" + "8e" * 32
ROUNDS = 10


@pytest.mark.parametrize("height", [2, 4], ids=["next_height_set_known", "beyond_next"])
def test_a_non_proposers_proposal_of_a_later_height_is_not_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, height: int
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block = first_block(tmp_path / "builder", devnet.genesis)
    chain_id = devnet.genesis.chain_id
    thief = SigningKey(b"\x8e" * 32)  # no validator's key

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            following = node.driver.engine.next_validators
            assert following is not None  # not an epoch's first height: height 2's set known
            assert all(proposer(following, 2, r) != thief.public_key for r in range(ROUNDS))
            assert node.chain.height == 0
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
            for round_ in range(1, ROUNDS + 1):
                junk = Proposal.create(thief, chain_id, height, round_, 0, block.hash())
                payload = encode_proposal(junk, block.encode())
                assert await node.on_gossip(JUNK, Kind.PROPOSAL, payload) is False
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            monkeypatch.setattr(Block, "decode", staticmethod(real_decode))
            print(
                f"junk={ROUNDS} decoded={len(decoded)} bytes={sum(decoded)} "
                f"buffered={len(node.driver.engine.buffered()[0])} punished={punished}"
            )
            assert node.driver.engine.buffered()[0] == []  # the engine dropped every one
            assert decoded == [], (
                f"{len(decoded)} blocks ({sum(decoded)} bytes) of a non-proposer's proposals "
                f"of height {height} (chain at 0) were decoded before the engine dropped or "
                "refused them"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
