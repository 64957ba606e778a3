"""Vote bookkeeping for one height: power counted once per validator, equivocation caught.

A validator's first valid vote for a (round, type) is the one that counts. A second vote
for another block is not counted (so nobody can add power twice) but proves
equivocation, and becomes evidence.
"""

from __future__ import annotations

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
    DUPLICATE = "duplicate"  # same vote again (maybe another valid signature): ignored
    CONFLICT = "conflict"  # a signed second vote for another block: evidence
    NOT_A_VALIDATOR = "not_a_validator"
    BAD_SIGNATURE = "bad_signature"
    TOO_FAR_AHEAD = "too_far_ahead"  # the validator already fills its future-round quota


@dataclass(frozen=True, slots=True)
class AddOutcome:
    result: AddResult
    evidence: DuplicateVoteEvidence | None = None


class VoteSet:
    """The counted votes of one type in one round."""

    __slots__ = ("_quorum", "_total", "by_validator", "power", "power_for")

    def __init__(self, total_power: int) -> None:
        self._total = total_power
        self._quorum: bytes | None = None
        self.by_validator: dict[bytes, Vote] = {}
        self.power_for: dict[bytes, int] = {}  # block hash (NIL included) -> counted power
        self.power = 0  # counted power for anything

    def count(self, vote: Vote, weight: int) -> None:
        """Count a verified first vote of its validator."""
        self.by_validator[vote.validator] = vote
        power = self.power_for.get(vote.block_hash, 0) + weight
        self.power_for[vote.block_hash] = power
        self.power += weight
        if 3 * power > 2 * self._total:
            self._quorum = vote.block_hash

    def quorum_value(self) -> bytes | None:
        """The block hash (or NIL) that more than 2/3 of the power voted for, if any."""
        return self._quorum

    def has_quorum_for(self, block_hash: bytes) -> bool:
        return self._quorum == block_hash

    def has_quorum_any(self) -> bool:
        """More than 2/3 of the power voted, for anything."""
        return 3 * self.power > 2 * self._total

    def has_one_third_for(self, block_hash: bytes) -> bool:
        """More than 1/3 of the power voted for `block_hash`: at least one honest validator."""
        return 3 * self.power_for.get(block_hash, 0) > self._total

    def votes_for(self, block_hash: bytes) -> list[Vote]:
        return [v for v in self.by_validator.values() if v.block_hash == block_hash]


class HeightVoteSet:
    """All prevotes and precommits of one height, per round."""

    __slots__ = (
        "_future_rounds",
        "_power",
        "_round_power",
        "_empty",
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

    def get(self, vote: Vote) -> Vote | None:
        """The counted vote of `vote`'s validator, round and type, if any."""
        sets = self._rounds.get(vote.round)
        return None if sets is None else sets[vote.type - 1].by_validator.get(vote.validator)

    def has_round(self, round_: int) -> bool:
        return round_ in self._rounds

    def round_power(self, round_: int) -> int:
        """Power of the validators that sent any vote in `round_`."""
        return sum(self._round_power.get(round_, {}).values())

    def add(self, vote: Vote, current_round: int) -> AddOutcome:
        """Count `vote` (of this height) if it is new, signed, and from a validator."""
        weight = self._power.get(vote.validator, 0)
        if weight == 0:
            return AddOutcome(AddResult.NOT_A_VALIDATOR)
        existing = self._rounds.get(vote.round)
        if existing is not None:
            counted = existing[vote.type - 1].by_validator.get(vote.validator)
            if counted is not None:
                if counted.block_hash == vote.block_hash:
                    return AddOutcome(AddResult.DUPLICATE)  # checked before paying a verify
                if not vote.verify(self.chain_id):
                    return AddOutcome(AddResult.BAD_SIGNATURE)
                return AddOutcome(AddResult.CONFLICT, DuplicateVoteEvidence.of(counted, vote))
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
        self._sets(vote.round)[vote.type - 1].count(vote, weight)
        self._round_power.setdefault(vote.round, {})[vote.validator] = weight
        return AddOutcome(AddResult.ADDED)


__all__ = ["NIL", "AddOutcome", "AddResult", "HeightVoteSet", "VoteSet", "VoteType"]
