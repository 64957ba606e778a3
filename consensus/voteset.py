"""Vote bookkeeping for one height: power counted once per validator, equivocation caught.

A validator's power counts once toward "votes for anything" in a (round, type), and once
toward each block it voted for. A second vote for another block proves equivocation and
becomes evidence.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from consensus.evidence import DuplicateVoteEvidence
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import NIL, Vote, VoteType

# A validator may hold votes in this many rounds above ours. Honest validators ahead of
# us need one or two (that is what lets us skip rounds); the cap stops a byzantine one
# from making us store votes for every round number up to 2**31.
MAX_FUTURE_ROUNDS_PER_VALIDATOR: Final = 3


class AddResult(Enum):
    """What `HeightVoteSet.add` did with a vote."""

    ADDED = "added"
    DUPLICATE = "duplicate"  # a vote we hold already (maybe with another valid signature)
    CONFLICT = "conflict"  # a signed second vote for another block: evidence
    NOT_A_VALIDATOR = "not_a_validator"
    BAD_SIGNATURE = "bad_signature"
    TOO_FAR_AHEAD = "too_far_ahead"  # the validator already fills its future-round quota


@dataclass(frozen=True, slots=True)
class AddOutcome:
    result: AddResult
    evidence: DuplicateVoteEvidence | None = None
    counted: bool = False  # the vote now counts toward its block's tally


class VoteSet:
    """The votes of one type in one round.

    Each validator's power counts once toward "anything" (its first vote) and once toward
    each block it signed a vote for. An equivocator thus shows up in two tallies; that is
    what the algorithm's "2f+1 messages for v" means, and it cannot make two blocks reach
    a quorum: two quorums overlap in more than 1/3 of the power, so in an honest validator.
    Counting it matters for liveness: a proof of lock that some honest validator saw must
    be checkable by every other one, whichever of the two votes reached it first.
    """

    __slots__ = (
        "_quorum",
        "_total",
        "by_validator",
        "conflicted",
        "power",
        "power_for",
        "tallies",
    )

    def __init__(self, total_power: int) -> None:
        self._total = total_power
        self._quorum: bytes | None = None
        self.by_validator: dict[bytes, Vote] = {}  # first vote of each validator
        # Validators with a second vote here for a block nobody proposed: that one vote is
        # kept as evidence; more of them serve nothing (`HeightVoteSet.admits`).
        self.conflicted: set[bytes] = set()
        self.tallies: dict[bytes, dict[bytes, Vote]] = {}  # block hash -> validator -> vote
        self.power_for: dict[bytes, int] = {}  # block hash (NIL included) -> power
        self.power = 0  # power of the validators that voted, for anything

    def count(self, vote: Vote, weight: int, *, first: bool) -> None:
        """Count a verified vote: `first` of its validator, or a second one for another block."""
        if first:
            self.by_validator[vote.validator] = vote
            self.power += weight
        self.tallies.setdefault(vote.block_hash, {})[vote.validator] = vote
        power = self.power_for.get(vote.block_hash, 0) + weight
        self.power_for[vote.block_hash] = power
        if self._quorum is None and 3 * power > 2 * self._total:
            self._quorum = vote.block_hash

    def holds(self, vote: Vote) -> bool:
        """Whether this vote (validator and block) is already counted."""
        return vote.validator in self.tallies.get(vote.block_hash, {})

    def quorum_value(self) -> bytes | None:
        """The block hash (or NIL) that more than 2/3 of the power voted for, if any."""
        return self._quorum

    def has_quorum_for(self, block_hash: bytes) -> bool:
        return 3 * self.power_for.get(block_hash, 0) > 2 * self._total

    def has_quorum_any(self) -> bool:
        """More than 2/3 of the power voted, for anything."""
        return 3 * self.power > 2 * self._total

    def has_one_third_for(self, block_hash: bytes) -> bool:
        """More than 1/3 of the power voted for `block_hash`: at least one honest validator."""
        return 3 * self.power_for.get(block_hash, 0) > self._total

    def votes_for(self, block_hash: bytes) -> list[Vote]:
        return list(self.tallies.get(block_hash, {}).values())


class HeightVoteSet:
    """All prevotes and precommits of one height, per round."""

    __slots__ = (
        "_empty",
        "_future_rounds",
        "_power",
        "_round_power",
        "_rounds",
        "chain_id",
        "height",
        "total_power",
    )

    def __init__(self, chain_id: str, height: int, validators: ValidatorSet) -> None:
        self.chain_id = chain_id
        self.height = height
        self._power = {v.pubkey: v.power for v in validators.validators}
        self.total_power = validators.total_power
        self._rounds: dict[int, tuple[VoteSet, VoteSet]] = {}
        # Power of the distinct validators with any vote in a round (the f+1 skip rule).
        self._round_power: dict[int, dict[bytes, int]] = {}
        self._future_rounds: dict[bytes, list[int]] = {}
        # What reads of a round without votes see; reads never create rounds.
        self._empty = (VoteSet(self.total_power), VoteSet(self.total_power))

    def _sets(self, round_: int) -> tuple[VoteSet, VoteSet]:
        sets = self._rounds.get(round_)
        if sets is None:
            sets = (VoteSet(self.total_power), VoteSet(self.total_power))
            self._rounds[round_] = sets
        return sets

    def prevotes(self, round_: int) -> VoteSet:
        return self._rounds.get(round_, self._empty)[0]

    def precommits(self, round_: int) -> VoteSet:
        return self._rounds.get(round_, self._empty)[1]

    def holds(self, vote: Vote) -> bool:
        """Whether `vote` is already counted (what a peer would announce with HasVote)."""
        sets = self._rounds.get(vote.round)
        return sets is not None and sets[vote.type - 1].holds(vote)

    def has_round(self, round_: int) -> bool:
        return round_ in self._rounds

    def round_power(self, round_: int) -> int:
        """Power of the validators that sent any vote in `round_`."""
        return sum(self._round_power.get(round_, {}).values())

    def add(self, vote: Vote, current_round: int, known: Container[bytes]) -> AddOutcome:
        """Count `vote` (of this height) if it is new, signed, and from a validator.

        A second vote of a validator for another block is evidence; it is also counted
        for its block if that block is NIL or in `known` (proposed at this height): votes
        for anything else cannot serve any rule, and would let one validator fill memory.
        """
        weight = self._power.get(vote.validator, 0)
        if weight == 0:
            return AddOutcome(AddResult.NOT_A_VALIDATOR)
        existing = self._rounds.get(vote.round)
        if existing is not None:
            votes = existing[vote.type - 1]
            first = votes.by_validator.get(vote.validator)
            if first is not None:
                if votes.holds(vote):
                    return AddOutcome(AddResult.DUPLICATE)  # checked before paying a verify
                if not vote.verify(self.chain_id):
                    return AddOutcome(AddResult.BAD_SIGNATURE)
                evidence = DuplicateVoteEvidence.of(first, vote)
                counted = vote.block_hash == NIL or vote.block_hash in known
                if counted:
                    votes.count(vote, weight, first=False)
                else:
                    votes.conflicted.add(vote.validator)
                return AddOutcome(AddResult.CONFLICT, evidence, counted)
        if vote.round > current_round:
            rounds = self._future_rounds.setdefault(vote.validator, [])
            ahead = [r for r in rounds if r > current_round]
            if vote.round not in ahead and len(ahead) >= MAX_FUTURE_ROUNDS_PER_VALIDATOR:
                return AddOutcome(AddResult.TOO_FAR_AHEAD)
        if not vote.verify(self.chain_id):
            return AddOutcome(AddResult.BAD_SIGNATURE)
        if vote.round > current_round:
            rounds = self._future_rounds[vote.validator]
            if vote.round not in rounds:
                rounds.append(vote.round)
        self._sets(vote.round)[vote.type - 1].count(vote, weight, first=True)
        self._round_power.setdefault(vote.round, {})[vote.validator] = weight
        return AddOutcome(AddResult.ADDED, counted=True)

    def admits(
        self,
        vote: Vote,
        current_round: int,
        known: Container[bytes],
        pending: Iterable[Vote] = (),
    ) -> bool:
        """Whether `vote` (of this height, signature checked by the caller) is worth keeping:
        what a host may log and relay. Read-only; `add` keeps every vote this admits.

        Admitted: a validator's first vote in a (round, type) — within its quota of future
        rounds — and a second one that `add` counts (NIL, or a block in `known`), and one
        more for a block nobody proposed, as evidence. Refused: copies, more conflicting
        votes for unknown blocks, rounds beyond the quota. So one validator gets at most
        a few votes per round it may vote in past every node, whatever it signs.

        `pending`: votes of the same validator admitted before this one but not added yet
        (the host's queue), taken as if added first.
        """
        if self._power.get(vote.validator, 0) == 0:
            return False
        same = [
            p
            for p in pending
            if (p.validator, p.height, p.round, p.type)
            == (vote.validator, vote.height, vote.round, vote.type)
        ]
        if self.holds(vote) or any(p.block_hash == vote.block_hash for p in same):
            return False  # a copy
        sets = self._rounds.get(vote.round)
        votes = sets[vote.type - 1] if sets is not None else None
        first = votes.by_validator.get(vote.validator) if votes is not None else None
        earlier = ([first] if first is not None else []) + same
        if not earlier:
            if vote.round <= current_round:
                return True
            ahead = {r for r in self._future_rounds.get(vote.validator, []) if r > current_round}
            ahead |= {
                p.round
                for p in pending
                if p.validator == vote.validator
                and p.height == vote.height
                and p.round > current_round
            }
            return vote.round in ahead or len(ahead) < MAX_FUTURE_ROUNDS_PER_VALIDATOR
        # A second vote in this (round, type): equivocation.
        if vote.block_hash == NIL or vote.block_hash in known:
            return True  # counted: it may complete a tally an honest validator relies on
        conflicted = votes is not None and vote.validator in votes.conflicted
        unknown = [p for p in earlier[1:] if p.block_hash != NIL and p.block_hash not in known]
        return not conflicted and not unknown


__all__ = ["NIL", "AddOutcome", "AddResult", "HeightVoteSet", "VoteSet", "VoteType"]
