"""The light client's one error type and its stable reason codes (docs/light-client.md)."""

from __future__ import annotations

from enum import StrEnum


class LightReason(StrEnum):
    """Why an answer, or a header under it, was not believed. Never rename a code."""

    PROOF_INVALID = "proof_invalid"  # a state proof or Merkle path fails, or is missing
    HEADER_UNVERIFIED = "header_unverified"  # the header's commit does not earn trust
    STALE_HEADER = "stale_header"  # the answer is proven against a header too old to use
    TRUST_EXPIRED = "trust_expired"  # every header this client trusts is past its period
    NO_TRUST_ANCHOR = "no_trust_anchor"  # nothing to start from: no genesis, no header
    MALFORMED_ANSWER = "malformed_answer"  # not the API's shape, or not canonical bytes
    # Two nodes served different headers at one height, each signed by more than 1/3 of
    # the power this client trusted: one of them is forged by validators it trusted. The
    # client stops trusting the chain until the user anchors again (CometBFT's
    # ErrLightClientAttack, docs/light-client.md §6).
    LIGHT_CLIENT_ATTACK = "light_client_attack"


class LightError(Exception):
    """An answer the light client refuses: a stable reason code and a sentence."""

    def __init__(self, reason: LightReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
