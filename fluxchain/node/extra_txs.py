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
`checked`). Bounded by count and bytes, oldest out first: a peer flooding valid junk only
pushes out older entries, never grows the store.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from fluxchain.core.tx import Tx

# A few seconds of a flood's refusals at the devnet's 10,000 tx/s (a pool refuses what a
# block interval brings past its room), ~6 MiB of transfers.
EXTRA_TXS: Final = 32_768
EXTRA_TXS_BYTES: Final = 16 * 1024 * 1024


class ExtraTxs:
    """A FIFO of recently let-go checked txs' bytes, by id, bounded by count and bytes."""

    def __init__(self, max_txs: int = EXTRA_TXS, max_bytes: int = EXTRA_TXS_BYTES) -> None:
        self._max_txs = max_txs
        self._max_bytes = max_bytes
        self._raws: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._raws)

    def add(self, tx: Tx) -> None:
        """Keep `tx`'s bytes (newest last); the oldest go past either bound."""
        raws = self._raws
        if tx.id in raws or len(tx.raw) > self._max_bytes:
            return
        raws[tx.id] = tx.raw
        self._bytes += len(tx.raw)
        while len(raws) > self._max_txs or self._bytes > self._max_bytes:
            self._bytes -= len(raws.popitem(last=False)[1])

    def get(self, tx_id: bytes) -> bytes | None:
        """The bytes of the kept tx `tx_id`, or None."""
        return self._raws.get(tx_id)
