"""The engine driven by hand, one input at a time: each rule of Algorithm 1 in isolation."""

from __future__ import annotations

from consensus.engine import Engine
from consensus.events import (
    BlockValidated,
    Broadcast,
    BuildProposal,
    CommitBlock,
    Input,
    Lock,
    NewHeight,
    Output,
    ProposalReceived,
    ProposeBlock,
    ReportEvidence,
    Resume,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import Proposal, Step
from consensus.proposer import proposer
from consensus.timeouts import TimeoutParams
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)
HEIGHT = 1
BLOCK_A = b"block a"
BLOCK_B = b"block b"
HASH_A, HASH_B = sha256(BLOCK_A), sha256(BLOCK_B)


def signer_of(round_: int) -> SigningKey:
    key = proposer(VALIDATORS, HEIGHT, round_)
    return next(k for k in SIGNERS if k.public_key == key)


def not_proposer_of(*rounds: int) -> SigningKey:
    busy = {proposer(VALIDATORS, HEIGHT, r) for r in rounds}
    return next(k for k in SIGNERS if k.public_key not in busy)


def others(me: SigningKey) -> list[SigningKey]:
    return [k for k in SIGNERS if k.public_key != me.public_key]


def proposal(round_: int, block: bytes, pol_round: int = -1) -> ProposalReceived:
    signed = Proposal.create(signer_of(round_), CHAIN_ID, HEIGHT, round_, pol_round, sha256(block))
    return ProposalReceived(signed, block)


def vote(key: SigningKey, kind: VoteType, round_: int, value: bytes) -> VoteReceived:
    return VoteReceived(Vote.create(key, CHAIN_ID, kind, HEIGHT, round_, value))


def of_type(outputs: list[Output], kind: type) -> list[object]:
    return [o for o in outputs if isinstance(o, kind)]


def start(me: SigningKey, resume: Resume | None = None) -> tuple[Engine, list[Output]]:
    engine = Engine(CHAIN_ID, me.public_key)
    return engine, engine.step(NewHeight(HEIGHT, VALIDATORS, resume))


def feed_own(engine: Engine, me: SigningKey, outputs: list[Output]) -> list[Output]:
    """Sign what the engine asked for (no guard needed here) and feed it back."""
    more: list[Output] = []
    for request in of_type(outputs, SignVote):
        assert isinstance(request, SignVote)
        signed = Vote.create(
            me, CHAIN_ID, request.vote_type, request.height, request.round, request.block_hash
        )
        more += engine.step(VoteReceived(signed))
    return more


def test_a_round_from_proposal_to_commit() -> None:
    me = not_proposer_of(0)
    engine, out = start(me)
    assert of_type(out, ScheduleTimeout) == [ScheduleTimeout(HEIGHT, 0, Step.PROPOSE, 3_000)]
    out = engine.step(proposal(0, BLOCK_A))
    assert of_type(out, ValidateBlock) == [ValidateBlock(HEIGHT, HASH_A, BLOCK_A)]
    assert not of_type(out, SignVote)  # never prevote before the block is validated
    out = engine.step(BlockValidated(HASH_A, valid=True))
    assert of_type(out, SignVote) == [SignVote(VoteType.PREVOTE, HEIGHT, 0, HASH_A)]
    assert of_type(feed_own(engine, me, out), Broadcast)  # our signed vote goes out
    for key in others(me)[:2]:
        out = engine.step(vote(key, VoteType.PREVOTE, 0, HASH_A))
    # The valid value rides along: the guard records it with the signature.
    assert of_type(out, SignVote) == [
        SignVote(VoteType.PRECOMMIT, HEIGHT, 0, HASH_A, Lock(0, HASH_A))
    ]
    assert (engine.locked_round, engine.locked_value) == (0, HASH_A)
    feed_own(engine, me, out)
    for key in others(me)[:2]:
        out = engine.step(vote(key, VoteType.PRECOMMIT, 0, HASH_A))
    commits = of_type(out, CommitBlock)
    assert len(commits) == 1
    commit = commits[0]
    assert isinstance(commit, CommitBlock)
    assert (commit.height, commit.block_hash, commit.block_bytes) == (HEIGHT, HASH_A, BLOCK_A)
    commit.commit.verify(CHAIN_ID, VALIDATORS, HEIGHT, HASH_A)
    # Decided: nothing more happens at this height.
    assert engine.step(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT)) == []


def test_proposer_asks_for_a_block_then_for_a_signature() -> None:
    me = signer_of(0)
    engine, out = start(me)
    assert of_type(out, BuildProposal) == [BuildProposal(HEIGHT, 0)]
    out = engine.step(ProposeBlock(HEIGHT, 0, HASH_A, BLOCK_A))
    assert out == [SignProposal(HEIGHT, 0, -1, HASH_A, BLOCK_A)]
    # A block built for a round we already left is dropped.
    assert engine.step(ProposeBlock(HEIGHT, 0, HASH_B, BLOCK_B)) == []


def test_invalid_block_gets_a_nil_prevote() -> None:
    engine, _ = start(not_proposer_of(0))
    engine.step(proposal(0, BLOCK_A))
    out = engine.step(BlockValidated(HASH_A, valid=False))
    assert of_type(out, SignVote) == [SignVote(VoteType.PREVOTE, HEIGHT, 0, NIL)]


def test_propose_timeout_prevotes_nil_and_stale_timeouts_do_nothing() -> None:
    engine, _ = start(not_proposer_of(0))
    out = engine.step(TimeoutFired(HEIGHT, 0, Step.PROPOSE))
    assert of_type(out, SignVote) == [SignVote(VoteType.PREVOTE, HEIGHT, 0, NIL)]
    assert engine.step(TimeoutFired(HEIGHT, 0, Step.PROPOSE)) == []  # already prevoted
    assert engine.step(TimeoutFired(HEIGHT, 3, Step.PREVOTE)) == []  # not our round
    assert engine.step(TimeoutFired(HEIGHT + 1, 0, Step.PROPOSE)) == []


def test_timeouts_grow_linearly_with_the_round() -> None:
    params = TimeoutParams()
    assert [params.timeout_ms(Step.PROPOSE, r) for r in range(3)] == [3_000, 3_500, 4_000]
    assert params.timeout_ms(Step.PRECOMMIT, 4) == 1_000 + 4 * 500


def test_prevote_quorum_for_anything_starts_the_prevote_timeout_once() -> None:
    me = not_proposer_of(0)
    engine, _ = start(me)
    out = engine.step(TimeoutFired(HEIGHT, 0, Step.PROPOSE))
    feed_own(engine, me, out)
    a, b, _ = others(me)
    engine.step(vote(a, VoteType.PREVOTE, 0, HASH_A))
    out = engine.step(vote(b, VoteType.PREVOTE, 0, HASH_B))
    assert of_type(out, ScheduleTimeout) == [ScheduleTimeout(HEIGHT, 0, Step.PREVOTE, 1_000)]
    out = engine.step(TimeoutFired(HEIGHT, 0, Step.PREVOTE))
    assert of_type(out, SignVote) == [SignVote(VoteType.PRECOMMIT, HEIGHT, 0, NIL)]


def test_precommit_quorum_for_anything_then_timeout_starts_the_next_round() -> None:
    me = not_proposer_of(0, 1)
    engine, _ = start(me)
    a, b, c = others(me)
    engine.step(vote(a, VoteType.PRECOMMIT, 0, NIL))
    engine.step(vote(b, VoteType.PRECOMMIT, 0, HASH_A))
    out = engine.step(vote(c, VoteType.PRECOMMIT, 0, NIL))
    assert ScheduleTimeout(HEIGHT, 0, Step.PRECOMMIT, 1_000) in out
    out = engine.step(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    assert engine.round == 1
    assert ScheduleTimeout(HEIGHT, 1, Step.PROPOSE, 3_500) in out


def test_f_plus_one_votes_of_a_later_round_make_us_skip_to_it() -> None:
    me = not_proposer_of(0, 5)
    engine, _ = start(me)
    a, b, _ = others(me)
    engine.step(vote(a, VoteType.PREVOTE, 5, NIL))
    assert engine.round == 0  # one validator of four may be byzantine
    engine.step(vote(b, VoteType.PRECOMMIT, 5, NIL))
    assert engine.round == 5  # two of four is more than a third: an honest one is there


def lock_on_a_in_round_0(me: SigningKey) -> Engine:
    engine, _ = start(me)
    engine.step(proposal(0, BLOCK_A))
    out = engine.step(BlockValidated(HASH_A, valid=True))
    feed_own(engine, me, out)
    for key in others(me)[:2]:
        out = engine.step(vote(key, VoteType.PREVOTE, 0, HASH_A))
    feed_own(engine, me, out)
    assert (engine.locked_round, engine.locked_value) == (0, HASH_A)
    engine.step(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))  # precommits never came
    for key in others(me)[:3]:
        engine.step(vote(key, VoteType.PRECOMMIT, 0, NIL))
    engine.step(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    assert engine.round == 1
    return engine


def test_locked_validator_rejects_another_fresh_value() -> None:
    me = not_proposer_of(0, 1)
    engine = lock_on_a_in_round_0(me)
    engine.step(proposal(1, BLOCK_B))
    out = engine.step(BlockValidated(HASH_B, valid=True))
    assert of_type(out, SignVote) == [SignVote(VoteType.PREVOTE, HEIGHT, 1, NIL, Lock(0, HASH_A))]


def test_locked_validator_accepts_its_value_again() -> None:
    me = not_proposer_of(0, 1)
    engine = lock_on_a_in_round_0(me)
    out = engine.step(proposal(1, BLOCK_A, pol_round=0))
    assert of_type(out, SignVote) == [
        SignVote(VoteType.PREVOTE, HEIGHT, 1, HASH_A, Lock(0, HASH_A))
    ]


def test_proof_of_lock_from_a_later_round_unlocks() -> None:
    me = not_proposer_of(0, 1, 2)
    engine = lock_on_a_in_round_0(me)
    engine.step(TimeoutFired(HEIGHT, 1, Step.PROPOSE))
    # Round 1: the others saw 2f+1 prevotes for B (we did not take part).
    engine.step(proposal(1, BLOCK_B))
    for key in others(me):
        engine.step(vote(key, VoteType.PREVOTE, 1, HASH_B))
    for key in others(me):
        engine.step(vote(key, VoteType.PRECOMMIT, 1, NIL))
    engine.step(TimeoutFired(HEIGHT, 1, Step.PRECOMMIT))
    assert engine.round == 2
    out = engine.step(proposal(2, BLOCK_B, pol_round=1))
    out += engine.step(BlockValidated(HASH_B, valid=True))
    assert of_type(out, SignVote) == [
        SignVote(VoteType.PREVOTE, HEIGHT, 2, HASH_B, Lock(0, HASH_A))
    ]


def test_restored_lock_survives_a_restart() -> None:
    me = not_proposer_of(0, 1)
    lock = Lock(0, HASH_A)
    engine, out = start(me, Resume(0, Step.PRECOMMIT, lock, lock))
    assert (engine.round, engine.step_) == (0, Step.PRECOMMIT)  # where it last signed
    assert not of_type(out, SignVote)  # nothing it signed before is asked again
    engine.step(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    engine.step(proposal(1, BLOCK_B))
    out = engine.step(BlockValidated(HASH_B, valid=True))
    assert of_type(out, SignVote) == [SignVote(VoteType.PREVOTE, HEIGHT, 1, NIL, lock)]


def test_equivocation_is_reported_once() -> None:
    engine, _ = start(not_proposer_of(0))
    key = others(SIGNERS[0])[0]
    engine.step(vote(key, VoteType.PREVOTE, 0, HASH_A))
    out = engine.step(vote(key, VoteType.PREVOTE, 0, NIL))
    reports = of_type(out, ReportEvidence)
    assert len(reports) == 1
    report = reports[0]
    assert isinstance(report, ReportEvidence)
    report.evidence.verify(CHAIN_ID, VALIDATORS)
    assert not of_type(engine.step(vote(key, VoteType.PREVOTE, 0, NIL)), ReportEvidence)


def test_proposal_from_the_wrong_proposer_is_ignored() -> None:
    engine, _ = start(not_proposer_of(0))
    wrong = not_proposer_of(0)
    signed = Proposal.create(wrong, CHAIN_ID, HEIGHT, 0, -1, HASH_A)
    assert engine.step(ProposalReceived(signed, BLOCK_A)) == []


def test_next_height_messages_wait_for_new_height() -> None:
    me = not_proposer_of(0)
    engine, _ = start(me)
    next_vote = VoteReceived(
        Vote.create(others(me)[0], CHAIN_ID, VoteType.PREVOTE, HEIGHT + 1, 0, NIL)
    )
    assert engine.step(next_vote) == []
    engine.step(NewHeight(HEIGHT + 1, VALIDATORS))
    assert engine.votes.prevotes(0).power == 1


def test_step_is_deterministic() -> None:
    """Two engines given the same inputs through `Engine.step` (the path the driver and the
    simulator use) give the same outputs and reach the same state."""
    me = not_proposer_of(0)
    (one, started_one), (two, started_two) = start(me), start(me)
    assert started_one == started_two
    inputs: list[Input] = [proposal(0, BLOCK_A), BlockValidated(HASH_A, valid=True)]
    for inp in inputs:
        assert one.step(inp) == two.step(inp)
    assert one.proposal(0, HASH_A) is not None and two.proposal(0, HASH_A) is not None
    assert (one.height, one.round, one.step_) == (two.height, two.round, two.step_)


def test_resume_where_we_proposed_asks_for_nothing_signed_before() -> None:
    """Resumed in a round where we already proposed: no second proposal (the guard would
    refuse a new block), the propose timeout runs, and our proposal from the WAL is used."""
    me = signer_of(2)
    engine, out = start(me, Resume(2, Step.PROPOSE, None, None))
    assert (engine.round, engine.step_) == (2, Step.PROPOSE)
    assert not of_type(out, BuildProposal) and not of_type(out, SignProposal)
    assert of_type(out, ScheduleTimeout) == [ScheduleTimeout(HEIGHT, 2, Step.PROPOSE, 4_000)]
    out = engine.step(proposal(2, BLOCK_A))  # replayed from the WAL
    out += engine.step(BlockValidated(HASH_A, valid=True))
    assert of_type(out, SignVote) == [SignVote(VoteType.PREVOTE, HEIGHT, 2, HASH_A)]


def test_untimely_fresh_proposal_gets_nil_but_its_re_proposal_with_a_proof_of_lock_does_not() -> (
    None
):
    """Timeliness gates the prevote on a fresh proposal only (L22); a re-proposal of the
    same block with 2f+1 prevotes from its round (L28) is judged on validity alone."""
    me = not_proposer_of(0, 1)
    engine, _ = start(me)
    engine.step(proposal(0, BLOCK_A))
    out = engine.step(BlockValidated(HASH_A, valid=True, timely=False))
    assert of_type(out, SignVote) == [SignVote(VoteType.PREVOTE, HEIGHT, 0, NIL)]
    feed_own(engine, me, out)
    supporters = [k for k in others(me)][:3]
    for key in supporters:
        out = engine.step(vote(key, VoteType.PREVOTE, 0, HASH_A))
    # L36 needs validity only: the polka locks us on it even though our clock found it early.
    assert (engine.locked_round, engine.locked_value) == (0, HASH_A)
    engine.step(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    out = engine.step(proposal(1, BLOCK_A, pol_round=0))
    assert of_type(out, SignVote) == [
        SignVote(VoteType.PREVOTE, HEIGHT, 1, HASH_A, Lock(0, HASH_A))
    ]


def test_a_validators_vote_flood_is_admitted_a_bounded_number_of_times() -> None:
    """`admits`: first votes within the future-round quota, and one conflicting vote for
    an unknown block as evidence; the rest of a flood is refused, and one evidence is
    reported per offender and height however many conflicting pairs arrive."""
    engine, _ = start(not_proposer_of(0))
    byzantine = others(not_proposer_of(0))[0]
    ahead = [
        Vote.create(byzantine, CHAIN_ID, VoteType.PREVOTE, HEIGHT, 100 + i, NIL) for i in range(50)
    ]
    pending: list[Vote] = []
    for v in ahead:
        if engine.admits(v, pending):
            pending.append(v)  # what the driver queues before the engine steps them
    assert len(pending) == 3
    conflicting = [
        Vote.create(byzantine, CHAIN_ID, VoteType.PREVOTE, HEIGHT, 0, sha256(bytes([i])))
        for i in range(50)
    ]
    admitted = [v for v in conflicting if engine.admits(v)]
    assert len(admitted) == 50  # nothing held yet: each alone would be a first vote
    reports: list[object] = []
    kept = 0
    for v in conflicting:
        if engine.admits(v):
            kept += 1
            reports += of_type(engine.step(VoteReceived(v)), ReportEvidence)
    assert kept == 2 and len(reports) == 1
    # Stepped anyway (a host without the check), the flood still yields one report.
    for v in conflicting:
        reports += of_type(engine.step(VoteReceived(v)), ReportEvidence)
    assert len(reports) == 1
    # A conflicting vote for NIL still counts (it may complete an honest tally).
    nil_vote = Vote.create(byzantine, CHAIN_ID, VoteType.PREVOTE, HEIGHT, 0, NIL)
    assert engine.admits(nil_vote)


def test_next_height_votes_are_admitted_into_the_buffer_once_per_round_and_type() -> None:
    """Between a commit and the next height's start, the next height's votes still get
    in (an honest validator may be there already), but a flood of them does not.

    Changed by fix13v (review rev13b): a conflicting twin of a buffered vote was refused
    ("nothing uses it yet"), which lost the evidence of a split equivocation met during
    the commit wait; one twin per (round, type) is now kept for the replay to report, a
    third vote is still refused."""
    engine, _ = start(not_proposer_of(0))
    key = others(not_proposer_of(0))[0]

    def next_vote(round_: int, value: bytes) -> Vote:
        return Vote.create(key, CHAIN_ID, VoteType.PREVOTE, HEIGHT + 1, round_, value)

    first = next_vote(0, HASH_A)
    assert engine.admits(first)
    engine.step(VoteReceived(first))
    assert not engine.admits(first)  # a copy
    twin = next_vote(0, HASH_B)
    assert engine.admits(twin)  # a conflicting one: kept once, as evidence for the replay
    engine.step(VoteReceived(twin))
    assert not engine.admits(next_vote(0, NIL))  # a third: the two prove it already
    admitted = [v for v in (next_vote(r, NIL) for r in range(1, 50)) if engine.admits(v, [])]
    pending: list[Vote] = []
    for v in admitted:
        if engine.admits(v, pending):
            pending.append(v)
    assert len(pending) == 3  # round 0 and three more rounds
