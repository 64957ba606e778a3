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
costs, never its result. A tx the mempool refused as full is forgotten at once: it is
not held, and the tx relay, which asks `Node.has_tx`, must be free to fetch it again.
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


class TxAdmission:
    """Decodes and checks incoming txs against one chain; remembers the ones it passed."""

    def __init__(
        self, chain: Chain, capacity: int = KNOWN_TXS, committed_capacity: int = COMMITTED_TXS
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

    def admit(self, raw: bytes) -> Tx:
        """Decode `raw` and run every stateless check, signature included (TxError if
        one fails); remember the tx, so that the block that includes it skips both."""
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
        known = self._known
        known[tx.id] = tx
        self._by_raw[tx.raw] = tx
        if len(known) > self._capacity:
            del self._by_raw[known.popitem(last=False)[1].raw]
        return tx

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
        """These txs are not held here any more: committed (`note_committed`), or refused for a
        full mempool (the tx relay fetches them again, `NodeService.submit`)."""
        known, by_raw = self._known, self._by_raw
        if known:  # empty while syncing: nothing was admitted
            for tx_id in tx_ids:
                tx = known.pop(tx_id, None)
                if tx is not None:
                    del by_raw[tx.raw]
