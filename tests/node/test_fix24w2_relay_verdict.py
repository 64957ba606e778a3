"""fix24w2 (review rev24w): the driver tells the node whether a gossiped proposal may be
relayed: only if the engine keeps it when it steps it. Queued into an idle loop it is
answered at once, judged once for the relay, the log and the step; queued behind other
inputs it is answered when stepped; a stopped loop answers every open question no."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.engine import Engine, Fate
from consensus.events import ProposalReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import sha256
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.node.wal import ConsensusWal
from tests.support.chain import NoGossip, node_hot_key, open_chain
from tests.support.wait import wait_until_async


def _scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_early: bool) -> None:
    chain = open_chain(tmp_path / "node")
    judged: list[Proposal] = []
    fate_of = Engine._fate

    def counted(engine: Engine, proposal: Proposal) -> Fate:
        judged.append(proposal)
        return fate_of(engine, proposal)

    async def scenario() -> None:
        wal = ConsensusWal(tmp_path / "wal")
        # An observer: it signs nothing, so only the proposals move its engine.
        driver = Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip(), wal=wal)
        driver.start()
        try:
            await wait_until_async(lambda: driver._idle, what="the loop waiting on its inbox")
            engine = driver.engine
            assert engine.validators is not None
            height, chain_id = engine.height, chain.params.chain_id
            round_ = engine.round + 1  # within the window, whatever the timeouts did
            key = next(
                node_hot_key(i)
                for i in range(4)
                if node_hot_key(i).public_key == proposer(engine.validators, height, round_)
            )
            first, second = (
                Proposal.create(key, chain_id, height, round_, -1, sha256(block))
                for block in (b"first block", b"second block")
            )
            monkeypatch.setattr(Engine, "_fate", counted)
            at_once = driver.submit_proposal(ProposalReceived(first, b"first block"))
            # Queued behind the first, before the loop runs: judged once that is stepped.
            later = driver.submit_proposal(ProposalReceived(second, b"second block"))
            assert at_once is True, "the idle loop's next input: answered at once, kept"
            assert isinstance(later, asyncio.Future) and not later.done()
            if stop_early:
                await driver.stop()
                assert later.done() and later.result() is False, "a stopped loop answers no"
                assert driver._relay_asked == {}
                return
            relay = await asyncio.wait_for(later, 5.0)
            print(f"round={round_} at_once={at_once} later={relay} judged={len(judged)}")
            assert relay is False, "the equivocation's second block: dropped, not relayed"
            assert engine.proposal(round_, first.block_hash) is not None
            assert engine.proposal(round_, second.block_hash) is None
            assert judged == [first, second], "each judged once: relay, log and step"
            logged = [i.proposal for i in wal.replay(height) if isinstance(i, ProposalReceived)]
            assert logged == [first]
            assert driver._relay_asked == {}
        finally:
            await driver.stop()
            wal.close()

    try:
        asyncio.run(scenario())
    finally:
        chain.close()


def test_a_proposal_is_answered_at_once_in_an_idle_loop_and_when_stepped_behind_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scenario(tmp_path, monkeypatch, stop_early=False)


def test_a_stopped_loop_answers_the_open_relay_questions_no(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scenario(tmp_path, monkeypatch, stop_early=True)
