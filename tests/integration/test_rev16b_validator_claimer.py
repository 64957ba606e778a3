"""A byzantine validator claiming every proposal is asked for the txs before the sender
(review rev16b 1).

Attack: a validator (stake, but up to 1/3 may be byzantine) announces in ROUND_STATE
that it holds every proposal as soon as it hears of it, and never answers
GET_PROPOSAL_TXS. fix16b ranks sources validator-holders first and the sender only
"first among its equals": the proposer that just sent the compact copy has not yet
announced it in a ROUND_STATE (that comes on its next gossip tick), so it is a mere
relayer and the claimer is asked first. What a user sees: every honest node's rebuild
waits PROPOSAL_TXS_TIMEOUT_S (1 s) per such validator, up to 3 s (the propose timeout)
with three of them, every height; before fix16b the sender was asked first and
answered at once. Fix direction: ask the sender first (it just proved it has the
proposal by sending it), or count a validator's compact copy as holding it, and rank
claimers by what they delivered before (a claimer that never answers loses its rank)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from fluxchain.node.node import PROPOSAL_TXS_TIMEOUT_S
from p2p.messages import Gossip, Kind, RoundState
from tests.integration.test_compact_proposal import (
    ROUND,
    _asked,
    _missing_txs,
    _proposer_key,
    _rebuilt_from,
)
from tests.integration.test_fix16b_sybil_holders import _other_validator_key, _validator_peer
from tests.support.wait import wait_until_async


def test_rev16b_the_proposer_sending_its_compact_copy_is_asked_before_a_claiming_validator(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, txs, compact),
            contextlib.AsyncExitStack() as stack,
        ):
            proposer_key = _proposer_key(node)
            byzantine_key = _other_validator_key(node, proposer_key)
            byzantine = await stack.enter_async_context(_validator_peer(node, byzantine_key))
            proposer = await stack.enter_async_context(_validator_peer(node, proposer_key))
            # The byzantine validator heard the proposal too and claims it at once.
            await byzantine.send(RoundState(1, ROUND, 1, block.hash(), ()))
            await wait_until_async(
                lambda: node.consensus_gossip.holders(1, ROUND, block.hash()) == [byzantine.id],
                what="the claim read by the node",
            )
            started = time.monotonic()
            await proposer.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            wait_s = PROPOSAL_TXS_TIMEOUT_S / 2
            request = await _asked(
                proposer,
                wait_s,
                f"the proposer that sent the compact copy was not asked for the txs "
                f"within {wait_s:.1f} s: the silent claiming validator came first",
            )
            await _rebuilt_from(proposer, request.request_id, node, block, txs, "the rebuilt block")
            print(f"rebuilt after {time.monotonic() - started:.2f} s")

    asyncio.run(scenario())
