"""Epochs: every `epoch_length` blocks, a new seed, a new uptime ring, a new validator set.

The seed chains the previous seed with the parent block's hash; the validator set is the
confirmed nodes with the most collateral (power = collateral in whole FLUX), capped at
`max_validators`, ties broken by the seed so that no fixed order favours anyone. The set
chosen in block h signs block h + 1 onward.
"""

from __future__ import annotations

from dataclasses import replace

from fluxchain.core import history, uptime
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import sha256
from fluxchain.core.events import EventKind
from fluxchain.core.params import COIN
from fluxchain.core.records import META, NODE, VALIDATORS, Meta, NodeStatus
from fluxchain.core.state import State
from fluxchain.core.validators import Validator, ValidatorSet


def get_validators(state: State) -> ValidatorSet:
    """The validator set that signs the next block."""
    validators: ValidatorSet = state.get(VALIDATORS)
    return validators


def select_validators(state: State, seed: bytes, max_validators: int) -> ValidatorSet:
    """Top confirmed nodes by collateral; ties ordered by a seeded hash."""
    candidates = [node for _, node in state.items(NODE) if node.status is NodeStatus.CONFIRMED]
    candidates.sort(key=lambda n: (-n.collateral, sha256(seed + n.node_id)))
    chosen = [
        Validator(n.node_key, max(1, n.collateral // COIN)) for n in candidates[:max_validators]
    ]
    return ValidatorSet.of(chosen)


def process_epoch(ctx: BlockContext) -> None:
    """At the first block of an epoch: new seed, ring and validator set."""
    if ctx.height % ctx.params.epoch_length:
        return
    meta: Meta = ctx.state.get(META)
    epoch = ctx.height // ctx.params.epoch_length
    seed = sha256(meta.epoch_seed + ctx.prev_hash)
    ctx.state.put(META, replace(meta, epoch=epoch, epoch_seed=seed))
    ctx.emit(EventKind.EPOCH_STARTED, epoch, seed)
    uptime.start_epoch(ctx, epoch, seed)
    chosen = select_validators(ctx.state, seed, ctx.params.max_validators)
    # An empty set could sign nothing ever again: keep the old one rather than halt forever.
    if chosen.validators and chosen != get_validators(ctx.state):
        ctx.state.put(VALIDATORS, chosen)
        history.record_validators(ctx.state, ctx.height + 1, chosen)
        ctx.emit(EventKind.VALIDATORS_CHANGED, len(chosen.validators), chosen.total_power)
