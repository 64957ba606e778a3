"""Held txs counted by where they came from, so that a bound pushes out a flooder's own.

Used by the parked set (`admission.TxAdmission`) and the extra-txs store
(`extra_txs.ExtraTxs`): past its bound each pushes out the oldest tx of the origin
holding the most, so a peer flooding junk (unfunded senders sign for free) pushes out
its own txs, not other peers'; this node's own go only when they are all that is held.
"""

from __future__ import annotations

# Where a held tx came from: a peer's id, or None for this node (its API, its duties).
Origin = str | None


class ByOrigin:
    """The ids of held txs by origin, oldest first."""

    def __init__(self) -> None:
        self._of: dict[Origin, dict[bytes, None]] = {}

    def add(self, origin: Origin, tx_id: bytes) -> None:
        self._of.setdefault(origin, {})[tx_id] = None

    def remove(self, origin: Origin, tx_id: bytes) -> None:
        of_origin = self._of[origin]
        del of_origin[tx_id]
        if not of_origin:
            del self._of[origin]

    def victim(self) -> bytes:
        """The id to push out: the oldest of the origin holding the most, this node's own
        only if it holds them all (some tx must be held)."""
        of = self._of
        peers = [origin for origin in of if origin is not None]
        return next(iter(of[max(peers or of, key=lambda origin: len(of[origin]))]))
