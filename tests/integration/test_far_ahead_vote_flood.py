"""One byzantine validator signs prevotes for 1,000 far-ahead rounds of the current height.

The engine keeps at most MAX_FUTURE_ROUNDS_PER_VALIDATOR (3) rounds ahead per validator.
Before, the node relayed and logged (WAL) every one of them before the engine refused it:
disk, memory, bandwidth and restart replay time grew without bound within a height. Now a
vote is relayed and logged only if the engine would keep it (`Engine.admits`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.events import VoteReceived
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.p2p.harness import node_raw_peer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

FLOOD = 1_000
BOUND = 10  # generous: the engine holds at most 3 future rounds of one validator


def test_one_validators_far_ahead_votes_are_neither_relayed_nor_logged_without_bound(
    tmp_path: Path,
) -> None:
    devnet = Devnet(tmp_path)
    node = Node(Home(devnet.homes[0]))
    byzantine = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))  # validator 1's key

    async def scenario() -> None:
        await node.start()
        try:
            assert node.chain.validators().power_of(byzantine.public_key) > 0
            async with node_raw_peer(node) as attacker:
                chain_id = node.genesis.chain_id
                height = node.chain.height + 1
                flood = [
                    Vote.create(byzantine, chain_id, VoteType.PREVOTE, height, 1_000 + r, NIL)
                    for r in range(FLOOD)
                ]
                relayed = 0
                for vote in flood:
                    relayed += await node.on_gossip(attacker.id, Kind.VOTE, pack(vote.to_fields()))
                wal = node.driver.wal
                assert wal is not None
                rounds = {vote.round for vote in flood}

                def logged() -> int:
                    return sum(
                        1
                        for item in wal.replay(height)
                        if isinstance(item, VoteReceived)
                        and item.vote.validator == byzantine.public_key
                        and item.vote.round in rounds
                    )

                # the driver steps each input it takes before it awaits the next one
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
                print(f"relayed={relayed} logged={logged()} of {FLOOD}")
                assert relayed <= BOUND, f"{relayed} of {FLOOD} far-ahead votes relayed"
                assert logged() <= BOUND, f"{logged()} of {FLOOD} far-ahead votes in the WAL"
        finally:
            await node.stop()

    asyncio.run(scenario())
