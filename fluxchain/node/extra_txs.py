"""Txs this node checked and then let go, kept only to rebuild compact proposals.

BIP152's "extra txns for reconstruction" (Bitcoin Core `-blockreconstructionextratxn`).
Under a flood the four pools fill, each first with its own clients' txs, and a full pool
refuses (`mempool_full`) or evicts the rest: then every proposal names hundreds to
thousands of txs that the other validators checked, refused and forgot, each proposal
needs a fetch from a proposer busy with the same flood, and a failed fetch costs a round
(issue 24, session 19: 30 s without a block; docs/performance.md, eighth devnet pass).

What goes in: the bytes of a tx that passed every stateless check (its signature
included) and was then refused or dropped for a reason that can clear (a full pool, a
nonce not yet reached, a sender's limit...), never a committed one. What reads it: only
the rebuild of a compact proposal and the answer to a peer's request for a proposal's txs
(GET_PROPOSAL_TXS), which both check each tx by its id. Nothing here is pooled, relayed,
announced or served to GET_TXS, and `has_tx` does not count it, so the tx relay fetches
such a tx again as before. A block that takes one checks it in full (it is not in
`checked`). Only txs a block could take now go in (the caller checks: the sender's
balance covers the fee at the committed state, the nonce in the pool's window), since an
unfunded key signs junk for free (rev19b 3). Bounded by count and bytes, counted by
origin: past a bound the oldest tx of the origin holding the most goes (`origins`), so a
peer flooding junk pushes out its own, never grows the store.
"""

from __future__ import annotations

from typing import Final

from fluxchain.core.tx import Tx
from fluxchain.node.origins import ByOrigin, Origin

# A few seconds of a flood's refusals at the devnet's 10,000 tx/s (a pool refuses what a
# block interval brings past its room), ~6 MiB of transfers.
EXTRA_TXS: Final = 32_768
EXTRA_TXS_BYTES: Final = 16 * 1024 * 1024


class ExtraTxs:
    """Recently let-go checked txs' bytes, by id, bounded by count and bytes, by origin."""

    def __init__(self, max_txs: int = EXTRA_TXS, max_bytes: int = EXTRA_TXS_BYTES) -> None:
        self._max_txs = max_txs
        self._max_bytes = max_bytes
        self._kept: dict[bytes, tuple[bytes, Origin]] = {}
        self._of_origin = ByOrigin()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, tx: Tx, origin: Origin = None) -> None:
        """Keep `tx`'s bytes, from `origin` (a peer's id, None: this node); past either
        bound the origin holding the most loses its oldest."""
        kept = self._kept
        if tx.id in kept or len(tx.raw) > self._max_bytes:
            return
        kept[tx.id] = (tx.raw, origin)
        self._of_origin.add(origin, tx.id)
        self._bytes += len(tx.raw)
        while len(kept) > self._max_txs or self._bytes > self._max_bytes:
            victim = self._of_origin.victim()
            raw, of = kept.pop(victim)
            self._of_origin.remove(of, victim)
            self._bytes -= len(raw)

    def get(self, tx_id: bytes) -> bytes | None:
        """The bytes of the kept tx `tx_id`, or None."""
        entry = self._kept.get(tx_id)
        return None if entry is None else entry[0]
