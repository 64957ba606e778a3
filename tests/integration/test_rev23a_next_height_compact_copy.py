"""Review rev23a: red23a 3 is open one height on: a non-proposer's compact copy of the
next height's block still starts its rebuild.

`Node._check_proposer` judges only the chain's height + 1. A compact proposal of the
height after, which honest peers a height ahead send while this node still gathers the
precommits of its own (the usual lag at the end of every height), is checked against its
header and signature, by any key, and starts the rebuild keyed by the block hash
(`_rebuilding`), asking its sender first: the next proposer's own copy of that block then
waits behind it (`_await_rebuild`) until the attacker's silence times out
(PROPOSAL_TXS_TIMEOUT_S), exactly as red23a 3 showed for the current height. The node
knows that height's set (`Engine.next_validators`, every height but an epoch's first),
and `Engine._buffer_proposal` drops a non-proposer's proposal of it at once, after the
fetch: the check could come first, as it does for the current height.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey
from fluxchain.node.compact import encode_compact_proposal
from p2p.messages import Gossip, Kind
from tests.integration.test_compact_proposal import ROUND, _asked, _missing_txs, _raw_peer
from tests.support.wait import wait_until_async


def test_a_non_proposers_compact_copy_of_a_known_next_height_starts_no_rebuild(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, _txs, _compact),
            contextlib.AsyncExitStack() as stack,
        ):
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            following = node.driver.engine.next_validators
            assert following is not None  # height 2's set is known while height 1 is decided
            attacker = await stack.enter_async_context(_raw_peer(node))
            thief = SigningKey(b"\x6c" * 32)
            assert proposer(following, 2, ROUND) != thief.public_key
            # A block of round ROUND whose txs the node partly lacks, proposed for height 2
            # under a throw-away key (header, ids and parent commit all match).
            stolen = Proposal.create(thief, node.genesis.chain_id, 2, ROUND, -1, block.hash())
            await attacker.send(
                Gossip(Kind.COMPACT_PROPOSAL, encode_compact_proposal(stolen, block))
            )
            asked = True
            try:
                await _asked(attacker, 1.5)
            except AssertionError:
                asked = False
            print(f"asked the thief for txs={asked} rebuilding={len(node._rebuilding)}")
            assert not asked, (
                "a non-proposer's compact proposal of the next height, whose set the node "
                "knows, started the block's rebuild (its sender asked for the txs): the "
                "next proposer's copy of that block would wait behind it"
            )

    asyncio.run(scenario())
