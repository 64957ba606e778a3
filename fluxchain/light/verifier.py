"""The rules that let a header be trusted, given one that already is: pure, no I/O.

After CometBFT's light client (light/verifier.go), in our own terms:

* A *light block* is a header, the commit that finalized it, and the validator set that
  signed it. It is well formed when the header is of our chain, the set hashes to the
  header's `validators_hash`, and the commit is for this header's height and hash.
* **Adjacent** (height T + 1 signed by the set that T committed to as the next one, or
  by T's own set): the header links to T by `prev_hash` and more than 2/3 of the set
  signed its commit.
* **Skipping** (any later height, or T + 1 with a set T is not known to have committed
  to): more than 1/3 of T's set's power signed the new commit, so at least one validator
  that T's trust covers vouches for it, and more than 2/3 of the new set signed it. When
  the 1/3 is missing the caller bisects (`client.py`).
* The trusted header must be younger than the trust period, which must be shorter than
  the unbonding period: after it, the validators that vouched could have unbonded and
  could sign anything unpunished. A header from further ahead than `max_clock_drift_ms`
  of the local clock is refused.

The next set: our headers name only the set that signs them; the set that signs the next
block is committed inside the state root (key `v`, core/epochs.py), and a node proves
state only at its head. Every proven answer carries that entry, so a trusted block the
client saw as a node's head knows its next set (`next_validators`) and the adjacent rule
is CometBFT's own; for any other block, a new set at T + 1 must carry over more than 1/3
of the old one's power (docs/light-client.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxchain.core.block import Header
from fluxchain.core.crypto import verify as verify_signature
from fluxchain.core.errors import BlockError
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit, VoteType, vote_digest
from fluxchain.light.errors import LightError, LightReason


@dataclass(frozen=True, slots=True)
class LightBlock:
    """A header, the commit that finalized it, and the validator set that signed it."""

    header: Header
    commit: Commit
    validators: ValidatorSet

    @property
    def height(self) -> int:
        return self.header.height


@dataclass(frozen=True, slots=True)
class TrustedBlock:
    """What the client trusts at one height: the block's hash and time, and the set that
    signed it, and its parent's hash (to walk back by hash links). The genesis anchor is
    height 0: the genesis hash and time, the set that signs block 1, no parent."""

    height: int
    hash: bytes
    time_ms: int
    validators: ValidatorSet
    prev_hash: bytes = b""
    # The set that signs block height + 1, proven against this block's state root; None
    # when not known (the genesis anchor knows it: the genesis set signs block 1).
    next_validators: ValidatorSet | None = None

    @classmethod
    def of(cls, block: LightBlock) -> TrustedBlock:
        header = block.header
        return cls(header.height, header.hash(), header.time_ms, block.validators, header.prev_hash)


@dataclass(frozen=True, slots=True)
class TrustOptions:
    """The chain and how long a verified header may vouch for later ones."""

    chain_id: str
    trust_period_ms: int
    max_clock_drift_ms: int = 10_000  # CometBFT's default is 10 s as well


class NotEnoughTrustError(LightError):
    """The trusted set's signers on a commit hold 1/3 of its power or less: bisect."""

    def __init__(self, message: str) -> None:
        super().__init__(LightReason.HEADER_UNVERIFIED, message)


def is_expired(trusted: TrustedBlock, options: TrustOptions, now_ms: int) -> bool:
    """True once `trusted` is as old as the trust period."""
    return trusted.time_ms + options.trust_period_ms <= now_ms


def check_light_block(block: LightBlock, chain_id: str) -> None:
    """Raise unless the header is of `chain_id`, the set is the one it names, and the
    commit is for this very header."""
    header = block.header
    if header.chain_id != chain_id:
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {header.height} is of chain {header.chain_id!r}, not {chain_id!r}",
        )
    if block.validators.hash() != header.validators_hash:
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"the validator set served for height {header.height} is not the one its header names",
        )
    if block.commit.height != header.height or block.commit.block_hash != header.hash():
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"the commit served for height {header.height} is for another block",
        )


def power_signed_by(commit: Commit, validators: ValidatorSet, chain_id: str) -> int:
    """The power of `validators` whose valid precommit signatures `commit` carries."""
    digest = vote_digest(
        chain_id, VoteType.PRECOMMIT, commit.height, commit.round, commit.block_hash
    )
    power = 0
    for pubkey, signature in commit.signatures:
        weight = validators.power_of(pubkey)
        if weight and verify_signature(pubkey, digest, signature):
            power += weight
    return power


def verify(
    trusted: TrustedBlock, untrusted: LightBlock, options: TrustOptions, now_ms: int
) -> None:
    """Raise LightError unless `untrusted` may be trusted given `trusted` (NotEnoughTrustError
    when only the 1/3 carry-over is missing: the caller may bisect)."""
    header = untrusted.header
    if is_expired(trusted, options, now_ms):
        raise LightError(
            LightReason.TRUST_EXPIRED,
            f"the trusted header at height {trusted.height} is older than the trust period",
        )
    check_light_block(untrusted, options.chain_id)
    if header.height <= trusted.height:
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {header.height} is not above the trusted height {trusted.height}",
        )
    # Block 1 may carry the genesis time; every later block is strictly later.
    if header.time_ms < trusted.time_ms or (trusted.height and header.time_ms == trusted.time_ms):
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {header.height} is not later than the trusted header {trusted.height}",
        )
    if header.time_ms > now_ms + options.max_clock_drift_ms:
        raise LightError(
            LightReason.HEADER_UNVERIFIED, f"header {header.height} is dated in the future"
        )
    adjacent = header.height == trusted.height + 1
    if adjacent and header.prev_hash != trusted.hash:
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {header.height} does not follow the trusted header {trusted.height}",
        )
    next_set = trusted.validators if trusted.next_validators is None else trusted.next_validators
    if adjacent and trusted.next_validators is not None and untrusted.validators != next_set:
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {header.height} is signed by another set than the one header"
            f" {trusted.height} committed to",
        )
    if not adjacent or untrusted.validators != next_set:
        carried = power_signed_by(untrusted.commit, trusted.validators, options.chain_id)
        if not trusted.validators.exceeds_one_third(carried):
            raise NotEnoughTrustError(
                f"header {header.height} is signed by {carried} of the"
                f" {trusted.validators.total_power} power trusted at height {trusted.height};"
                " more than 1/3 is needed"
            )
    try:
        untrusted.commit.verify(
            options.chain_id, untrusted.validators, header.height, header.hash()
        )
    except BlockError as exc:
        raise LightError(
            LightReason.HEADER_UNVERIFIED, f"header {header.height}: {exc.message}"
        ) from None


def verify_backwards(trusted: TrustedBlock | Header, older: Header, chain_id: str) -> None:
    """Raise unless `older` is the header just below `trusted` (its hash is trusted's
    `prev_hash`): a hash link needs no signature and no trust period."""
    if older.chain_id != chain_id or older.height + 1 != trusted.height:
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {older.height} is not the parent of trusted header {trusted.height}",
        )
    if older.hash() != trusted.prev_hash:
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {older.height} is not the one trusted header {trusted.height} links to",
        )
