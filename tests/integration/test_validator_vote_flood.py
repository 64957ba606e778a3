"""Review of issue 17 #4: the relay/WAL check asks only "is the signer a validator of the
height, is the signature good". One byzantine validator (under 1/3 of the power) signs
as many distinct votes of the current height as it likes: rounds far ahead (the engine
keeps 3 future rounds per validator and refuses the rest TOO_FAR_AHEAD) or conflicting
votes in one round for blocks nobody proposed (the engine does not count them). Every
honest node still writes each one to its consensus WAL and relays it to every peer
(`Node._on_vote`: relay and WAL before the engine's verdict), so the network amplifies
the flood to every node and every disk, and the sender is never punished.

Fixed: a node relays and logs a vote only if its engine would keep it (`Engine.admits`,
asked by `Driver.admit` with the votes still queued), and reports one evidence per
offender and height.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.events import VoteReceived
from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack
from fluxchain.core.tx import TxKind
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.p2p.harness import node_raw_peer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

FLOOD = 500


@pytest.mark.parametrize("shape", ["rounds_far_ahead", "conflicting_in_one_round"])
def test_one_validator_floods_every_wal_and_peer_with_votes_the_engine_refuses(
    tmp_path: Path, shape: str
) -> None:
    devnet = Devnet(tmp_path)
    node = Node(Home(devnet.homes[0]))
    byzantine = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))  # validator 1 of 4

    async def scenario() -> None:
        await node.start()
        try:
            async with node_raw_peer(node) as attacker:
                chain_id, height = node.genesis.chain_id, node.chain.height + 1
                if shape == "rounds_far_ahead":
                    flood = [
                        Vote.create(byzantine, chain_id, VoteType.PREVOTE, height, 100 + i, b"")
                        for i in range(FLOOD)
                    ]
                else:
                    flood = [
                        Vote.create(
                            byzantine,
                            chain_id,
                            VoteType.PREVOTE,
                            height,
                            0,
                            sha256(i.to_bytes(4, "big")),
                        )
                        for i in range(FLOOD)
                    ]
                relayed = 0
                for vote in flood:
                    relayed += await node.on_gossip(attacker.id, Kind.VOTE, pack(vote.to_fields()))
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
                wal = node.driver.wal
                assert wal is not None
                logged = sum(
                    1
                    for item in wal.replay(height)
                    if isinstance(item, VoteReceived)
                    and item.vote.validator == byzantine.public_key
                )
                held = sum(1 for vote in flood if node.driver.holds(vote))
                # What the engine keeps is bounded; what is relayed and logged should be too.
                assert relayed <= held + 3 and logged <= held + 3, (
                    f"{relayed} relayed, {logged} logged, {held} held by the engine"
                )
                # Of 500: the future-round quota (3), or the first vote and one conflicting
                # vote kept as evidence (2); never more than 4 past this node.
                assert relayed <= 4 and logged <= 4, f"{relayed} relayed, {logged} logged"
                # ... and at most one evidence tx against the offender built by this node.
                evidence = [tx for tx in node.service.candidates() if tx.kind is TxKind.EVIDENCE]
                assert len(evidence) <= 1, f"{len(evidence)} evidence txs for one offender"
        finally:
            await node.stop()

    asyncio.run(scenario())
