"""Red team red23a: a non-proposer's copy of the proposer's block holds back its rebuild.

`Node._on_compact_proposal` checks a compact proposal against its own header and its
signature, by any key, and starts a rebuild keyed by the block hash alone
(`Node._rebuilding`); nothing asks whether the signer is the round's proposer until
`_take_proposal`, after the fetch. A later compact proposal of the same block, the real
proposer's included, is parked behind that rebuild (`_await_rebuild`) and waits for it.

So any peer that relays the proposer's block first, re-signed by a throw-away key (its
own proposal of the block hash: header, ids and parent commit all match), and then never
answers the node's request for the missing txs, holds the real proposal back for
PROPOSAL_TXS_TIMEOUT_S (1 s): the proposer, which holds the txs, is asked only once the
attacker's request timed out. Four such copies fill `MAX_PROPOSALS_AWAITING_REBUILD`,
and the real copy is then dropped until consensus gossip sends it again. Every height
whose txs some nodes lack, at the cost of one signature a height.

The fix belongs in `Node._on_compact_proposal` (and the full PROPOSAL path in
`on_gossip`): a proposal of the current height not signed by its round's proposer is
refused before any rebuild (the check `_take_proposal` makes after it), or the rebuild
is keyed by the proposal, not by the block hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from consensus.messages import Proposal
from fluxchain.core.crypto import SigningKey
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.node import PROPOSAL_TXS_TIMEOUT_S
from p2p.messages import Gossip, Kind, ProposalTxs, RoundState
from tests.integration.test_compact_proposal import (
    ROUND,
    SENT_BEFORE,
    _asked,
    _missing_txs,
    _proposer_key,
    _raw_peer,
    watch_handed,
)
from tests.integration.test_fix16b_sybil_holders import _validator_peer
from tests.support.wait import wait_until_async


def test_a_non_proposers_copy_of_the_block_does_not_hold_back_the_proposers_rebuild(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, txs, compact),
            contextlib.AsyncExitStack() as stack,
        ):
            proposer_key = _proposer_key(node)
            attacker = await stack.enter_async_context(_raw_peer(node))
            proposer = await stack.enter_async_context(_validator_peer(node, proposer_key))
            # The proposer's block under the attacker's own signature (a throw-away key).
            thief = SigningKey(b"\x6b" * 32)
            assert node.chain.validators().power_of(thief.public_key) == 0
            stolen = Proposal.create(thief, node.genesis.chain_id, 1, ROUND, -1, block.hash())
            await attacker.send(
                Gossip(Kind.COMPACT_PROPOSAL, encode_compact_proposal(stolen, block))
            )
            # (On 20969d9 the node asks the attacker for the missing txs: it never answers.)
            with contextlib.suppress(AssertionError):
                await _asked(attacker, 0.5)
            started = time.monotonic()
            # The proposer's own compact proposal, then its ROUND_STATE holding it (as its
            # prevote's announcement follows the proposal).
            await proposer.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            await proposer.send(RoundState(1, ROUND, 1, block.hash(), ()))
            wait_s = 3 * PROPOSAL_TXS_TIMEOUT_S + 1.0
            request = await _asked(
                proposer,
                wait_s,
                f"the proposer, which holds the txs, was not asked for them within {wait_s} s",
            )
            asked_after = time.monotonic() - started
            await proposer.send(
                ProposalTxs(request.request_id, tuple(tx.raw for tx in txs[SENT_BEFORE:]))
            )
            handed = watch_handed(node)

            def taken() -> bool:
                return any(item.proposal.proposer == proposer_key.public_key for item in handed)

            await wait_until_async(taken, what="the proposer's rebuilt proposal taken")
            print(f"the proposer was asked {asked_after:.2f} s after its compact proposal")
            assert asked_after < PROPOSAL_TXS_TIMEOUT_S / 2, (
                f"the proposer was asked {asked_after:.2f} s after its compact proposal: "
                "its rebuild waited behind the one a non-proposer's copy of the block started"
            )

    asyncio.run(scenario())
