"""A validator's vote and the ROUND_STATE it makes due leave as one message (issue 22,
idle22).

A prevote mostly follows the proposal it votes on, checked in the same step of the
driver; the proposal makes a ROUND_STATE due at once. The gossip tick sent it up to
100 ms later, one message to each of 18 peers on the WAN testnet, beside the 18 of the
prevote. Now the node announces in the turn it broadcasts its vote, so each link's writer
sends the vote and the round state as one BATCH.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from fluxchain.core.encoding import unpack
from fluxchain.core.votes import Vote
from fluxchain.node.driver import encode_proposal
from p2p.messages import Gossip, Kind, Message, RoundState
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _another_validators_proposal
from tests.integration.test_vote_relay_fanout import _connect_peers
from tests.p2p.harness import RawPeer


async def _messages_until_own_vote(peer: RawPeer, validator: bytes) -> list[Message]:
    """The frames of the first websocket message carrying `validator`'s vote."""
    async with asyncio.timeout(20.0):
        while True:
            msg = await peer.ws.receive()
            assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data)
            frames = peer.frames_of(msg.data)
            for frame in frames:
                if isinstance(frame, Gossip) and frame.kind is Kind.VOTE:
                    vote = Vote.from_fields(unpack(frame.payload))
                    if vote.validator == validator:
                        return frames


def test_the_prevote_on_a_proposal_and_the_round_state_holding_it_share_a_message(
    tmp_path: Path,
) -> None:
    devnet = Devnet(tmp_path)
    node, proposal, block, _txs = _another_validators_proposal(tmp_path, devnet)

    async def scenario() -> None:
        await node.start()
        (peer,) = await _connect_peers(node, 1)
        try:
            assert node.key.public_key != block.header.proposer
            await peer.send(Gossip(Kind.PROPOSAL, encode_proposal(proposal, block.encode())))
            frames = await _messages_until_own_vote(peer, node.key.public_key)
            states = [f for f in frames if isinstance(f, RoundState)]
            assert states, f"the vote came alone: {[type(f).__name__ for f in frames]}"
            assert states[-1].proposal == block.hash(), "the round state names the proposal"
        finally:
            await peer.close()
            await node.stop()

    asyncio.run(scenario())
