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

A parked tx (issue 22, held18, held18b) is one the mempool refused (or evicted) for a
reason that a later block can clear: its bytes stay here, indexed by sender, and after
each committed block the parked txs of the accounts it changed are offered to the mempool
again (`note_changed`, `take_offers`), in nonce order, at most PARKED_OFFERS a block, with
no fetch, decode or signature check. Nothing else offers it: an announcement of it is
held (a dict look-up) and a peer's copy is refused with its last refusal, since neither
changes what the mempool would say. Parked txs are bounded apart (PARKED_TXS, oldest
forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
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
# Parked txs offered to the mempool again after one committed block; the rest wait for the
# next. An offer is a mempool `add` (an account read and a few dict operations: 1,000
# refused took 4.7 ms, held18b), so a block pays ~5 ms for them, and a whole PARKED_TXS
# drains in ten blocks.
PARKED_OFFERS: Final = 1_000


class TxAdmission:
    """Decodes and checks incoming txs against one chain; remembers the ones it passed."""

    def __init__(
        self,
        chain: Chain,
        capacity: int = KNOWN_TXS,
        committed_capacity: int = COMMITTED_TXS,
        parked_capacity: int = PARKED_TXS,
        offers_per_block: int = PARKED_OFFERS,
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
        # refusal a peer's copy of one gets until it is offered again (not the exception:
        # its traceback holds the frames, and with them a whole gossiped frame's bytes).
        self._parked: OrderedDict[bytes, tuple[Reason, str]] = OrderedDict()
        self._parked_capacity = parked_capacity
        self._offers_per_block = offers_per_block
        # The same txs by sender address: a block names the accounts it changed.
        self._parked_of: dict[bytes, dict[bytes, Tx]] = {}
        # Parked ids to offer again (their sender's account changed), in order: each once.
        self._offers: dict[bytes, None] = {}

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
        self._unpark(tx.id)
        self._remember(tx)

    def _remember(self, tx: Tx) -> None:
        known = self._known
        if tx.id in known:
            return
        known[tx.id] = tx
        self._by_raw[tx.raw] = tx
        if len(known) > self._capacity:
            oldest = known.popitem(last=False)[1]
            del self._by_raw[oldest.raw]
            self._unpark(oldest.id)

    def park(self, tx: Tx, refusal: TxError) -> None:
        """The mempool refused (or evicted) `tx` for a reason that can clear: keep its bytes
        to offer it again once its sender's account changes; `refusal` answers its copies."""
        self._remember(tx)
        parked = self._parked
        if tx.id not in parked:
            self._parked_of.setdefault(tx.sender_address, {})[tx.id] = tx
        parked[tx.id] = (refusal.reason, refusal.message)
        if len(parked) > self._parked_capacity:
            self.forget((next(iter(parked)),))

    def _unpark(self, tx_id: bytes) -> None:
        if self._parked.pop(tx_id, None) is None:
            return
        self._offers.pop(tx_id, None)
        tx = self._known[tx_id]
        of_sender = self._parked_of[tx.sender_address]
        del of_sender[tx_id]
        if not of_sender:
            del self._parked_of[tx.sender_address]

    def is_parked(self, tx_id: bytes) -> bool:
        """Whether `tx_id` is kept only to be offered to the mempool again (not pooled)."""
        return tx_id in self._parked

    def parked_refusal(self, tx_id: bytes) -> TxError | None:
        """The refusal of the parked `tx_id` at its last offer (None if not parked): its
        sender's account has not changed since, so the mempool would say it again."""
        refusal = self._parked.get(tx_id)
        return None if refusal is None else TxError(*refusal)

    def note_changed(self, addresses: Iterable[bytes] | None) -> None:
        """A block changed these accounts (None: any may have changed): their parked txs
        are due to be offered again (`take_offers`), in nonce order."""
        parked_of, offers = self._parked_of, self._offers
        if not parked_of:
            return
        senders = parked_of.keys() if addresses is None else addresses
        for address in list(senders):
            txs = parked_of.get(address)
            if txs is not None:
                for tx in sorted(txs.values(), key=lambda tx: (tx.nonce, -tx.fee)):
                    offers[tx.id] = None

    def take_offers(self) -> list[Tx]:
        """The parked txs due to be offered again after a block (at most PARKED_OFFERS),
        oldest due first; the caller offers each, which `keep`s, `park`s or `forget`s it."""
        offers, known, limit = self._offers, self._known, self._offers_per_block
        taken: list[Tx] = []
        while offers and len(taken) < limit:
            tx_id = next(iter(offers))
            del offers[tx_id]
            taken.append(known[tx_id])
        return taken

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
        """These txs are not held here any more: committed (`note_committed`), refused
        for good, or parked past PARKED_TXS (the tx relay fetches them again)."""
        known, by_raw, parked = self._known, self._by_raw, self._parked
        if known:  # empty while syncing: nothing was admitted
            for tx_id in tx_ids:
                if parked:
                    self._unpark(tx_id)
                tx = known.pop(tx_id, None)
                if tx is not None:
                    del by_raw[tx.raw]
