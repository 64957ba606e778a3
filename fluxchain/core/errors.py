"""Errors of the ledger core, each carrying a stable machine-readable reason code.

The reason codes are part of the public interface: the API returns them, the wallet
prints them, and tests assert on them. Never rename a code; add new ones.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes for every rejection the ledger core can make."""

    # encoding
    NON_CANONICAL = "non_canonical"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_KIND = "unknown_kind"
    BAD_FIELD = "bad_field"
    # crypto
    BAD_SIGNATURE = "bad_signature"
    BAD_PUBKEY = "bad_pubkey"
    BAD_ADDRESS = "bad_address"
    # transactions, stateless
    WRONG_CHAIN = "wrong_chain"
    FEE_TOO_LOW = "fee_too_low"
    FEE_NOT_ZERO = "fee_not_zero"  # a fee-free kind (tx.FEE_FREE) carries a fee
    ZERO_AMOUNT = "zero_amount"
    SELF_TRANSFER = "self_transfer"
    # transactions, stateful
    NONCE_MISMATCH = "nonce_mismatch"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    NOT_OWNER = "not_owner"
    UNKNOWN_NODE = "unknown_node"
    NODE_KEY_IN_USE = "node_key_in_use"
    NODE_WRONG_STATE = "node_wrong_state"
    BENCHMARK_BELOW_TIER = "benchmark_below_tier"
    HARDWARE_ABOVE_TIER = "hardware_above_tier"  # declared beyond the tier's max_* caps
    CONFIRM_TOO_SOON = "confirm_too_soon"
    WRONG_EPOCH = "wrong_epoch"
    NOT_A_CHECKER = "not_a_checker"
    ALREADY_ATTESTED = "already_attested"
    DUPLICATE_TARGET = "duplicate_target"
    BAD_EVIDENCE = "bad_evidence"  # of a height not reached (or not past, in a block)
    BAD_EVIDENCE_VOTES = "bad_evidence_votes"  # votes that prove no equivocation: bytes only
    EVIDENCE_TOO_OLD = "evidence_too_old"
    DUPLICATE_EVIDENCE = "duplicate_evidence"
    KEY_TOMBSTONED = "key_tombstoned"  # slashed; its earlier votes are punished already
    DOWN_COOLDOWN = "down_cooldown"  # marked down too recently to confirm again
    NETWORK_FULL = "network_full"  # as many active nodes as nodes.max_active allows
    BELOW_TIER_COLLATERAL = "below_tier_collateral"  # slashed below its tier; top it up
    TOP_UP_TOO_LARGE = "top_up_too_large"  # collateral never exceeds the tier's
    BELOW_ACCOUNT_DEPOSIT = "below_account_deposit"  # a new account needs account_deposit
    RELOCATION_FEE_TOO_LOW = "relocation_fee_too_low"  # fee misses the instances it moves
    RELOCATED_THIS_WINDOW = "relocated_this_window"  # one location change per confirm window
    UNKNOWN_VALIDATOR = "unknown_validator"
    BAD_KEY_PROOF = "bad_key_proof"  # a node key without its holder's signature
    BAD_VRF_KEY = "bad_vrf_key"  # not a BLS key, or without its proof of possession
    DUTY_PENDING = "duty_pending"  # the mempool holds this node's duty of this kind already
    ENDPOINT_PORT_TAKEN = "endpoint_port_taken"  # an app the node hosts publishes it
    # apps
    INVALID_SPEC = "invalid_spec"
    APP_EXISTS = "app_exists"
    UNKNOWN_APP = "unknown_app"
    APP_WRONG_STATE = "app_wrong_state"
    EXPIRE_TOO_FAR = "expire_too_far"
    PINNED_NODE_NOT_ELIGIBLE = "pinned_node_not_eligible"  # pins name active, fitting nodes
    DOMAIN_TAKEN = "domain_taken"  # another live app owns a domain the spec names
    APP_NAME_HELD = "app_name_held"  # released by another owner's app, held for it a while
    # sealed app secrets (core/secrets.py)
    UNKNOWN_COMPONENT = "unknown_component"  # a secret for a component the spec lacks
    NO_SECRETS = "no_secrets"  # a seal for an app without secrets
    KEY_CHANGED = "key_changed"  # a seal of a data key the owner has replaced
    NOT_HOSTING = "not_hosting"  # a seal from a node that does not host the app now
    NO_SEALED_KEY = "no_sealed_key"  # a seal from a host that holds no key to seal
    NOT_PLACED = "not_placed"  # a seal for a node the chain does not place the app on
    ALREADY_SEALED = "already_sealed"  # the node holds the current key already
    REFUSED_SEALER = "refused_sealer"  # the target rejected a key of this sealer before
    SECRETS_DO_NOT_FIT = "secrets_do_not_fit"  # an update would orphan or shadow a secret
    # blocks
    BAD_HEIGHT = "bad_height"
    BAD_PREV_HASH = "bad_prev_hash"
    BAD_TIME = "bad_time"
    BAD_PROPOSER = "bad_proposer"
    BAD_TX_ROOT = "bad_tx_root"
    BAD_STATE_ROOT = "bad_state_root"
    BAD_EVENTS_ROOT = "bad_events_root"
    BAD_VALIDATORS_HASH = "bad_validators_hash"
    BAD_LAST_COMMIT = "bad_last_commit"
    BAD_REVEAL = "bad_reveal"  # not the proposer's VRF signature for the height
    BAD_COMMIT = "bad_commit"
    BLOCK_TOO_LARGE = "block_too_large"
    DUPLICATE_TX = "duplicate_tx"
    INVALID_TX = "invalid_tx"
    # consensus
    DOUBLE_SIGN = "double_sign"
    SIGNER_STATE = "signer_state"
    BAD_PROPOSAL = "bad_proposal"
    BAD_VOTE = "bad_vote"
    CONSENSUS_STOPPED = "consensus_stopped"  # the consensus task ended while the node ran
    # mempool
    ALREADY_KNOWN = "already_known"
    NONCE_TOO_FAR = "nonce_too_far"
    REPLACEMENT_UNDERPRICED = "replacement_underpriced"
    MEMPOOL_FULL = "mempool_full"
    SENDER_LIMIT = "sender_limit"
    # genesis and storage
    BAD_GENESIS = "bad_genesis"
    STORE_MISMATCH = "store_mismatch"  # stored data is damaged, missing or of another chain
    STORE_WRITE_FAILED = "store_write_failed"  # the disk refused a write (full, I/O error)
    RECORD_TOO_LARGE = "record_too_large"  # a state record the node could not load again


class FluxError(Exception):
    """Base of every ledger error: a reason code plus a sentence for humans."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class DecodeError(FluxError):
    """Bytes that are not the canonical encoding of a well-formed object."""


class TxError(FluxError):
    """A transaction that fails a stateless or stateful check."""


class TxStateError(TxError):
    """A tx refused by its handler's dry run on state (`core.admission.check_paid`,
    `check_fee_free`): never proof of garbage, whatever its reason, since an honest peer
    pools some txs without that dry run (beyond its sender's next nonce) or on another
    state (a block behind or ahead)."""


class TxHeldError(TxError):
    """A client's tx the mempool refused for now (`reason`) that the node holds to offer
    again once its sender's account changes (parked): it may still commit."""

    def __init__(self, tx_id: bytes, refusal: TxError) -> None:
        super().__init__(refusal.reason, refusal.message)
        self.tx_id = tx_id


class BlockError(FluxError):
    """A block, header or commit that fails validation."""


class StoreError(FluxError):
    """This node's own storage failed (a write the disk refused) or holds damaged data.

    Never a block's or a peer's fault, so never caught as a BlockError: the node cannot
    go on from storage it cannot trust, and stops (docs/storage.md, "When the disk fails").
    """


class GenesisError(FluxError):
    """A genesis file that cannot start a chain."""
