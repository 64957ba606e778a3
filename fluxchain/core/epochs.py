"""Epochs: every `epoch_length` blocks, a new seed, a new uptime ring, a new validator set.

Randomness (docs/economics.md, "Unbiasable randomness"): every block folds its proposer's
reveal, a BLS signature over the height that only one value satisfies (core/vrf.py), into
`Meta.mix`. The seed of epoch e is the mix as it stood at the end of epoch e - 2
(lookahead): at the first block of epoch e, `epoch_seed = next_seed` and `next_seed = mix`.
Neither the block time nor the parent hash enters it, so a proposer's only choice is to
withhold its block.

The validator set is the confirmed nodes with the most collateral (power = collateral in
whole FLUX), capped at `max_validators`, ties broken by registration height, then node
id: never by the seed, which would make the seed worth grinding for seats. The set chosen
in block h signs block h + 1 onward.
"""

from __future__ import annotations

from dataclasses import replace

from fluxchain.core import history, nodes, uptime, vrf
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


def select_validators(state: State, max_validators: int) -> ValidatorSet:
    """Top confirmed nodes by collateral; ties to the earlier registered, then the lower
    node id. No randomness: a seed that orders seats is a seed worth grinding."""
    candidates = [node for _, node in state.items(NODE) if node.status is NodeStatus.CONFIRMED]
    candidates.sort(key=lambda n: (-n.collateral, n.registered_height, n.node_id))
    chosen = [
        Validator(n.node_key, max(1, n.collateral // COIN), n.vrf_key)
        for n in candidates[:max_validators]
    ]
    return ValidatorSet.of(chosen)


def fold_reveal(mix: bytes, reveal: bytes) -> bytes:
    """The mix after a block whose proposer revealed `reveal`."""
    return sha256(mix + vrf.output(reveal))


def process_reveal(ctx: BlockContext) -> None:
    """Every block: fold the proposer's (checked) reveal into the mix."""
    meta: Meta = ctx.state.get(META)
    ctx.state.put(META, replace(meta, mix=fold_reveal(meta.mix, ctx.reveal)))


def process_epoch(ctx: BlockContext) -> None:
    """At the first block of an epoch, before its reveal is folded in: the seed fixed two
    epochs ago, rank keys, ring and validator set."""
    if ctx.height % ctx.params.epoch_length:
        return
    meta: Meta = ctx.state.get(META)
    epoch = ctx.height // ctx.params.epoch_length
    # meta.mix is the mix at the end of epoch - 1: the seed of epoch + 1.
    seed = meta.next_seed
    ctx.state.put(META, replace(meta, epoch=epoch, epoch_seed=seed, next_seed=meta.mix))
    ctx.emit(EventKind.EPOCH_STARTED, epoch, seed)
    nodes.process_rank_keys(ctx, epoch, meta.mix)
    uptime.start_epoch(ctx, epoch, seed)
    chosen = select_validators(ctx.state, ctx.params.max_validators)
    # An empty set could sign nothing ever again: keep the old one rather than halt forever.
    if chosen.validators and chosen != get_validators(ctx.state):
        ctx.state.put(VALIDATORS, chosen)
        history.record_validators(ctx.state, ctx.height + 1, chosen)
        ctx.emit(EventKind.VALIDATORS_CHANGED, len(chosen.validators), chosen.total_power)
