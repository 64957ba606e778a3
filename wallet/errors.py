"""The wallet's one error type: a stable reason code, a sentence, and an exit status.

The CLI prints every failure as one line, `error [reason]: message`, and exits with the
status below, so scripts can branch on either. Reasons from the node or the chain (for
example `app_exists`, `not_owner`) are passed through unchanged with exit status 7.
docs/wallet.md lists every code.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class WalletReason(StrEnum):
    """Reason codes the wallet itself produces."""

    NODE_UNREACHABLE = "node_unreachable"  # no answer from --node (refused, timeout, DNS)
    NODE_ERROR = "node_error"  # the node answered, but not with what the API promises
    NOT_FOUND = "not_found"  # no such tx / node / app / account on the node
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_SPEC = "invalid_spec"
    NONCE_CONFLICT = "nonce_conflict"
    TIMEOUT = "timeout"  # the tx was accepted but not confirmed within --timeout
    WRONG_PASSWORD = "wrong_password"
    KEYSTORE_TAMPERED = "keystore_tampered"
    KEYSTORE_CORRUPT = "keystore_corrupt"
    WEAK_PASSWORD = "weak_password"
    NO_WALLET = "no_wallet"
    WALLET_EXISTS = "wallet_exists"
    UNKNOWN_ACCOUNT = "unknown_account"
    BAD_AMOUNT = "bad_amount"
    BAD_ADDRESS = "bad_address"
    BAD_INPUT = "bad_input"  # any other argument that cannot be used
    WRONG_NETWORK = "wrong_network"  # the wallet's address prefix is not the node's
    NOT_OWNER = "not_owner"  # checked before sending: the account does not own the object
    NO_PARAMS = "no_params"  # offline command without a reachable node or a --genesis file
    ABORTED = "aborted"  # the user declined a confirmation
    # The light client's codes (fluxchain/light/errors.py) pass through unchanged:
    # proof_invalid, header_unverified, stale_header, trust_expired, no_trust_anchor,
    # malformed_answer; each names the node whose answer did not verify.


class ExitCode(IntEnum):
    """Process exit statuses (2 is click's usage error)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NODE_UNREACHABLE = 3
    INSUFFICIENT_FUNDS = 4
    INVALID_SPEC = 5
    NONCE_CONFLICT = 6
    REJECTED = 7  # refused by the node at submission, or by the chain in a block
    TIMEOUT = 8
    KEYSTORE = 9  # wrong password, tampered or unreadable keystore
    BUSY = 10  # the node still said 429 "come back later" after the wallet's retries


_EXIT_OF: dict[str, ExitCode] = {
    WalletReason.NODE_UNREACHABLE: ExitCode.NODE_UNREACHABLE,
    WalletReason.INSUFFICIENT_FUNDS: ExitCode.INSUFFICIENT_FUNDS,
    WalletReason.INVALID_SPEC: ExitCode.INVALID_SPEC,
    WalletReason.NONCE_CONFLICT: ExitCode.NONCE_CONFLICT,
    WalletReason.TIMEOUT: ExitCode.TIMEOUT,
    WalletReason.WRONG_PASSWORD: ExitCode.KEYSTORE,
    WalletReason.KEYSTORE_TAMPERED: ExitCode.KEYSTORE,
    WalletReason.KEYSTORE_CORRUPT: ExitCode.KEYSTORE,
}


class WalletError(Exception):
    """A failure the user can act on: `reason` is stable, `message` is for humans."""

    def __init__(self, reason: str, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = str(reason)
        self.message = message
        self.exit_code = (
            exit_code if exit_code is not None else _EXIT_OF.get(self.reason, ExitCode.ERROR)
        )


class NodeApiError(WalletError):
    """The node answered with an error body `{"error": {"reason", "message"}}`."""

    def __init__(self, status: int, reason: str, message: str, body: object = None) -> None:
        exit_code = {404: ExitCode.ERROR, 429: ExitCode.BUSY}.get(status)
        super().__init__(reason, message, exit_code=exit_code)
        self.status = status
        self.body = body  # the whole error body: a proven absence carries its proof


def rejected(reason: str, message: str) -> WalletError:
    """A tx the node or the chain refused, with the node's reason code."""
    return WalletError(reason, message, exit_code=_EXIT_OF.get(reason, ExitCode.REJECTED))
