"""The Tendermint state machine (Buchman, Kwon, Milosevic 2018, Algorithm 1), without I/O.

Rules this module keeps, whatever order inputs arrive in:
- it asks to sign at most one prevote and one precommit per (height, round), in step order;
- it prevotes a value only if it is valid and either not locked, locked on it, or shown a
  proof of lock (2f+1 prevotes) from a round at or after its lock; a fresh proposal
  (pol_round -1) must also be timely to the host's clock, a re-proposal need not be;
- it locks on, and precommits, only a valid value with 2f+1 prevotes in the current round;
- it commits only a valid value with 2f+1 precommits in one round;
- every input is checked against the current (height, round, step) first; stale ones
  change nothing;
- its lock and its valid value never move to an earlier round, and after a restart it
  resumes in the round of its last signature, never an earlier one;
- a message it cannot keep now but may need later (too far ahead, a full buffer) comes
  out as `Refused`, so that the host lets it arrive again.

"2f+1" means more than 2/3 of the voting power, "f+1" more than 1/3. Line numbers in
comments (L22 ...) refer to Algorithm 1 of the paper. The host drives the engine with
`Engine.step(input) -> outputs`; see docs/consensus.md for the contract.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Final

from consensus.events import (
    BlockValidated,
    Broadcast,
    BuildProposal,
    CommitBlock,
    Input,
    Lock,
    NewHeight,
    NextSetKnown,
    Output,
    ProposalReceived,
    ProposeBlock,
    Refused,
    Replayed,
    ReportEvidence,
    Resume,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    StrangersDropped,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import Proposal, Step
from consensus.proposer import proposer
from consensus.timeouts import TimeoutParams
from consensus.voteset import MAX_FUTURE_ROUNDS_PER_VALIDATOR, AddResult, HeightVoteSet
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import NIL, Commit, Vote, VoteType

# Messages of the next height can arrive before our host has executed this height's
# block; they are kept and replayed on `NewHeight`. Votes are checked then (the next set
# may differ), and kept meanwhile within `admits`' quota (a few rounds a validator, and
# only the next set's validators when the host knows that set); proposals are kept only
# from the next height's proposers when the host knows that set, else one per (round,
# signer), lowest rounds first. What the replay keeps comes out as `Replayed`, for the
# host's WAL. Where the next set is not known (an epoch's first height) the current set,
# which makes most of the next, comes first: keys outside it (throw-away keys, or a
# validator joining at the epoch) share a quarter of the vote buffer, and a proposal
# ranks after the current set's choice of proposer for its round (review rev23a 7-8);
# the host shares the strangers' places out by source (taking some back for a source under
# its part: `StrangersDropped`, rev24p C), and once it commits it tells
# the next set (`NextSetKnown`), which screens the buffer (p2p24 1).
MAX_BUFFERED_VOTES: Final = 4_000  # a few rounds of the largest validator set
MAX_BUFFERED_STRANGER_VOTES: Final = MAX_BUFFERED_VOTES // 4
MAX_BUFFERED_PROPOSALS: Final = 4  # each carries a block of up to 4 MiB


class Fate(Enum):
    """What `Engine.on_proposal` would do with a proposal of its height."""

    KEEP = "keep"  # stored (its signature still checked)
    REFUSE = "refuse"  # a round too far ahead for now: `Refused`, it may come again
    DROP = "drop"  # never stored: another signer, a copy, an equivocation, decided


class Engine:
    """One validator's (or observer's) consensus state, advanced only by `step`."""

    __slots__ = (
        "_block_hashes",
        "_buffered_proposals",
        "_buffered_strangers",
        "_buffered_votes",
        "_evidence_seen",
        "_fired",
        "_first_proposal",
        "_judged",
        "_next_validators",
        "_out",
        "_proposals",
        "_proposers",
        "_requested",
        "building",
        "chain_id",
        "decided",
        "height",
        "locked_round",
        "locked_value",
        "own_pubkey",
        "round",
        "started",
        "step_",
        "timely",
        "timeouts",
        "valid_round",
        "valid_value",
        "validators",
        "validity",
        "votes",
    )

    def __init__(
        self, chain_id: str, own_pubkey: bytes | None, timeouts: TimeoutParams | None = None
    ) -> None:
        self.chain_id = chain_id
        self.own_pubkey = own_pubkey  # None: follow consensus without voting
        self.timeouts = timeouts or TimeoutParams()
        self.height = 0
        self.validators: ValidatorSet | None = None
        self._next_validators: ValidatorSet | None = None
        self._buffered_votes: list[VoteReceived] = []
        self._buffered_strangers = 0  # of them, by keys outside the current set
        # (round, proposer) -> proposal of the next height
        self._buffered_proposals: dict[tuple[int, bytes], ProposalReceived] = {}
        self._out: list[Output] = []
        # `proposal_fate`'s last answer, taken by the next `step` if it is of that very
        # proposal (the host asks before it logs, then steps it): only `step` changes what
        # a fate depends on, so a proposal is not judged twice.
        self._judged: tuple[Proposal, Fate] | None = None
        self._reset_height()

    def _reset_height(self) -> None:
        self.round = 0
        self.step_ = Step.PROPOSE
        self.started = False  # round 0 not entered yet
        self.decided: bytes | None = None
        self.building = False  # BuildProposal sent for the current round, no answer yet
        self.locked_round = -1
        self.locked_value: bytes | None = None
        self.valid_round = -1
        self.valid_value: bytes | None = None
        self._proposals: dict[int, dict[bytes, tuple[Proposal, bytes]]] = {}
        self._first_proposal: dict[int, bytes] = {}
        self._block_hashes: dict[bytes, None] = {}  # of every stored proposal
        # The host's verdicts per block: `validity` is deterministic (the same on every
        # honest host), `timely` is this host's clock at the proposal and only gates the
        # prevote for a fresh proposal; keeping them apart is what lets a later round
        # re-propose a locked block to a voter whose clock once found it early.
        self.validity: dict[bytes, bool] = {}
        self.timely: dict[bytes, bool] = {}
        self._requested: dict[bytes, None] = {}
        self._fired: set[tuple[int, int]] = set()  # (rule line, round): "for the first time"
        self._evidence_seen: set[bytes] = set()  # offenders reported at this height
        self._proposers: dict[int, bytes] = {}
        if self.validators is not None:
            self.votes = HeightVoteSet(self.chain_id, self.height, self.validators)

    # --- driving ------------------------------------------------------------------------

    def step(self, inp: Input) -> list[Output]:
        """Apply one input; return what the host must do, in order."""
        judged, self._judged = self._judged, None
        if isinstance(inp, VoteReceived):
            self.on_vote(inp.vote)
        elif isinstance(inp, ProposalReceived):
            fate = judged[1] if judged is not None and judged[0] is inp.proposal else None
            self.on_proposal(inp, fate)
        elif isinstance(inp, TimeoutFired):
            self.on_timeout(inp)
        elif isinstance(inp, BlockValidated):
            self.on_block_validated(inp)
        elif isinstance(inp, ProposeBlock):
            self.on_propose_block(inp)
        elif isinstance(inp, NextSetKnown):
            self.on_next_set_known(inp)
        elif isinstance(inp, StrangersDropped):
            self.on_strangers_dropped(inp)
        else:
            self.on_new_height(inp)
        out, self._out = self._out, []
        return out

    # --- queries ------------------------------------------------------------------------

    def proposer_of(self, round_: int) -> bytes:
        """The proposer of `round_` at the current height."""
        found = self._proposers.get(round_)
        if found is None:
            assert self.validators is not None
            found = proposer(self.validators, self.height, round_)
            self._proposers[round_] = found
        return found

    @property
    def is_validator(self) -> bool:
        return (
            self.own_pubkey is not None
            and self.validators is not None
            and self.validators.power_of(self.own_pubkey) > 0
        )

    def admits(self, vote: Vote, pending: Iterable[Vote] = ()) -> bool:
        """Whether this engine would keep `vote` (a vote of its current height whose
        signature the caller checked): what a host may relay and log. Read-only.

        False for another height, after the decision, and for what the vote set refuses
        or ignores (`HeightVoteSet.admits`): copies, rounds beyond a validator's quota,
        more conflicting votes for blocks nobody proposed. A vote of the next height (the
        host committed, the next height has not started) is kept in the buffer, one per
        (round, type) of a validator in a few rounds, and one conflicting twin of it (the
        replay reports the pair as evidence). `pending` are votes the host
        admitted and queued but has not stepped yet; they count as if added first.
        """
        if self.validators is None:
            return False
        if vote.height == self.height + 1:
            return self._admits_next(vote, pending)
        if vote.height != self.height or self.decided is not None:
            return False
        return self.votes.admits(vote, self.round, self._block_hashes, pending)

    def _admits_next(self, vote: Vote, pending: Iterable[Vote]) -> bool:
        if len(self._buffered_votes) >= MAX_BUFFERED_VOTES:
            return False  # `Refused` if it came
        nxt = self._next_validators
        if nxt is not None and nxt.power_of(vote.validator) == 0:
            return False  # never counted at the next height: it must not take a place
        if self._buffered_strangers >= MAX_BUFFERED_STRANGER_VOTES and self.buffers_as_stranger(
            vote
        ):
            return False  # the rest of the buffer is kept for the current set's
        held = [b.vote for b in self._buffered_votes if b.vote.validator == vote.validator]
        held += [p for p in pending if p.validator == vote.validator and p.height == vote.height]
        same = [h for h in held if (h.round, h.type) == (vote.round, vote.type)]
        if any(h.block_hash == vote.block_hash for h in same) or len(same) >= 2:
            return False  # a copy, or a third vote: two already prove the equivocation
        # One conflicting twin is kept: the replay reports the evidence. Gossip may deliver
        # it only now (a node in its commit wait is sent the whole next height), and once
        # the height starts peers judge by vote bit, which cannot tell twins apart.
        rounds = {h.round for h in held}
        return vote.round in rounds or len(rounds) <= MAX_FUTURE_ROUNDS_PER_VALIDATOR

    def admits_proposal(self, proposal: Proposal) -> bool:
        """Whether this engine could store `proposal`, one of its current height (its
        signature is the caller's to check): what a host may log. Read-only.

        False for another height, after the decision, and for a proposal not signed by
        its round's proposer (or with a proof-of-lock round not before its round), which
        `on_proposal` drops whatever else it holds: a non-proposer's proposals of the
        height, each with its block, must not fill the host's WAL (review red23a 2).
        """
        if proposal.height != self.height or self.validators is None or self.decided is not None:
            return False
        if proposal.pol_round >= proposal.round:
            return False
        # Not `proposer_of`: its cache must not grow with the rounds anyone names.
        return proposal.proposer == proposer(self.validators, self.height, proposal.round)

    def proposal_fate(self, proposal: Proposal) -> Fate:
        """What `on_proposal` would do with `proposal`, one of its current height, short
        of its signature (the caller's to check): only a KEEP is worth a host's WAL record
        or a relay. A validator's proposals of rounds far ahead, or its second block of its
        own round, each with a block, must not grow the WAL within a height (review
        rev23a 1). Read-only but for a note of the answer, which the next `step` takes if
        it is of this very proposal. The signer is judged by `admits_proposal`, not
        through `proposer_of`, whose cache must not grow with the rounds anyone names.
        """
        fate = self._fate(proposal)
        self._judged = (proposal, fate)
        return fate

    def _fate(self, proposal: Proposal) -> Fate:
        p = proposal
        if not self.admits_proposal(p):
            return Fate.DROP
        if p.round > self.round + 1 and not self.votes.has_round(p.round):
            # Far ahead, unsupported by any vote: junk, or real and early (it may come
            # again once we get there). The next round's is kept: its proposer may be
            # ahead of us by one timeout, and a lost proposal costs that round.
            return Fate.REFUSE
        stored = self._proposals.get(p.round, {})
        if p.block_hash in stored:
            return Fate.DROP  # a copy
        if stored and not self._votes_point_at(p.round, p.block_hash):
            # The proposer equivocated. Keep its first proposal only, unless an honest
            # validator's vote shows that others got this one: then we need its block.
            return Fate.DROP
        return Fate.KEEP

    def keeps_next(self, proposal: Proposal) -> bool:
        """Whether `proposal`, one of the next height (its signature the caller's to
        check), would be kept: buffered by `_buffer_proposal` (the first of its round and
        signer, the next set's proposer if known, room or a better rank) and not refused
        as far ahead once the height starts (its round after the replay's skips, or the
        next, or a round a buffered vote it will take names: `_next_start`). What a host
        in its commit wait may relay: a validator's far rounds of the next height, or its
        next blocks of its round, must not be flooded through every node (review rev24w 1,
        3), and an honest one the next height keeps must be (rev24w3 1). Read-only.
        """
        p = proposal
        if p.height != self.height + 1 or self.validators is None or p.pol_round >= p.round:
            return False
        key = (p.round, p.proposer)
        if key in self._buffered_proposals:
            return False  # one per round and signer: the rest are ignored
        nxt = self._next_validators
        if nxt is not None and p.proposer != proposer(nxt, self.height + 1, p.round):
            return False
        if p.round > 1:
            start, voted = self._next_start()
            if p.round > start + 1 and p.round not in voted:
                return False  # refused when the height starts
        if len(self._buffered_proposals) >= MAX_BUFFERED_PROPOSALS:
            last = max(self._buffered_proposals, key=self._buffered_rank)
            return self._buffered_rank(last) > self._buffered_rank(key)
        return True

    def _next_start(self) -> tuple[int, set[int]]:
        """The round the next height will be in once its start replays the buffer, and the
        rounds of the buffered votes its vote set will take, as `on_new_height` replays
        them: each validator's rounds past the start's round 0 within the vote set's
        quota (MAX_FUTURE_ROUNDS_PER_VALIDATOR; review rev24w3 2), and a skip to the
        latest round whose taken votes carry more than a third of the next set's power
        (`try_skip_to`; rev24w3 1). A lower bound of the round where the next set is not
        known yet (no skip counted), as a skip makes rounds not future any more."""
        ahead: dict[bytes, list[int]] = {}
        voters: dict[int, set[bytes]] = {}
        for b in self._buffered_votes:
            vote = b.vote
            if vote.round > 0:
                rounds = ahead.setdefault(vote.validator, [])
                if vote.round not in rounds:
                    if len(rounds) >= MAX_FUTURE_ROUNDS_PER_VALIDATOR:
                        continue
                    rounds.append(vote.round)
            voters.setdefault(vote.round, set()).add(vote.validator)
        start = 0
        nxt = self._next_validators
        if nxt is not None:
            for round_, who in voters.items():
                if round_ > start and nxt.exceeds_one_third(sum(nxt.power_of(v) for v in who)):
                    start = round_
        return start, set(voters)

    def holds(self, message: Vote | Proposal) -> bool:
        """Whether this engine already holds this vote or proposal (a cheap duplicate test
        a host makes before it checks a signature again)."""
        if message.height != self.height or self.validators is None:
            return False
        if isinstance(message, Vote):
            return self.votes.holds(message)
        return self.proposal(message.round, message.block_hash) is not None

    def proposal(self, round_: int, block_hash: bytes) -> tuple[Proposal, bytes] | None:
        """The stored proposal of `round_` for `block_hash`, with its block bytes."""
        return self._proposals.get(round_, {}).get(block_hash)

    def buffered(self) -> tuple[list[Proposal], list[Vote]]:
        """The next height's proposals and votes held for replay (read-only): what a host
        in its commit wait holds of that height, for its ROUND_STATE."""
        proposals = [b.proposal for b in self._buffered_proposals.values()]
        return proposals, [b.vote for b in self._buffered_votes]

    def buffers_as_stranger(self, vote: Vote) -> bool:
        """Whether `vote` is one of the next height, whose set is unknown, by a key outside
        the current set (the next set's best guess): such votes share a quarter of the
        buffer (MAX_BUFFERED_STRANGER_VOTES), which a host shares out by source."""
        return (
            vote.height == self.height + 1
            and self._next_validators is None
            and self.validators is not None
            and self.validators.power_of(vote.validator) == 0
        )

    @property
    def next_validators(self) -> ValidatorSet | None:
        """The next height's validator set, if the host knew it at `NewHeight`."""
        return self._next_validators

    # --- input handlers -----------------------------------------------------------------

    def on_new_height(self, inp: NewHeight) -> None:
        """Start a height (or resume it after a restart), then replay early messages."""
        if self.validators is not None and inp.height <= self.height:
            return  # stale: heights only move forward
        self.height = inp.height
        self.validators = inp.validators
        self._next_validators = inp.next_validators
        self._reset_height()
        votes, self._buffered_votes = self._buffered_votes, []
        self._buffered_strangers = 0
        proposals, self._buffered_proposals = list(self._buffered_proposals.values()), {}
        if inp.resume is None:
            self.enter_new_round(0)
        else:
            self.resume(inp.resume)
        for vote in votes:
            self.on_vote(vote.vote)
        for proposal in proposals:
            self.on_proposal(proposal)  # checked again, now against this height's set
        # What the replay kept, the host must log before it performs anything the replay
        # led to (a signature above all): first among the outputs, in replay order.
        kept: list[Output] = [Replayed(v) for v in votes if self.votes.holds(v.vote)]
        kept += [
            Replayed(p)
            for p in proposals
            if self.proposal(p.proposal.round, p.proposal.block_hash) is not None
        ]
        self._out[:0] = kept

    def on_next_set_known(self, inp: NextSetKnown) -> None:
        """Screen what was buffered of the next height by its set, now known: votes of keys
        outside it and proposals not by its proposer of their round would only be dropped
        at the replay, holding places the commit wait's honest messages need meanwhile
        (their own refused copies come again). From now on the buffer takes that set's
        validators only, as if the set had been known at `NewHeight`."""
        nxt = inp.validators
        if inp.height != self.height + 1 or self._next_validators is not None:
            return  # stale, or known already
        self._next_validators = nxt
        self._buffered_votes = [
            b for b in self._buffered_votes if nxt.power_of(b.vote.validator) > 0
        ]
        self._buffered_strangers = 0  # counted only while the set is unknown
        self._buffered_proposals = {
            key: b
            for key, b in self._buffered_proposals.items()
            if b.proposal.proposer == proposer(nxt, inp.height, b.proposal.round)
        }

    def on_strangers_dropped(self, inp: StrangersDropped) -> None:
        """Let go of the buffered votes the host names that hold places of the strangers'
        share (and only those: the rest of the buffer is not the host's to share out),
        `Refused` so that they can come again."""
        if inp.height != self.height + 1 or self._next_validators is not None:
            return  # stale, or the set is known: no strangers' share any more
        dropped = {v for v in inp.votes if self.buffers_as_stranger(v)}
        if not dropped:
            return
        kept: list[VoteReceived] = []
        for b in self._buffered_votes:
            if b.vote in dropped:
                self._buffered_strangers -= 1
                self._out.append(Refused(b.vote))
            else:
                kept.append(b)
        self._buffered_votes = kept

    def on_proposal(self, inp: ProposalReceived, fate: Fate | None = None) -> None:
        """Store a proposal from the round's proposer, then see what it enables.
        `fate`: `proposal_fate`'s answer for it in this very state (`step`), if asked."""
        p = inp.proposal
        if p.height == self.height + 1:
            self._buffer_proposal(inp)
            return
        if p.height > self.height + 1:
            self._out.append(Refused(p, inp.block_bytes))  # we are behind; needed later
            return
        if fate is None:
            fate = self._fate(p)
        if fate is Fate.REFUSE:
            # Refused, not dropped: if it is real, it must be able to come again once we
            # get there.
            self._out.append(Refused(p, inp.block_bytes))
            return
        if fate is Fate.DROP:
            return
        if not p.verify(self.chain_id):
            return
        self._proposals.setdefault(p.round, {})[p.block_hash] = (p, inp.block_bytes)
        self._block_hashes[p.block_hash] = None
        self._first_proposal.setdefault(p.round, p.block_hash)
        if p.proposer == self.own_pubkey:
            self._out.append(Broadcast(p, inp.block_bytes))
        self._progress()
        self.try_decide(p.round)

    def on_vote(self, vote: Vote) -> None:
        """Count a vote, report equivocation, then see what it enables."""
        if vote.height == self.height + 1:
            self._buffer_vote(vote)
            return
        if vote.height > self.height + 1:
            self._out.append(Refused(vote))  # we are behind; needed later
            return
        if vote.height != self.height or self.validators is None or self.decided is not None:
            return  # stale or decided
        outcome = self.votes.add(vote, self.round, self._block_hashes)
        if outcome.result is AddResult.TOO_FAR_AHEAD:
            self._out.append(Refused(vote))  # the quota of future rounds is full for now
            return
        if outcome.evidence is not None and vote.validator not in self._evidence_seen:
            # One report per offender and height: one piece of evidence jails it, and the
            # next block's mempool holds one per offender anyway; every further pair would
            # be one more fee-free tx for nothing.
            self._evidence_seen.add(vote.validator)
            self._out.append(ReportEvidence(outcome.evidence))
        if not outcome.counted:
            return
        if vote.validator == self.own_pubkey and outcome.result is AddResult.ADDED:
            self._out.append(Broadcast(vote))
        if vote.round > self.round:
            self.try_skip_to(vote.round)
        self._progress()
        if vote.type is VoteType.PRECOMMIT:
            self.try_decide(vote.round)

    def on_timeout(self, inp: TimeoutFired) -> None:
        """OnTimeoutPropose / OnTimeoutPrevote / OnTimeoutPrecommit."""
        if inp.height != self.height or inp.round != self.round or self.decided is not None:
            return  # stale: we have moved on
        if inp.step is Step.PROPOSE:
            if self.step_ is not Step.PROPOSE:
                return  # already prevoted
            self.enter_prevote(NIL)
        elif inp.step is Step.PREVOTE:
            if self.step_ is not Step.PREVOTE:
                return  # already precommitted
            self.enter_precommit(NIL)
        else:
            self.enter_new_round(self.round + 1)
            return
        self._progress()

    def on_block_validated(self, inp: BlockValidated) -> None:
        """Record the host's verdict on a block, then retry the rules that waited for it."""
        if inp.block_hash not in self._requested or inp.block_hash in self.validity:
            return  # unsolicited or repeated answer
        self.validity[inp.block_hash] = inp.valid
        self.timely[inp.block_hash] = inp.timely
        self._progress()
        for round_, stored in list(self._proposals.items()):
            if inp.block_hash in stored:
                self.try_decide(round_)

    def on_propose_block(self, inp: ProposeBlock) -> None:
        """Our host built the block we asked for: sign it as this round's proposal."""
        if (inp.height, inp.round) != (self.height, self.round) or not self.building:
            return  # stale: the round moved on while the host was building
        if self.step_ is not Step.PROPOSE or self.decided is not None:
            return  # the propose timeout already fired
        self.building = False
        self.validity[inp.block_hash] = True  # our own host built it on our chain
        self.timely[inp.block_hash] = True  # ... with its own clock
        self._requested[inp.block_hash] = None
        self._out.append(
            SignProposal(
                self.height, self.round, -1, inp.block_hash, inp.block_bytes, self._valid()
            )
        )

    # --- transitions (Algorithm 1) ------------------------------------------------------

    def resume(self, resume: Resume) -> None:
        """After a restart: re-enter the round and step of our last signature at this height.

        Never an earlier round. In one, a late proof of lock for another value would reach
        `try_lock` and move our lock back, and a later proposal citing that proof would
        get our prevote: the restarted validator would help commit a second block. The
        lock and valid value are the signer's; the WAL replay then only adds messages.
        """
        if resume.lock is not None:
            self._set_lock(resume.lock.round, resume.lock.block_hash)
            self._set_valid(resume.lock.round, resume.lock.block_hash)
        if resume.valid is not None:
            self._set_valid(resume.valid.round, resume.valid.block_hash)
        self.started = True
        self.round = resume.round
        self.step_ = resume.step
        # We signed in this round already: never propose in it again (the guard would
        # refuse a new block); our proposal comes back from the WAL or from peers. In
        # later steps the timeouts start as usual, once 2f+1 of the power has spoken.
        if resume.step is Step.PROPOSE:
            self._schedule(Step.PROPOSE)
        self._progress()

    def enter_new_round(self, round_: int) -> None:
        """StartRound: propose if it is our turn, and wait at most timeoutPropose."""
        if self.decided is not None or (self.started and round_ <= self.round):
            return  # stale: rounds only move forward
        self.started = True
        self.round = round_
        self.step_ = Step.PROPOSE
        self.building = False
        # Also scheduled when we propose: the host may fail to build, or refuse to sign.
        self._schedule(Step.PROPOSE)
        if self.is_validator and self.proposer_of(round_) == self.own_pubkey:
            self._propose()
        self._progress()  # this round's messages may be here already

    def _propose(self) -> None:
        # Re-propose the value we saw 2f+1 prevote, so locked validators can accept it.
        if self.valid_value is not None:
            for stored in self._proposals.values():
                if self.valid_value in stored:
                    block_bytes = stored[self.valid_value][1]
                    self._out.append(
                        SignProposal(
                            self.height,
                            self.round,
                            self.valid_round,
                            self.valid_value,
                            block_bytes,
                            self._valid(),
                        )
                    )
                    return
        # No valid value, or its block is unknown (after a restart): build a fresh one.
        self.building = True
        self._out.append(BuildProposal(self.height, self.round))

    def enter_prevote(self, block_hash: bytes) -> None:
        """Prevote `block_hash` (or NIL) in the current round and move to the prevote step."""
        if self.step_ is not Step.PROPOSE:
            return  # stale: one prevote per round
        self.step_ = Step.PREVOTE
        self._sign(VoteType.PREVOTE, block_hash)

    def enter_precommit(self, block_hash: bytes) -> None:
        """Precommit `block_hash` (or NIL) in the current round and move to the precommit step."""
        if self.step_ is not Step.PREVOTE:
            return  # stale: one precommit per round, after our prevote
        self.step_ = Step.PRECOMMIT
        self._sign(VoteType.PRECOMMIT, block_hash)

    def _progress(self) -> None:
        """Apply every rule of the current round that the known messages now satisfy."""
        if not self.started or self.decided is not None:
            return
        self.try_prevote_proposal()
        self.try_lock()
        self.try_precommit_nil()
        self.try_schedule_prevote_timeout()
        self.try_schedule_precommit_timeout()

    def try_prevote_proposal(self) -> None:
        """L22 and L28: prevote the round's proposal once its validity is known."""
        if self.step_ is not Step.PROPOSE:
            return  # already prevoted in this round
        first = self._first_proposal.get(self.round)
        if first is None:
            return  # wait for the proposal, or the propose timeout
        proposal, _ = self._proposals[self.round][first]
        valid = self._validity(proposal.block_hash)
        if valid is None:
            return  # the host is still validating it
        if proposal.pol_round == -1:
            # L22: a fresh value; acceptable if its time was timely to our clock (PBTS: the
            # proposer's clock is checked once, by each voter, on the fresh proposal) and
            # we are not locked on another one.
            timely = self.timely.get(proposal.block_hash, False)
            unlocked = self.locked_round == -1 or self.locked_value == proposal.block_hash
            ok = timely and unlocked
        else:
            # L28: a re-proposed value; wait for its proof of lock (2f+1 prevotes then).
            pol = self.votes.prevotes(proposal.pol_round)
            if not pol.has_quorum_for(proposal.block_hash):
                return
            # The proof unlocks us if it is not older than our lock. No clock here: 2f+1
            # prevoted it, so honest voters found it timely when it was fresh.
            ok = self.locked_round <= proposal.pol_round or self.locked_value == proposal.block_hash
        self.enter_prevote(proposal.block_hash if valid and ok else NIL)

    def try_lock(self) -> None:
        """L36: 2f+1 prevotes for a valid proposal of this round: lock, precommit, remember."""
        if self.step_ is Step.PROPOSE or (36, self.round) in self._fired:
            return  # before our prevote, or done for this round
        block_hash = self.votes.prevotes(self.round).quorum_value()
        if block_hash is None or block_hash == NIL:
            return  # no polka for a value (yet)
        if self.proposal(self.round, block_hash) is None:
            return  # wait for the block; gossip brings the proposal the others saw
        if not self._validity(block_hash):
            return  # unknown yet, or invalid: never lock an invalid value
        self._fired.add((36, self.round))
        # The valid value first: the precommit's signature request carries it to the record.
        self._set_valid(self.round, block_hash)
        if self.step_ is Step.PREVOTE and self.round > self.locked_round:
            self._set_lock(self.round, block_hash)
            self.enter_precommit(block_hash)

    def try_precommit_nil(self) -> None:
        """L44: 2f+1 prevotes for nil: precommit nil."""
        if self.step_ is not Step.PREVOTE:
            return
        if not self.votes.prevotes(self.round).has_quorum_for(NIL):
            return
        self.enter_precommit(NIL)

    def try_schedule_prevote_timeout(self) -> None:
        """L34: 2f+1 prevotes for anything while in prevote: start timeoutPrevote, once."""
        if self.step_ is not Step.PREVOTE or (34, self.round) in self._fired:
            return
        if not self.votes.prevotes(self.round).has_quorum_any():
            return
        self._fired.add((34, self.round))
        self._schedule(Step.PREVOTE)

    def try_schedule_precommit_timeout(self) -> None:
        """L47: 2f+1 precommits for anything in this round: start timeoutPrecommit, once."""
        if (47, self.round) in self._fired:
            return
        if not self.votes.precommits(self.round).has_quorum_any():
            return
        self._fired.add((47, self.round))
        self._schedule(Step.PRECOMMIT)

    def try_decide(self, round_: int) -> None:
        """L49: 2f+1 precommits in any round for a valid proposal of that round: commit it."""
        if self.decided is not None or self.validators is None:
            return
        precommits = self.votes.precommits(round_)
        block_hash = precommits.quorum_value()
        if block_hash is None or block_hash == NIL:
            return
        stored = self.proposal(round_, block_hash)
        if stored is None:
            return  # the decision waits for the block
        if not self._validity(block_hash):
            return  # unknown yet; invalid cannot gather honest precommits
        self.decided = block_hash
        commit = Commit.from_votes(precommits.votes_for(block_hash))
        self._out.append(CommitBlock(self.height, block_hash, stored[1], commit))

    def try_skip_to(self, round_: int) -> None:
        """L55: f+1 of the power is in a later round: at least one honest validator is, join."""
        if round_ <= self.round or self.decided is not None or self.validators is None:
            return
        if not self.validators.exceeds_one_third(self.votes.round_power(round_)):
            return
        self.enter_new_round(round_)

    # --- helpers ------------------------------------------------------------------------

    def _set_lock(self, round_: int, block_hash: bytes) -> None:
        """Lock on `block_hash` in `round_`; a lock never moves to an earlier round."""
        if round_ <= self.locked_round:
            return  # refused: only a later proof of lock may replace a lock
        self.locked_round, self.locked_value = round_, block_hash

    def _set_valid(self, round_: int, block_hash: bytes) -> None:
        """Remember the last value with 2f+1 prevotes; never one of an earlier round."""
        if round_ <= self.valid_round:
            return
        self.valid_round, self.valid_value = round_, block_hash

    def _valid(self) -> Lock | None:
        if self.valid_value is None:
            return None
        return Lock(self.valid_round, self.valid_value)

    def _buffer_vote(self, vote: Vote) -> None:
        """Keep a vote of the next height for replay (checked then, against its set),
        within the quota `admits` states, whichever way it came: one validator's votes
        over many rounds, or keys outside the next set, must not fill the buffer and
        crowd out the honest votes of the commit wait (review red23a 1)."""
        if not self._admits_next(vote, ()):
            self._out.append(Refused(vote))  # a copy may fit later: the buffer empties
            return
        self._buffered_votes.append(VoteReceived(vote))
        if self.buffers_as_stranger(vote):
            self._buffered_strangers += 1

    def _buffer_proposal(self, inp: ProposalReceived) -> None:
        """Keep a proposal of the next height for replay, if it can be the real one.

        Junk must not crowd out the next proposer: with the next set known, only its
        proposer of that round is kept; otherwise one per (round, signer), and a full
        buffer makes room for a lower round (round 0 decides in the common case), or for
        the same round's likelier proposer (`_buffered_rank`).
        What does not fit is `Refused`, so that it can arrive again.
        """
        p = inp.proposal
        key = (p.round, p.proposer)
        if key in self._buffered_proposals or p.pol_round >= p.round:
            return  # one per round and signer; a proof-of-lock round must be earlier
        if self._next_validators is not None and p.proposer != proposer(
            self._next_validators, self.height + 1, p.round
        ):
            return  # not the next height's proposer of that round: junk
        if not p.verify(self.chain_id):
            return
        if len(self._buffered_proposals) >= MAX_BUFFERED_PROPOSALS:
            last = max(self._buffered_proposals, key=self._buffered_rank)
            if self._buffered_rank(last) <= self._buffered_rank(key):
                self._out.append(Refused(p, inp.block_bytes))
                return
            evicted = self._buffered_proposals.pop(last)
            self._out.append(Refused(evicted.proposal, evicted.block_bytes))
        self._buffered_proposals[key] = inp

    def _buffered_rank(self, key: tuple[int, bytes]) -> tuple[int, int]:
        """Which buffered proposal of the next height goes first (lowest): lower rounds,
        then, while the next set is unknown, the current set's choice of proposer for
        that round (the set mostly stays), then its other members, then other keys:
        throw-away keys' proposals must not crowd out the likely proposer's (rev23a 8)."""
        round_, signer = key
        if self._next_validators is not None or self.validators is None:
            return round_, 0
        if signer == proposer(self.validators, self.height + 1, round_):
            return round_, 0
        return round_, 1 if self.validators.power_of(signer) > 0 else 2

    def _votes_point_at(self, round_: int, block_hash: bytes) -> bool:
        """More than 1/3 of the power voted for `block_hash` in `round_`."""
        if not self.votes.has_round(round_):
            return False
        return self.votes.prevotes(round_).has_one_third_for(block_hash) or self.votes.precommits(
            round_
        ).has_one_third_for(block_hash)

    def _validity(self, block_hash: bytes) -> bool | None:
        """The host's verdict on a stored block; ask for it the first time it is needed."""
        verdict = self.validity.get(block_hash)
        if verdict is None and block_hash not in self._requested:
            self._requested[block_hash] = None
            block_bytes = self._block_bytes(block_hash)
            if block_bytes is not None:
                self._out.append(ValidateBlock(self.height, block_hash, block_bytes))
        return verdict

    def _block_bytes(self, block_hash: bytes) -> bytes | None:
        for stored in self._proposals.values():
            if block_hash in stored:
                return stored[block_hash][1]
        return None

    def _sign(self, vote_type: VoteType, block_hash: bytes) -> None:
        if self.is_validator:
            self._out.append(
                SignVote(vote_type, self.height, self.round, block_hash, self._valid())
            )

    def _schedule(self, step: Step) -> None:
        delay = self.timeouts.timeout_ms(step, self.round)
        self._out.append(ScheduleTimeout(self.height, self.round, step, delay))
