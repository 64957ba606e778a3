"""Errors of the consensus layer, carrying the core's stable reason codes."""

from __future__ import annotations

from typing import Final

from fluxchain.core.errors import FluxError, Reason

DOUBLE_SIGN: Final = Reason.DOUBLE_SIGN
SIGNER_STATE: Final = Reason.SIGNER_STATE


class ConsensusError(FluxError):
    """A consensus message or signer request that cannot be accepted."""


class DoubleSignError(ConsensusError):
    """The signer guard refused a request that could conflict with an earlier signature."""

    def __init__(self, message: str) -> None:
        super().__init__(DOUBLE_SIGN, message)
