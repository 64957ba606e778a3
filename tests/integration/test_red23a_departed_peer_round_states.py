"""Red team red23a: peers that left keep a consensus-gossip state each, for good.

`ConsensusGossip` keeps a `PeerRoundState` per peer id (`_peers`), created on first use
(`peer`), and drops it only when the network detaches the peer (`forget`). But
`Node._take_proposal` notes its sender (`consensus_gossip.on_received`) when a compact
proposal's rebuild ends, in a task that outlives the sender's connection: once the sender
is gone, `on_received` creates a state for it again, and nothing forgets it.

So an attacker with a fresh node key each time connects, sends a compact proposal of
the current height (a block whose txs the node lacks: any proposal an honest peer relays,
here the rounds' proposers' re-proposals of one block; a non-proposer's is refused before
any rebuild since fix23a), waits for the node's request for the txs (asked of a second
peer of its own, which announced the block as held) and leaves; the second peer then
serves them. Each such cycle (a handshake and
one frame) leaves one more state (each with its marks, up to MAX_MARKS_PER_PEER
entries) in a map that nothing bounds; `holders`, run for every rebuild and every
proposal send, walks all of them.

The fix belongs in `ConsensusGossip.on_received` (note only peers that have a state, or
that are connected: the way `on_sent_to_all` treats a peer that just left) or in
`Node._take_proposal` / `_hand_awaiting` (skip a sender that is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.node.compact import encode_compact_proposal
from p2p.messages import Gossip, Kind, ProposalTxs, RoundState
from tests.integration.test_compact_proposal import (
    ROUND,
    SENT_BEFORE,
    _asked,
    _missing_txs,
    _raw_peer,
    watch_handed,
)
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

CYCLES = 4


def test_a_peer_that_left_keeps_no_consensus_gossip_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            _missing_txs(tmp_path) as (node, block, txs, _),
            contextlib.AsyncExitStack() as stack,
        ):
            gossip = node.consensus_gossip
            server = await stack.enter_async_context(_raw_peer(node))
            validators = node.chain.validators()
            keys = {
                key.public_key: key
                for key in (derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4))
            }
            handed = watch_handed(node)
            gone: list[str] = []
            for cycle in range(CYCLES):
                # A re-proposal of the block (built in ROUND) by the proposer of a later
                # round: a proposal each cycle that no earlier cycle handed to consensus.
                round_ = ROUND + 1 + cycle
                key = keys[proposer(validators, 1, round_)]
                proposal = Proposal.create(
                    key, node.genesis.chain_id, 1, round_, ROUND, block.hash()
                )
                await server.send(RoundState(1, round_, 1, block.hash(), ()))

                def claimed(r: int = round_) -> bool:
                    return server.id in gossip.holders(1, r, block.hash())

                await wait_until_async(claimed, what="the server's claim read")
                async with _raw_peer(node) as passer:
                    compact = encode_compact_proposal(proposal, block)
                    await passer.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
                    # The claimed holder is asked first; the sender leaves meanwhile.
                    request = await _asked(server, 5.0, "the server was not asked for the txs")
                    gone.append(passer.id)
                await wait_until_async(
                    lambda: gone[-1] not in {p.peer_id for p in node.network.peers()},
                    what="the sender gone",
                )
                await server.send(
                    ProposalTxs(request.request_id, tuple(tx.raw for tx in txs[SENT_BEFORE:]))
                )

                def taken(signer: bytes = key.public_key) -> bool:
                    return any(item.proposal.proposer == signer for item in handed)

                await wait_until_async(taken, what="the rebuilt proposal handed to the driver")
            connected = {p.peer_id for p in node.network.peers()}
            leaked = [peer_id for peer_id in gone if peer_id in gossip._peers]
            print(
                f"cycles={CYCLES} states={len(gossip._peers)} connected={len(connected)} "
                f"of departed peers={len(leaked)}"
            )
            assert leaked == [], (
                f"{len(leaked)} of {CYCLES} peers that left keep a consensus gossip state "
                f"({len(gossip._peers)} states, {len(connected)} peers connected)"
            )

    asyncio.run(scenario())
