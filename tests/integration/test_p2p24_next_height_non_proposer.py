"""p2p24 (decision): a proposal of the engine's next height, whose set the node knows
(every height but an epoch's first), not signed by that round's proposer costs its sender
as one of the height being decided does.

No honest peer sends one. A peer a height ahead sends proposals its own engine stored
(`proposals_held`: its round's proposer's only), relays only those (`_take_proposal`),
and signs only in its own turn; it chose that proposer from the set the node holds as
`next_validators` (the set changes only in an epoch's first block, `process_epoch`, and
`Driver._new_height` leaves `next_validators` unknown exactly there), with the same
`proposer` function. fix23a dropped it unpunished, so a peer could send such frames for
free (each one's fields read, its bytes hashed into the seen-cache) forever.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import first_block
from tests.support.wait import wait_until_async

JUNK = "02" + "8f" * 32


@pytest.mark.parametrize(
    ("height", "points"), [(2, 100.0), (4, 0.0)], ids=["next_height_set_known", "beyond_next"]
)
def test_a_non_proposers_proposal_of_the_known_next_height_costs_its_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, height: int, points: float
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block = first_block(tmp_path / "builder", devnet.genesis)
    chain_id = devnet.genesis.chain_id
    thief = SigningKey(b"\x8f" * 32)  # no validator's key

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            following = node.driver.engine.next_validators
            assert following is not None  # not an epoch's first height: height 2's set known
            assert proposer(following, 2, 1) != thief.public_key
            punished: list[tuple[str, float, str]] = []
            monkeypatch.setattr(
                node.network,
                "punish",
                lambda peer, points, why: punished.append((peer, points, why)),
            )
            junk = Proposal.create(thief, chain_id, height, 1, 0, block.hash())
            payload = encode_proposal(junk, block.encode())
            assert await node.on_gossip(JUNK, Kind.PROPOSAL, payload) is False
            print(f"height={height} punished={punished}")
            assert sum(p for _, p, _ in punished) == points, (
                f"a non-proposer's proposal of height {height} (engine at 1) cost its sender "
                f"{punished}, expected {points} points"
            )
            if points:
                assert punished == [(JUNK, points, "proposal: bad_proposal")]
            assert node.driver.engine.buffered()[0] == []
        finally:
            await node.stop()

    asyncio.run(scenario())
