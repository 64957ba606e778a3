"""Tx admission: what a tx must pass before this node pools or relays it.

Every tx that reaches the node (the API, a peer's gossip, the node's own duties) goes
through `TxAdmission.admit`: decoded, every stateless check run, its signature verified.
A fee-free tx (a duty) is also checked against committed state (`check_duty`), since
nothing else makes a flood of them cost anything.

A tx committed lately is refused (`ALREADY_KNOWN`) before it is decoded or its signature
checked: at load a block often carries txs that reach a node by gossip or fetch only after
it committed them (a compact proposal's fill), and each of those cost a whole admission
before the mempool refused it (issue 22, wan17).

The admitted txs are remembered by id (`checked`), so that the block that includes them
is neither decoded nor signature-checked a second time: the driver hands `checked` to
the chain's import (`Chain.execute_proposal`, `Chain.import_block`). Sound because the
id is the hash of every byte of the tx, signature included: a block tx with a
remembered id is those very bytes, already checked. It changes how much work a block
costs, never its result. A tx is remembered only once the mempool has judged it (`keep`):
pooled, or refused for a reason that can clear later (`parked`, below). A tx refused for
good (a spent nonce, committed long ago) or as mempool_full is not kept, so no flood of
refused txs pushes the pooled ones out.

A parked tx (issue 22, held18) is not held for the tx relay: its bytes stay here, and
when it is announced, fetched or submitted again it is offered to the mempool again from
them, at most once per committed height (`offer_due`), with no new fetch, decode or
signature check. Parked txs are bounded apart (PARKED_TXS, oldest forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Final

from fluxchain.core.admission import check_fee_free
from fluxchain.core.crypto import sha256
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Tx, decode_tx
from fluxchain.store.chain import Chain
from p2p.peer import BoundedSet

# Txs remembered as checked. Twice the mempool's default count: a tx is normally
# committed (and forgotten here) long before it ages out.
KNOWN_TXS: Final = 100_000
# Ids of committed txs remembered to refuse late copies unchecked: a few seconds of
# blocks at the devnet's 10,000 tx/s, a minute at the WAN's 500 (~5 MB).
COMMITTED_TXS: Final = 32_768
# Txs the mempool refused for a reason that can clear later, kept to offer them again: a
# tenth of KNOWN_TXS, so that a flood of them (unfunded senders sign for free) cannot
# push the pooled txs out of `checked`. One pushed out is fetched again when announced.
PARKED_TXS: Final = 10_000


class TxAdmission:
    """Decodes and checks incoming txs against one chain; remembers the ones it passed."""

    def __init__(
        self,
        chain: Chain,
        capacity: int = KNOWN_TXS,
        committed_capacity: int = COMMITTED_TXS,
        parked_capacity: int = PARKED_TXS,
    ) -> None:
        self._chain = chain
        self._capacity = capacity
        self._known: OrderedDict[bytes, Tx] = OrderedDict()
        # The same txs by their bytes: a tx met again is found without hashing it (a dict
        # hashes bytes in a fraction of a SHA-256, and `decode_tx` computes the id anyway).
        self._by_raw: dict[bytes, Tx] = {}
        self.checked: Mapping[bytes, Tx] = MappingProxyType(self._known)
        # Ids of the txs committed lately, oldest first (`committed_capacity`): a copy
        # that comes after its block is refused without a decode or a signature check.
        self._committed = BoundedSet(committed_capacity)
        # Kept txs the mempool refused for a reason that can clear, oldest first, with the
        # committed height they were last offered to it at (`offer_due`).
        self._parked: OrderedDict[bytes, int] = OrderedDict()
        self._parked_capacity = parked_capacity
        # Told each newly parked id: the tx relay stops taking it as received (node.py).
        self.on_park: Callable[[bytes], None] | None = None

    def admit(self, raw: bytes, *, keep: bool = True) -> Tx:
        """Decode `raw` and run every stateless check, signature included (TxError if
        one fails); remember the tx (unless not `keep`: the caller `keep`s it once the
        mempool has judged it), so that the block that includes it skips both."""
        tx = self._by_raw.get(raw)
        if tx is not None:  # gossip brings a tx again; the mempool refuses it cheaply
            return tx
        params = self._chain.params
        tx_id = None
        if self._committed and len(raw) <= params.max_tx_bytes:
            tx_id = sha256(raw)  # decoding hashes it anyway: passed on, hashed once
            if tx_id in self._committed:
                raise TxError(Reason.ALREADY_KNOWN, "this tx is already confirmed")
        tx = decode_tx(raw, params, tx_id)
        if keep:
            self.keep(tx)
        return tx

    def keep(self, tx: Tx) -> None:
        """Remember the admitted `tx` as checked (the mempool pooled it): not parked."""
        self._parked.pop(tx.id, None)
        known = self._known
        if tx.id in known:
            return
        known[tx.id] = tx
        self._by_raw[tx.raw] = tx
        if len(known) > self._capacity:
            oldest = known.popitem(last=False)[1]
            del self._by_raw[oldest.raw]
            self._parked.pop(oldest.id, None)

    def park(self, tx: Tx, height: int) -> None:
        """The mempool refused (or evicted) `tx` at committed `height` for a reason that can
        clear: keep its bytes, not held, to offer it again after a later commit."""
        self.keep(tx)
        parked = self._parked
        if tx.id not in parked and self.on_park is not None:
            self.on_park(tx.id)
        parked[tx.id] = height
        if len(parked) > self._parked_capacity:
            self.forget((next(iter(parked)),))

    def is_parked(self, tx_id: bytes) -> bool:
        """Whether `tx_id` is kept only to be offered to the mempool again (not held)."""
        return tx_id in self._parked

    def offer_due(self, tx_id: bytes, height: int) -> Tx | None:
        """The parked tx `tx_id` if it was last offered before committed `height` (noted as
        offered now), else None: announcing it again costs a dict look-up, nothing more."""
        last = self._parked.get(tx_id)
        if last is None or last >= height:
            return None
        self._parked[tx_id] = height
        return self._known[tx_id]

    def committed_lately(self, tx_id: bytes) -> bool:
        """Whether `tx_id` is one of the txs committed lately (a copy of it is refused)."""
        return tx_id in self._committed

    def check_duty(self, tx: Tx) -> bytes:
        """For a fee-free tx: raise TxError unless it would apply in the next block on the
        committed state; return the node it is a duty of (`core.admission.check_fee_free`)."""
        chain = self._chain
        return check_fee_free(chain.state.committed_view(), chain.params, chain.height + 1, tx)

    def note_committed(self, tx_ids: Sequence[bytes]) -> None:
        """These txs are committed: the chain will not meet them again, and a copy that
        comes now is refused unchecked."""
        self._committed.note_all(tx_ids)
        self.forget(tx_ids)

    def forget(self, tx_ids: Iterable[bytes]) -> None:
        """These txs are not held here any more: committed (`note_committed`), or parked
        past PARKED_TXS (the tx relay fetches them again)."""
        known, by_raw, parked = self._known, self._by_raw, self._parked
        if known:  # empty while syncing: nothing was admitted
            for tx_id in tx_ids:
                tx = known.pop(tx_id, None)
                if tx is not None:
                    del by_raw[tx.raw]
                    if parked:
                        parked.pop(tx_id, None)
