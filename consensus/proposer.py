"""Proposer rotation, as the engine uses it.

The rule itself lives in `fluxchain.core.proposer`: a block header names the proposer of
its (height, round), and every node checks that as part of the header rules, so the
function belongs to the ledger core, which the engine builds on.
"""

from __future__ import annotations

from fluxchain.core.proposer import proposer, proposer_index, reduced_weights, seat_holder

__all__ = ["proposer", "proposer_index", "reduced_weights", "seat_holder"]
