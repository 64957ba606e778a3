"""Errors of the consensus layer, carrying the core's stable reason codes."""

from __future__ import annotations

from typing import Final

from fluxchain.core.errors import FluxError, Reason

# Codes the core does not define yet; the getattr falls back to the nearest existing code
# until `Reason.DOUBLE_SIGN` and `Reason.SIGNER_STATE` are added there.
DOUBLE_SIGN: Final[Reason] = getattr(Reason, "DOUBLE_SIGN", Reason.BAD_SIGNATURE)
SIGNER_STATE: Final[Reason] = getattr(Reason, "SIGNER_STATE", Reason.STORE_MISMATCH)


class ConsensusError(FluxError):
    """A consensus message or signer request that cannot be accepted."""


class DoubleSignError(ConsensusError):
    """The signer guard refused a request that could conflict with an earlier signature."""

    def __init__(self, message: str) -> None:
        super().__init__(DOUBLE_SIGN, message)
