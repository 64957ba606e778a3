"""Chain parameters: every constant a rule depends on, loaded from genesis.

docs/params.md documents each one; genesis/mainnet-shaped.json carries the public Flux
network's values, genesis/devnet.json the same economics with windows scaled to 1 s blocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final, Self

from fluxchain.core.encoding import (
    MAX_AMOUNT,
    MAX_ARRAY,
    MAX_CHAIN_ID_BYTES,
    Amount,
    ChainId,
    Nested,
    Record,
    Str,
    chain_id_fits,
    record,
)
from fluxchain.core.errors import GenesisError, Reason
from fluxchain.core.validators import MAX_VALIDATORS_HARD

# Uptime checkers per target at most: twice this (uptime.WALK_FACTOR) fits one attestation
# (tx.MAX_REPORTS).
MAX_CHECKERS: Final = 32

COIN: Final = 100_000_000  # base units per FLUX
# A transfer's memo costs one more min_fee per started 256 bytes (core/tx.py memo_fee).
MEMO_BYTES_PER_MIN_FEE: Final = 256
MAX_HRP: Final = 83  # the longest human-readable part bech32 allows


class Tier(IntEnum):
    """Node tiers, ordered by collateral (a higher tier satisfies a lower minimum)."""

    CUMULUS = 1
    NIMBUS = 2
    STRATUS = 3


@record("tier_params")
@dataclass(frozen=True, slots=True)
class TierParams(Record):
    """Collateral, hardware bounds and block reward of one tier."""

    collateral: Amount
    min_cores: Amount
    min_threads: Amount
    min_ram_mb: Amount
    min_disk_gb: Amount
    min_bandwidth_mbit: Amount
    # The most hardware a node of this tier may declare (NODE_REGISTER, genesis): what it
    # offers apps is its benchmark capped by its declared hardware, so its collateral
    # answers for a bounded share of the network's hosting (docs/economics.md).
    max_cores: Amount
    max_ram_mb: Amount
    max_disk_gb: Amount
    reward: Amount  # paid each block to the head of this tier's payment queue

    def hardware_excess(self, cores: int, ram_mb: int, disk_gb: int) -> list[str]:
        """What declared hardware has beyond this tier's caps, one phrase per resource."""
        return [
            f"{name} {value} > {cap}"
            for name, value, cap in (
                ("cores", cores, self.max_cores),
                ("ram_mb", ram_mb, self.max_ram_mb),
                ("disk_gb", disk_gb, self.max_disk_gb),
            )
            if value > cap
        ]


@record("params")
@dataclass(frozen=True, slots=True)
class Params(Record):
    """All consensus parameters. Integers only; amounts in base units; windows in blocks.

    Every integer is bounded like an amount (`_load`), so that every sum of two stays
    encodable; the wire form (hashed into the genesis hash) is the fields in order."""

    chain_id: Annotated[str, ChainId()]
    address_hrp: Annotated[str, Str(MAX_HRP)]
    block_time_ms: Amount  # target interval, used by the consensus driver only
    # A proposal whose time is further ahead of a voter's clock than this gets its prevote
    # nil (judged when voting only; a committed block is judged by its commit).
    max_clock_drift_ms: Amount
    # A block's time exceeds its parent's by at most this: a header rule every node checks,
    # so a block time can never run away towards the integer limit.
    max_time_advance_ms: Amount
    max_block_txs: Amount
    max_block_bytes: Amount
    max_tx_bytes: Amount
    min_fee: Amount  # fee-paying kinds; NODE_CONFIRM and UPTIME_ATTEST are fee-free
    # Burnt out of every fee-paying tx's fee (the rest is the proposer's tip): a proposer
    # filling its own blocks still pays this much per tx (docs/economics.md).
    base_fee: Amount
    # Burnt from the sender, on top of the amount, by a TRANSFER that creates an account;
    # a transfer of less than this to a new account is refused (docs/economics.md).
    account_deposit: Amount
    # Burnt per instance that a NODE_UPDATE relocation or an APP_UPDATE moves; the tx's
    # fee must cover base_fee plus this times the instances it moves.
    relocation_price: Amount
    cumulus: TierParams
    nimbus: TierParams
    stratus: TierParams
    reserve_cores: Amount  # kept back on every node for the system
    reserve_ram_mb: Amount
    reserve_disk_gb: Amount
    block_subsidy: Amount
    halving_interval: Amount
    confirm_window: Amount
    epoch_length: Amount
    checkers_per_node: Amount
    unbonding_period: Amount
    max_validators: Amount
    slash_bps: Amount  # share of collateral burned on equivocation, in basis points
    jail_period: Amount
    # A node marked DOWN may confirm again only this many blocks after: being down costs
    # at least this much pay, and it sits out the rest of the epoch whose tally caught it.
    down_cooldown: Amount
    evidence_max_age: Amount
    app_min_instances: Amount
    app_max_instances: Amount
    app_min_expire: Amount
    app_max_expire: Amount
    app_max_components: Amount
    app_price_period: Amount  # blocks that the per-resource prices below pay for
    app_price_cpu_tenth: Amount  # per 0.1 cpu per period
    app_price_ram_100mb: Amount  # per 100 MB RAM per period
    app_price_disk_gb: Amount  # per GB disk per period
    app_price_port: Amount  # per published port per period
    app_min_price: Amount
    app_settle_interval: Amount  # blocks between an app's periodic escrow settlements
    # Burnt from the signer by every APP_REGISTER and APP_UPDATE, never refunded: an app
    # that runs nowhere, or a squatted name, costs at least this (docs/economics.md).
    app_charge: Amount
    # A domain released by its app (cancel, expiry, an update dropping it) stays its last
    # owner's address for this many blocks: its DNS still points at the gateways, so no
    # other owner may claim it and receive its visitors meanwhile (docs/apps.md, "Domains").
    domain_hold_blocks: Amount
    # A pending secret set (APP_SECRETS before its APP_REGISTER) is deleted this many blocks
    # after it was set, unless a register adopted it before: nothing keeps it for ever.
    secrets_pending_blocks: Amount
    # Work bounds per block (docs/economics.md): the rest carries over to the next blocks.
    app_refills_per_block: Amount  # under-placed apps searched again
    app_settles_per_block: Amount  # periodic escrow settlements
    app_expiries_per_block: Amount  # apps closed at their expiry

    def tier(self, tier: Tier) -> TierParams:
        """Parameters of `tier`."""
        if tier is Tier.CUMULUS:
            return self.cumulus
        if tier is Tier.NIMBUS:
            return self.nimbus
        return self.stratus

    def subsidy_at(self, height: int) -> int:
        """Newly minted FLUX per block at `height`, halving every `halving_interval`."""
        halvings = height // self.halving_interval
        return self.block_subsidy >> halvings if halvings < 64 else 0

    def tier_reward_at(self, tier: Tier, height: int) -> int:
        """A tier's share at `height`, halving with the subsidy."""
        halvings = height // self.halving_interval
        return self.tier(tier).reward >> halvings if halvings < 64 else 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form, as written in genesis files."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> Self:
        """Load from a genesis `params` object, rejecting unknown, missing or mistyped keys."""
        params: Self = _load(cls, raw, "params")
        return params

    def validate(self) -> None:
        """Reject parameter sets that would break an invariant of the rules."""
        self._check_positive()
        self._check_windows()
        self._check_encodable()
        self._check_economics()

    def _check_positive(self) -> None:
        """Counts, lengths and intervals a rule divides by or loops over are above zero."""
        positive = [
            "max_block_txs",
            "max_block_bytes",
            "max_tx_bytes",
            "halving_interval",
            "confirm_window",
            "epoch_length",
            "checkers_per_node",
            "max_validators",
            "app_min_instances",
            "app_price_period",
            "app_min_expire",
            "block_time_ms",
            "app_settle_interval",
            "app_refills_per_block",
            "app_settles_per_block",
            "app_expiries_per_block",
            "secrets_pending_blocks",
            "max_clock_drift_ms",
            "max_time_advance_ms",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise GenesisError(Reason.BAD_GENESIS, f"params.{name} must be positive")

    def _check_windows(self) -> None:
        """Evidence, unbonding, uptime and epoch windows that must nest."""
        if self.evidence_max_age + self.epoch_length >= self.unbonding_period:
            # A validator that unregisters stays in the set until the epoch ends, and gets
            # its collateral back unbonding_period blocks after unregistering: evidence
            # against its last votes must expire before that, or it escapes its slashing.
            raise GenesisError(
                Reason.BAD_GENESIS,
                "params.evidence_max_age + epoch_length must be below unbonding_period",
            )
        if self.down_cooldown < self.epoch_length:
            # The uptime tally fires once per target per epoch: a node back within the
            # epoch that marked it down could not be marked down again in that epoch.
            raise GenesisError(
                Reason.BAD_GENESIS, "params.down_cooldown must be at least epoch_length"
            )
        if self.checkers_per_node > MAX_CHECKERS:
            # A checker may have up to 2 * checkers_per_node targets (core/uptime.py
            # WALK_FACTOR) and one attestation carries at most tx.MAX_REPORTS = 64 reports.
            raise GenesisError(
                Reason.BAD_GENESIS, f"params.checkers_per_node must be at most {MAX_CHECKERS}"
            )

    def _check_encodable(self) -> None:
        """What the params let a chain write stays within what its decoders accept."""
        if not chain_id_fits(self.chain_id):
            raise GenesisError(
                Reason.BAD_GENESIS, f"params.chain_id is longer than {MAX_CHAIN_ID_BYTES} bytes"
            )
        if self.max_validators > MAX_VALIDATORS_HARD:
            # A validator set (and a commit's signatures) beyond this would be a state
            # record, and a commit, that no node decodes again.
            raise GenesisError(
                Reason.BAD_GENESIS, f"params.max_validators exceeds {MAX_VALIDATORS_HARD}"
            )
        if self.max_block_txs > MAX_ARRAY:
            raise GenesisError(Reason.BAD_GENESIS, f"params.max_block_txs exceeds {MAX_ARRAY}")

    def _check_economics(self) -> None:
        """Fees, slashing, rewards, app bounds and tier collaterals are consistent."""
        if self.base_fee > self.min_fee:
            # Every fee-paying tx pays at least min_fee, so the burn is always covered.
            raise GenesisError(Reason.BAD_GENESIS, "params.base_fee exceeds params.min_fee")
        if not 0 <= self.slash_bps <= 10_000:
            raise GenesisError(Reason.BAD_GENESIS, "params.slash_bps must be within 0..10000")
        shares = sum(self.tier(t).reward for t in Tier)
        if shares > self.block_subsidy:
            raise GenesisError(Reason.BAD_GENESIS, "tier rewards exceed the block subsidy")
        if not self.app_min_instances <= self.app_max_instances:
            raise GenesisError(Reason.BAD_GENESIS, "app_min_instances > app_max_instances")
        if not self.app_min_expire <= self.app_max_expire:
            raise GenesisError(Reason.BAD_GENESIS, "app_min_expire > app_max_expire")
        if not (self.cumulus.collateral <= self.nimbus.collateral <= self.stratus.collateral):
            raise GenesisError(Reason.BAD_GENESIS, "tier collaterals must grow with the tier")
        for tier in Tier:
            t = self.tier(tier)
            # A tier whose cap is below its minimum admits no node at all.
            if t.hardware_excess(t.min_cores, t.min_ram_mb, t.min_disk_gb):
                raise GenesisError(
                    Reason.BAD_GENESIS, f"params.{tier.name.lower()}: a max_* is below its min_*"
                )


def _load(cls: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise GenesisError(Reason.BAD_GENESIS, f"{where} must be an object")
    names = {name for name, _ in cls.CODEC.fields}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise GenesisError(Reason.BAD_GENESIS, f"{where}: unknown keys {unknown}")
    values: dict[str, Any] = {}
    # The record's declaration says what each key holds: a nested record, text or an integer.
    for name, check in cls.CODEC.fields:
        if name not in raw:
            raise GenesisError(Reason.BAD_GENESIS, f"{where}.{name} is missing")
        value = raw[name]
        if isinstance(check, Nested):
            values[name] = _load(check.cls, value, f"{where}.{name}")
        elif isinstance(check, Str | ChainId):
            if not isinstance(value, str) or not value:
                raise GenesisError(Reason.BAD_GENESIS, f"{where}.{name} must be a string")
            values[name] = value
        else:
            # Bounded like an amount, so that every sum of two stays encodable.
            if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
                raise GenesisError(
                    Reason.BAD_GENESIS, f"{where}.{name} must be an integer in 0..2**63-1"
                )
            values[name] = value
    return cls(**values)
