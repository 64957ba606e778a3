"""Proposer rotation: a pure function of (validator set, height, round), weighted by power.

Slot `height + round` of a fixed, repeating sequence picks the proposer. The sequence is
the seat order of the Sainte-Laguë (Webster) apportionment: validator i holds the passes
(j + 1/2) / w_i for j = 0 .. w_i - 1, all passes are merged in increasing order (ties go to
the lower index, i.e. the smaller public key), and the merged list repeats. With powers
reduced by their gcd, one period has sum(w) slots and validator i holds exactly w_i of
them, spread evenly: every prefix gives each validator its share rounded to the nearest
slot. Nothing depends on history, so a restarted or syncing node needs no extra state,
unlike priority schemes that carry accumulators from height to height.
"""

from __future__ import annotations

from functools import lru_cache, reduce
from math import gcd

from fluxchain.core.validators import ValidatorSet


def _seats_up_to(weights: tuple[int, ...], numerator: int, scale_bits: int) -> int:
    """How many passes (2j + 1) / (2w) are at most numerator / 2**scale_bits."""
    one = 1 << scale_bits
    return sum((2 * numerator * w + one) // (2 * one) for w in weights)


@lru_cache(maxsize=4096)
def seat_holder(weights: tuple[int, ...], seat: int) -> int:
    """Index of the validator holding `seat` (0 <= seat < sum(weights)) in Sainte-Laguë order.

    Bisects the pass value on a dyadic grid finer than the smallest gap between two
    distinct passes (1 / (2 w_i w_k)), so the last interval holds one pass value only.
    """
    scale_bits = 2 * max(weights).bit_length() + 2
    lo, hi = 0, 1 << scale_bits  # seats(lo) <= seat < seats(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _seats_up_to(weights, mid, scale_bits) <= seat:
            lo = mid
        else:
            hi = mid
    one = 1 << scale_bits
    # The passes in (lo, hi] all have the same value; at most one per validator.
    tied = [
        i
        for i, w in enumerate(weights)
        if (2 * hi * w + one) // (2 * one) != (2 * lo * w + one) // (2 * one)
    ]
    return tied[seat - _seats_up_to(weights, lo, scale_bits)]


@lru_cache(maxsize=64)
def reduced_weights(validators: ValidatorSet) -> tuple[int, ...]:
    """Voting powers divided by their gcd: the same order, with the shortest period."""
    powers = [v.power for v in validators.validators]
    divisor = reduce(gcd, powers)
    return tuple(p // divisor for p in powers)


def proposer_index(validators: ValidatorSet, height: int, round_: int) -> int:
    """Index in `validators` of the proposer of (height, round)."""
    weights = reduced_weights(validators)
    return seat_holder(weights, (height + round_) % sum(weights))


def proposer(validators: ValidatorSet, height: int, round_: int) -> bytes:
    """Public key of the proposer of (height, round)."""
    return validators.validators[proposer_index(validators, height, round_)].pubkey
