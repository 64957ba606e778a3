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
(GET_PROPOSAL_TXS), which both check each tx by its id; and, one exception, a duty
refused `duty_pending` at the door is taken out and offered to the pool again when a
block's recheck evicts its sender's duties (a node's duty signed again behind a gap can
reach this pool before this pool's recheck drops the gapped copy: p2p25 1). Such a duty
takes its (sender, nonce) from whatever is kept there (a settled report, a gapped copy the
pool let go: each would shadow it, rev25p 1), and only such a duty is taken back: a copy
the pool let go never replaces one, nor is offered again. Nothing else here is pooled,
relayed, announced or served to GET_TXS, and `has_tx` does not count it, so the tx relay
fetches such a tx again as before. A block that takes one checks it in full (it is not in
`checked`). Only txs a block could take now go in (the caller checks: the sender's
balance covers the fee, the nonce in the pool's window), since an unfunded key signs
junk for free (rev19b 3). One tx a (sender, nonce), as a block takes (a second replaces
it only if it is a duty refused `duty_pending`, or outbids it, as the pool's
replace-by-fee, and the kept one is no such duty), at most `max_per_sender` nonces
a sender, and a sender's spent nonces dropped when a block changes its account: a funded
key's distinct txs at one nonce cost a signature each but hold one entry (rev19d 2).
Bounded by count and bytes, counted by origin: past a bound the oldest tx of the origin
holding the most (txs or bytes, as the bound) goes (`origins`), so a peer flooding junk
pushes out its own, never grows the store.

A client's tx (counted under its client's origin, `origins.client_origin`) lands here
only when this node let it go: refused at the door (or a parked copy of it let go by
that refusal), parked and at once pushed out of the parked set (answered refused: a
parked one is `held`), or pooled, gossiped and then evicted or dropped. The first was
never gossiped by this node, so it commits only if the client also sent it to another
node whose proposal names it; the second may still be pooled by the peers it reached
and commit from theirs, which this node's answer says (`evicted`, api21 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from fluxchain.core.tx import Tx
from fluxchain.node.mempool import DEFAULT_MAX_PER_SENDER, outbids
from fluxchain.node.origins import ByOrigin, Origin

# A few seconds of a flood's refusals at the devnet's 10,000 tx/s (a pool refuses what a
# block interval brings past its room), ~6 MiB of transfers.
EXTRA_TXS: Final = 32_768
EXTRA_TXS_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Kept:
    raw: bytes
    origin: Origin
    sender: bytes
    nonce: int
    fee: int
    pending: bool  # a duty refused `duty_pending`: taken back once its slot frees


class ExtraTxs:
    """Recently let-go checked txs' bytes, by id, one a (sender, nonce), bounded by count
    and bytes, by origin."""

    def __init__(
        self,
        max_txs: int = EXTRA_TXS,
        max_bytes: int = EXTRA_TXS_BYTES,
        max_per_sender: int = DEFAULT_MAX_PER_SENDER,
    ) -> None:
        self._max_txs = max_txs
        self._max_bytes = max_bytes
        self._max_per_sender = max_per_sender
        self._kept: dict[bytes, _Kept] = {}
        self._at: dict[bytes, dict[int, bytes]] = {}  # sender -> nonce -> id kept
        self._of_origin = ByOrigin()

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, tx: Tx, origin: Origin = None, *, pending: bool = False) -> None:
        """Keep `tx`'s bytes, from `origin` (a peer's id, a client's, None: this node),
        unless its (sender, nonce) holds one it does not outbid or its sender holds
        `max_per_sender`; past either bound the origin holding the most (txs or bytes)
        loses its oldest.

        `pending`: `tx` is a duty (never a report: late25p 1) the pool refused
        `duty_pending` at the door, kept to be taken back (`take`): it replaces whatever its
        (sender, nonce) holds, a marked one too, by arrival: the last marked duty to
        arrive wins, not the last signed (a tx carries no signing time, so this store
        cannot order signatures; in practice the later arrival is a duty signed again
        behind a gap, or afresh after a restart). No copy the pool let go outbids it.
        Only its sender signs at that nonce, so only its own entry goes, and a
        replacement never grows the store (one entry a (sender, nonce)); each costs a tx
        that passed every check, its signature and the duty's admission check on state
        included (a node's or validator's key), and that found its duty's slot taken: the
        churn is one entry swapped a tx this node checks in full. An unmarked tx never
        replaces a marked one, whatever its fee: it is a copy some pool let go that anyone
        may relay (a stale paid tx of the sender at that nonce), and in the duty's place
        it would lose the duty its recheck takes back (hard26 2)."""
        kept = self._kept
        sender, nonce = tx.sender_address, tx.nonce
        if tx.id in kept or len(tx.raw) > self._max_bytes:
            return
        nonces = self._at.get(sender, {})
        previous = nonces.get(nonce)
        if previous is not None:
            held = kept[previous]
            if not pending and (held.pending or not outbids(held.fee, tx.fee)):
                return
            self._remove(previous)
        elif len(nonces) >= self._max_per_sender:
            return
        kept[tx.id] = _Kept(tx.raw, origin, sender, nonce, tx.fee, pending)
        self._at.setdefault(sender, {})[nonce] = tx.id
        self._of_origin.add(origin, tx.id, len(tx.raw))
        while len(kept) > self._max_txs:
            self._remove(self._of_origin.victim())
        while self._of_origin.total_bytes > self._max_bytes:
            self._remove(self._of_origin.victim(by_bytes=True))

    def drop_spent(self, senders: Iterable[bytes] | None, nonce_of: Callable[[bytes], int]) -> None:
        """Drop the kept txs of `senders` (None: every sender) whose nonce is below their
        account's `nonce_of(sender)`: a block spent it, none can take them."""
        at = self._at
        for sender in list(at) if senders is None else senders:
            nonces = at.get(sender)
            if nonces is None:
                continue
            floor = nonce_of(sender)
            for tx_id in [tx_id for nonce, tx_id in nonces.items() if nonce < floor]:
                self._remove(tx_id)

    def get(self, tx_id: bytes) -> bytes | None:
        """The bytes of the kept tx `tx_id`, or None."""
        entry = self._kept.get(tx_id)
        return None if entry is None else entry.raw

    def take(self, sender: bytes, nonce: int) -> tuple[bytes, Origin] | None:
        """Remove and return the bytes and origin of `sender`'s kept tx at `nonce` if it is
        a duty the pool refused `duty_pending` (`add(pending=True)`), offered again once
        its slot frees (`NodeService._take_kept_duties`); a copy the pool let go (settled,
        gapped, replaced) stays for rebuilds only."""
        tx_id = self._at.get(sender, {}).get(nonce)
        if tx_id is None or not self._kept[tx_id].pending:
            return None
        entry = self._kept[tx_id]
        self._remove(tx_id)
        return entry.raw, entry.origin

    def _remove(self, tx_id: bytes) -> None:
        entry = self._kept.pop(tx_id)
        self._of_origin.remove(entry.origin, tx_id)
        nonces = self._at[entry.sender]
        del nonces[entry.nonce]
        if not nonces:
            del self._at[entry.sender]
