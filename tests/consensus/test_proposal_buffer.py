"""Next-height proposals: junk cannot crowd out the real proposer (issue 25 #4), and a
message the engine refuses for now can reach it again through the network's
duplicate suppression."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from consensus.engine import MAX_BUFFERED_PROPOSALS, Engine
from consensus.events import (
    NewHeight,
    Output,
    ProposalReceived,
    Refused,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import encode_proposal
from p2p.messages import Kind
from tests.consensus.helpers import CHAIN_ID, keys, validator_set
from tests.p2p.harness import RecordingHost, cluster, run
from tests.support.wait import wait_until_async

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)
NEXT = 2  # the height whose proposals arrive early; the engine is at height 1


def next_proposal(key: SigningKey, round_: int, label: bytes) -> ProposalReceived:
    block = b"block " + label
    signed = Proposal.create(key, CHAIN_ID, NEXT, round_, -1, sha256(block))
    return ProposalReceived(signed, block)


def real_proposal(round_: int = 0) -> ProposalReceived:
    found = proposer(VALIDATORS, NEXT, round_)
    key = next(k for k in SIGNERS if k.public_key == found)
    return next_proposal(key, round_, b"real %d" % round_)


def junk(count: int, *, same_round: bool = True) -> list[ProposalReceived]:
    """Proposals signed by throwaway keys (valid signatures, no stake), of round 0, or of
    rounds 0, 1, 2..."""
    throwaway = keys(count, b"throwaway")
    return [
        next_proposal(k, 0 if same_round else i, b"junk %d" % i) for i, k in enumerate(throwaway)
    ]


def observer_at_height_1(*, next_set_known: bool) -> Engine:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(1, VALIDATORS, None, VALIDATORS if next_set_known else None))
    return engine


def contains(got: Callable[[Kind], list[bytes]], payload: bytes) -> bool:
    return payload in got(Kind.VOTE)


def refused(outputs: list[Output]) -> list[object]:
    return [o.message for o in outputs if isinstance(o, Refused)]


def asks_to_validate(outputs: list[Output], inp: ProposalReceived) -> bool:
    return any(
        isinstance(o, ValidateBlock) and o.block_hash == inp.proposal.block_hash for o in outputs
    )


def test_junk_next_height_proposals_do_not_evict_the_proposer() -> None:
    """Before: four junk proposals filled the 4-slot buffer, the real round-0 proposal was
    dropped, and the next height needed a second round."""
    engine = observer_at_height_1(next_set_known=True)
    for inp in junk(MAX_BUFFERED_PROPOSALS):
        assert engine.step(inp) == []  # not the next proposer: junk, dropped
    real = real_proposal()
    assert engine.step(real) == []  # kept
    out = engine.step(NewHeight(NEXT, VALIDATORS, None, VALIDATORS))
    assert asks_to_validate(out, real)
    assert engine.proposal(0, real.proposal.block_hash) is not None


def test_junk_is_rechecked_and_a_refused_proposal_can_come_back() -> None:
    """With the next set unknown (an epoch's first block), junk can fill the buffer, but
    the current set's proposer of the round outranks it (rev23a 8: before, the real
    proposal was refused until a re-send): a junk proposal is evicted, refused, not lost
    (the host lets it arrive again), and after NewHeight the junk is dropped by the
    proposer check."""
    engine = observer_at_height_1(next_set_known=False)
    flood = junk(MAX_BUFFERED_PROPOSALS)
    for inp in flood:
        assert engine.step(inp) == []  # unknown set: kept, one per round and signer
    assert engine.step(flood[0]) == []  # already held: one per (round, signer)
    real = real_proposal()
    evicted = refused(engine.step(real))
    assert len(evicted) == 1 and evicted[0] in [inp.proposal for inp in flood]
    assert real.proposal in engine.buffered()[0]
    out = engine.step(NewHeight(NEXT, VALIDATORS))
    assert asks_to_validate(out, real)
    for inp in flood:
        assert engine.proposal(inp.proposal.round, inp.proposal.block_hash) is None
    back = next(inp for inp in flood if inp.proposal == evicted[0])
    assert engine.step(back) == []  # let in again, and dropped: not round 0's proposer
    assert engine.proposal(0, real.proposal.block_hash) is not None


def test_a_lower_round_makes_room_in_a_full_buffer() -> None:
    engine = observer_at_height_1(next_set_known=False)
    flood = junk(MAX_BUFFERED_PROPOSALS, same_round=False)  # rounds 0..3
    for inp in flood:
        engine.step(inp)
    real = real_proposal()
    assert refused(engine.step(real)) == [flood[-1].proposal]  # round 3 makes room, refused
    out = engine.step(NewHeight(NEXT, VALIDATORS))
    assert asks_to_validate(out, real)


def test_a_proposer_cannot_fill_the_buffer_with_its_later_rounds() -> None:
    """A byzantine next proposer of later rounds cannot push out round 0's proposal."""
    engine = observer_at_height_1(next_set_known=True)
    later = [real_proposal(r) for r in range(1, 12)]
    for inp in later:
        engine.step(inp)
    real = real_proposal(0)
    out = engine.step(real)
    assert refused(out) and real.proposal not in refused(out)
    out = engine.step(NewHeight(NEXT, VALIDATORS, None, VALIDATORS))
    assert asks_to_validate(out, real)


@pytest.mark.parametrize("ahead", ["height", "round"])
def test_far_ahead_messages_are_refused_not_dropped(ahead: str) -> None:
    engine = observer_at_height_1(next_set_known=True)
    key = SIGNERS[0]
    height, round_ = (3, 0) if ahead == "height" else (1, 7)
    if ahead == "round":  # the validator's quota of future rounds is full
        for early in range(4, 7):
            engine.step(VoteReceived(Vote.create(key, CHAIN_ID, VoteType.PREVOTE, 1, early, NIL)))
    vote = Vote.create(key, CHAIN_ID, VoteType.PREVOTE, height, round_, NIL)
    assert refused(engine.step(VoteReceived(vote))) == [vote]
    found = proposer(VALIDATORS, height, round_)
    signer = next(k for k in SIGNERS if k.public_key == found)
    signed = Proposal.create(signer, CHAIN_ID, height, round_, -1, sha256(b"ahead"))
    assert refused(engine.step(ProposalReceived(signed, b"ahead"))) == [signed]


def test_refused_message_can_arrive_again() -> None:
    """The node forgets the network's "seen" mark of what the engine refused, and the
    payload it forgets is byte for byte the one that arrived (canonical encodings)."""
    vote = Vote.create(SIGNERS[0], CHAIN_ID, VoteType.PREVOTE, 3, 0, NIL)
    vote_payload = pack(vote.to_fields())
    real = real_proposal()
    proposal_payload = encode_proposal(real.proposal, real.block_bytes)
    fields, block_bytes = unpack(proposal_payload)  # canonical: one encoding per message
    assert encode_proposal(Proposal.from_fields(fields), block_bytes) == proposal_payload
    assert pack(Vote.from_fields(vote.to_fields()).to_fields()) == vote_payload

    class RefusingHost(RecordingHost):
        """Refuses every vote the first time, as the engine does one too far ahead."""

        async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
            first = (peer_id, kind, payload) not in self.gossip
            await super().on_gossip(peer_id, kind, payload)
            if first and kind is Kind.VOTE and payload == vote_payload:
                assert self.network is not None
                self.network.forget(kind, payload)
            return False

    async def scenario() -> None:
        async with cluster() as nodes:
            sender = await nodes.add()
            receiver = await nodes.add(host=RefusingHost())
            await sender.network.connect(receiver.address)
            await wait_until_async(lambda: sender.id in receiver.peer_ids(), what="link")
            got = receiver.host.payloads
            for payload in (vote_payload, b"not refused"):
                sender.network.broadcast(Kind.VOTE, payload)
                await wait_until_async(partial(contains, got, payload), what="first delivery")
                sender.network.broadcast(Kind.VOTE, payload)  # re-gossiped later
            # Frames of one link arrive in order: once the marker is in, so are the copies.
            sender.network.broadcast(Kind.VOTE, b"marker")
            await wait_until_async(lambda: b"marker" in got(Kind.VOTE), what="marker")
            assert got(Kind.VOTE).count(vote_payload) == 2  # refused: delivered again
            assert got(Kind.VOTE).count(b"not refused") == 1  # seen: suppressed

    run(scenario)
