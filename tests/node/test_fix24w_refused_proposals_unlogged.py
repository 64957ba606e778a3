"""fix24w (review rev23a 1, far-round half): the driver hands a proposal the engine would
refuse (a round beyond the next, no vote of it) back to the network unlogged, as the
engine's `Refused` would be, and judges each proposal once (`Engine.proposal_fate`, taken
by the `step` right after)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.engine import Engine, Fate
from consensus.events import ProposalReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import sha256
from fluxchain.core.votes import Vote
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.node.wal import ConsensusWal
from tests.support.chain import NoGossip, node_hot_key, open_chain


def test_a_refused_proposal_is_handed_back_unlogged_and_each_proposal_judged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = open_chain(tmp_path / "node")
    refused: list[Proposal | Vote] = []
    judged: list[Proposal] = []
    fate_of = Engine._fate

    def counted(engine: Engine, proposal: Proposal) -> Fate:
        judged.append(proposal)
        return fate_of(engine, proposal)

    async def scenario() -> None:
        wal = ConsensusWal(tmp_path / "wal")
        driver = Driver(
            chain,
            NodeService(chain),
            node_hot_key(0),
            None,  # an observer: it signs nothing, so nothing but the proposals moves
            NoGossip(),
            wal=wal,
            on_refused=lambda message, block_bytes: refused.append(message),
        )
        driver._new_height()
        try:
            engine = driver.engine
            assert engine.validators is not None
            height, chain_id = engine.height, chain.params.chain_id
            keys = {node_hot_key(i).public_key: node_hot_key(i) for i in range(4)}

            def proposal_of(round_: int) -> Proposal:
                key = keys[proposer(engine.validators, height, round_)]  # type: ignore[arg-type]
                return Proposal.create(key, chain_id, height, round_, -1, sha256(b"%d" % round_))

            monkeypatch.setattr(Engine, "_fate", counted)
            far = proposal_of(engine.round + 2)  # just past the window
            driver._handle(ProposalReceived(far, b"far block"))
            nxt = proposal_of(engine.round + 1)  # the window's edge
            driver._handle(ProposalReceived(nxt, b"next block"))
            logged = [
                item.proposal for item in wal.replay(height) if isinstance(item, ProposalReceived)
            ]
            assert refused == [far], "the far round's proposal handed back, to come again"
            assert logged == [nxt], "only the proposal the engine keeps is logged"
            assert engine.proposal(nxt.round, nxt.block_hash) is not None
            assert engine.proposal(far.round, far.block_hash) is None
            assert judged == [far, nxt], "each proposal judged once, by the driver's question"
        finally:
            for timer in driver._timers:
                timer.cancel()
            wal.close()

    try:
        asyncio.run(scenario())
    finally:
        chain.close()
