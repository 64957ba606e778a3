"""Which peer a node asks next for the txs a compact proposal's block lacks. Pure.

Anything a peer says of itself is free: a ROUND_STATE claiming a proposal held, or the
compact proposal relayed without rebuilding it. Stakeless Sybils that claim every
proposal and never answer were asked before a validator holding the block (fix16b 1).
So sources are ranked first by what cannot be faked cheaply: a validator of the height
(its node key, proved in the handshake, is in the set), then a peer this node dialed
itself (outbound: chosen one per address group, out of an attacker's reach), then the
rest; within each, holders (a ROUND_STATE showing the proposal held, or a validator's
compact copy) before mere relayers; the caller demotes holders that failed to deliver.
Each of these groups gets at most `per_group` requests, so that no group's silent peers
use up the turns of the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum


class Trust(IntEnum):
    """How costly it is to fake a peer: lower is asked first."""

    VALIDATOR = 0  # its node key is in the validator set
    OUTBOUND = 1  # we dialed it
    INBOUND = 2  # it dialed us: a fresh key and address make another


@dataclass(frozen=True, slots=True)
class TxsSource:
    peer_id: str
    trust: Trust
    holder: bool  # it holds the proposal by ROUND_STATE or a validator's copy (else relayed)


def next_txs_source(
    candidates: Sequence[TxsSource], tried: Sequence[str], per_group: int
) -> str | None:
    """The first untried candidate of the most trusted group (trust, then holders before
    relayers) that has been asked fewer than `per_group` times; None if there is none.
    Candidates keep their order within a group (the caller puts the sender first)."""
    groups: dict[tuple[Trust, bool], list[str]] = {}
    for source in candidates:
        groups.setdefault((source.trust, not source.holder), []).append(source.peer_id)
    for key in sorted(groups):
        members = groups[key]
        if sum(peer_id in members for peer_id in tried) >= per_group:
            continue
        untried = next((peer_id for peer_id in members if peer_id not in tried), None)
        if untried is not None:
            return untried
    return None
