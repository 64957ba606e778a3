"""What evidence needs to remember: which node held a key, and who validated when.

Evidence of equivocation arrives up to `evidence_max_age` blocks after the votes it
carries. By then the offender may have rotated its node key (the validator set keeps the
old key until the epoch ends, so the old key still votes), or the set may have changed.
Two committed tables answer "whose vote was this, and did it count?" for that long:

- `k` key records: every key a node holds or held, with the heights of its service.
  A key serves one node once; its record is kept `evidence_max_age + epoch_length`
  blocks after it retires (longer while a kept validator set still holds it), and
  meanwhile no node can take it again.
- `H` validator-set history: each set, under the first height it signs. A set is dropped
  once its successor starts more than `evidence_max_age` blocks before the current one.

Both are pruned deterministically by block height, inside the state root like all state.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import Final

from fluxchain.core import deque
from fluxchain.core.context import BlockContext
from fluxchain.core.records import (
    META,
    VALIDATOR_HISTORY,
    KeyRecord,
    Meta,
    node_by_key_key,
    validator_history_key,
)
from fluxchain.core.state import State
from fluxchain.core.validators import ValidatorSet

_KEY_PRUNE: Final = b"key-prune/"  # deque per height: retired keys whose record may go


def _prune_name(height: int) -> bytes:
    return _KEY_PRUNE + height.to_bytes(8, "big")


# -- key records -----------------------------------------------------------------------------


def get_key_record(state: State, pubkey: bytes) -> KeyRecord | None:
    """The record of `pubkey` as a node key, current or retired (None if never, or pruned)."""
    record: KeyRecord | None = state.get(node_by_key_key(pubkey))
    return record


def name_key(ctx: BlockContext, pubkey: bytes, node_id: bytes) -> None:
    """Make `pubkey` the current key of `node_id` from this block on (the caller has checked
    that the key has no record)."""
    ctx.state.put(node_by_key_key(pubkey), KeyRecord(node_id, ctx.height, 0, 0))


def retire_key(ctx: BlockContext, pubkey: bytes) -> None:
    """End `pubkey`'s service at this block; its record stays for the evidence age."""
    record = get_key_record(ctx.state, pubkey)
    if record is None or record.retired_height:
        return
    ctx.state.put(node_by_key_key(pubkey), replace(record, retired_height=ctx.height))
    deque.push(ctx.state, _prune_name(ctx.height + _key_retention(ctx)), pubkey)


def tombstone_key(ctx: BlockContext, pubkey: bytes) -> None:
    """Mark `pubkey` slashed at this block: its votes signed before now are punished."""
    record = get_key_record(ctx.state, pubkey)
    if record is not None:
        ctx.state.put(node_by_key_key(pubkey), replace(record, tombstone_height=ctx.height))


def is_tombstoned(ctx: BlockContext, pubkey: bytes) -> bool:
    """True while evidence of votes `pubkey` signed before its slashing is still valid."""
    record = get_key_record(ctx.state, pubkey)
    return (
        record is not None
        and record.tombstone_height > 0
        and ctx.height <= record.tombstone_height + ctx.params.evidence_max_age
    )


def _key_retention(ctx: BlockContext) -> int:
    # A retired key stays in the validator set until the next epoch's set replaces it
    # (at most epoch_length blocks), and its votes are punishable evidence_max_age after.
    return ctx.params.evidence_max_age + ctx.params.epoch_length + 1


def process_history(ctx: BlockContext) -> None:
    """Forget the validator sets no evidence can name any more, then the records of keys
    whose retention ends at this height."""
    _prune_validator_sets(ctx)
    for pubkey in deque.drain(ctx.state, _prune_name(ctx.height)):
        record = get_key_record(ctx.state, pubkey)
        if record is None or not record.retired_height:
            continue
        if any(set_.power_of(pubkey) for _, set_ in kept_validator_sets(ctx.state)):
            # A set that can still be named in evidence holds this key (a set is kept
            # past an epoch when no confirmed node could replace it): look again later.
            deque.push(ctx.state, _prune_name(ctx.height + ctx.params.epoch_length), pubkey)
            continue
        ctx.state.delete(node_by_key_key(pubkey))


# -- validator-set history -------------------------------------------------------------------


def kept_validator_sets(state: State) -> list[tuple[int, ValidatorSet]]:
    """(first height it signs, set) of every kept set, oldest first."""
    return [
        (int.from_bytes(key[1:], "big"), value) for key, value in state.items(VALIDATOR_HISTORY)
    ]


def validators_at(state: State, height: int) -> ValidatorSet | None:
    """The set that signed block `height`, if the history still holds it.

    None for a height beyond the block after the state's last one: the state knows the
    set of that next block, but not what later blocks may change, so it must not answer
    with its latest set for a height that has not happened (evidence dated far ahead).
    """
    meta: Meta = state.get(META)
    if height > meta.height + 1:
        return None
    found = None
    for first, set_ in kept_validator_sets(state):
        if first > height:
            break
        found = set_
    return found


def record_validators(state: State, first_height: int, chosen: ValidatorSet) -> None:
    """Remember that `chosen` signs from `first_height` on."""
    state.put(validator_history_key(first_height), chosen)


def _prune_validator_sets(ctx: BlockContext) -> None:
    # Sets change at epoch starts only, so that is when pruning looks (a set may outlive
    # its need by up to an epoch). Evidence in this block or later names heights
    # >= height - max_age: a set is still needed while its successor starts after that.
    if ctx.height % ctx.params.epoch_length:
        return
    horizon = ctx.height - ctx.params.evidence_max_age
    kept = kept_validator_sets(ctx.state)
    for (first, _), (successor, _) in pairwise(kept):
        if successor > horizon:
            break
        ctx.state.delete(validator_history_key(first))
