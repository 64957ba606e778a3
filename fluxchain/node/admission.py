"""Tx admission: what a tx must pass before this node pools or relays it.

Every tx that reaches the node (the API, a peer's gossip, the node's own duties) goes
through `TxAdmission.admit`: decoded, every stateless check run, its signature verified.
A fee-free tx (a duty) is also checked against committed state (`check_duty`), since
nothing else makes a flood of them cost anything.

A tx committed lately is refused (`ALREADY_KNOWN`) before it is decoded or its signature
checked: at load a block often carries txs that reach a node by gossip or fetch only after
it committed them (a compact proposal's fill), and each of those cost a whole admission
before the mempool refused it (issue 22, wan17). Past that record (COMMITTED_TXS), a tx
whose nonce is below its sender's committed nonce is refused after its decode and its
cheap stateless rules, before its proofs (`check_proofs`: a NODE_REGISTER's key proofs
cost ~1.6 ms, rev22v) and its signature check (`_refuse_spent`): on a lagging node past
saturation, copies of txs a block check had verified came after both records had moved
on and were verified a second time (issue 24, vstore22). Sound for any body, signed or
forged: every kind must carry its sender's next nonce to apply
(`accounts.process_fee_and_nonce`) and a committed nonce only grows, so no tx at that
(sender, nonce) can ever commit; the committed layer is read, not a pending block's writes.
It costs an account read (the mempool reads the same account next, now cached) and, for
a stale tx only, the tx index read that named it `ALREADY_KNOWN` before: less than the
signature check it saves, and far less than the proofs. Block checks keep their order
(`check_stateless`, then the signature): this rule is admission's.

A tx that carries key proofs (a NODE_REGISTER, a key-rotating NODE_UPDATE) has its
signature (~50 us) checked before the committed state is asked whether it can apply as
offered (`_refuse_unprovable`, issue 24, adm23, rev23adm): its sender's committed balance
short of what it moves out (collateral or top-up, and fee), or a rotation of a node its
sender does not own, is refused before its proofs (~1.6 ms). Free unfunded keys otherwise
had each registration cost both proofs; the signature first makes a forged body naming a
funded sender `bad_signature` (punished) for the price of a transfer's check. Before its
signature, a rival of a pooled tx at its (sender, nonce) that does not outbid it is refused
`replacement_underpriced` (the pool's rule, `priced`): true of any body. One short of funds
is parked unproven (`park(proven=False)`): held apart (`_unproven`), never in `checked` or
`verified`, its proofs checked (`prove`) before it is offered to the mempool. Evidence (two
vote signatures) has its duty's committed-state checks (`check_duty`: the height, the
signer a validator then, not punished already) before them. A handler's dry-run refusal
(`check_duty`, `check_paid`) is a `TxStateError`: never proof of garbage.

The admitted txs are remembered by id (`checked`), so that the block that includes them
is neither decoded nor signature-checked a second time: the driver hands `checked` to
the chain's import (`Chain.execute_proposal`, `Chain.import_block`). Sound because the
id is the hash of every byte of the tx, signature included: a block tx with a
remembered id is those very bytes, already checked. It changes how much work a block
costs, never its result. A tx is remembered only once the mempool has judged it (`keep`):
pooled, or refused for a reason that can clear later (`parked`, below). A tx refused for
good (a spent nonce, committed long ago) or as mempool_full is not kept, so no flood of
refused txs pushes the pooled ones out.

A tx whose signature a block check verified (a proposal's tx this node had not admitted:
fetched for a compact proposal's rebuild, or in a full proposal's block) is remembered
too, apart and bounded (`note_verified`, VERIFIED_TXS, two blocks' bytes): its own TXS
frame, often still waiting in a peer's inbox when the proposal came, is then admitted for
a dict look-up instead of a decode and a second signature check (issue 24, conc20), and still goes
through the mempool, so the pool and the relay stay as they were. Same soundness as
`checked`: the bytes are the key, signature included. Only a block check that passed
whole records its txs, so a peer cannot make us keep a tx with a bad signature.

A tx whose signature this admission verified and that it does not hold (refused or let
go by the mempool: a full pool, a spent nonce; pushed out of the parked set; or not yet
judged) is remembered too, apart and bounded (`_unheld`, UNHELD_TXS, UNHELD_TXS_BYTES):
past saturation a pool refuses `mempool_full` what a peer's pool took, and the block
that carries it, or the copy the relay fetches again, verified its signature a second
time (issue 24, sig21). Block checks take every tx this node verified (`verified`: the
admitted ones, the block-checked ones, these) as they take the admitted ones; it is not
`checked`, which says what the node holds (`has_tx`, GET_TXS). A miss only costs a check.

A parked tx (issue 22, held18, held18b, held18c) is one the mempool refused (or a
proposer dropped) for a reason that a later commit of its sender's account can clear: its
bytes stay here, indexed by sender in nonce order, and after each committed block the
senders it changed are due (`note_changed`); `offer_parked` offers their parked txs to the
mempool again, round-robin across senders, each in nonce order until its first refusal,
at most PARKED_OFFERS a block, with no fetch, decode or signature check; and a sender's
parked txs are offered at once when a pooled tx fills its gap (`offer_parked_of`,
rev18c 3). Nothing else offers one: an announcement of it is held (a dict look-up) and
a peer's copy is refused with its last refusal, since neither changes what the mempool
would say. Parked txs are
bounded apart (PARKED_TXS, PARKED_TXS_BYTES), PARKED_PER_SENDER a sender (its lowest
nonces), and counted by origin (the peer that sent it, this node's clients, or this
node): past PARKED_TXS the oldest of the origin holding the most txs goes, past
PARKED_TXS_BYTES that of the origin holding the most bytes (rev20b), and this node's own
txs go only for its own.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from fluxchain.core.admission import check_fee_free, check_paid, committed_node_index
from fluxchain.core.crypto import sha256
from fluxchain.core.errors import Reason, TxError, TxStateError
from fluxchain.core.placement.ranking import NodeIndex
from fluxchain.core.records import Account, Node, account_key, node_key
from fluxchain.core.tx import (
    Tx,
    TxKind,
    carries_key_proof,
    check_proofs,
    check_signature,
    decode_unverified,
)
from fluxchain.node.origins import ByOrigin, Origin
from fluxchain.store.chain import Chain
from p2p.peer import BoundedSet

# Txs remembered as checked. Twice the mempool's default count: a tx is normally
# committed (and forgotten here) long before it ages out.
KNOWN_TXS: Final = 100_000
# Ids of committed txs remembered to refuse late copies unchecked: a few seconds of
# blocks at the devnet's 10,000 tx/s, a minute at the WAN's 500 (~5 MB).
COMMITTED_TXS: Final = 32_768
# Txs whose signatures a passed block check verified, kept to admit their late copies
# without a second check: two full blocks (max_block_txs is 10,000 on the devnet). Their
# bytes are bounded to two full blocks too (`VERIFIED_BLOCKS` x `max_block_bytes`), else
# a byzantine proposer aborting its rounds with blocks of large txs has every validator
# keep 20,000 x ~62 KB (rev20b).
VERIFIED_TXS: Final = 20_000
VERIFIED_BLOCKS: Final = 2
# Txs this admission verified and does not hold (issue 24, sig21): refused or let go
# (a full pool, a spent nonce...), pushed out of the parked set, or not yet judged by
# the mempool; kept so that a block that takes one, or a copy of it, does not verify its
# signature again. As many as the extra-txs store (a few seconds of a flood's refusals
# at the devnet's 10,000 tx/s) and as many bytes: anyone fills it for free (a key signs
# junk), oldest out first, and a tx pushed out only costs its next check.
UNHELD_TXS: Final = 32_768
UNHELD_TXS_BYTES: Final = 16 * 1024 * 1024
# Txs the mempool refused for a reason that can clear later, kept to offer them again: a
# tenth of KNOWN_TXS, so that a flood of them (unfunded senders sign for free) cannot
# push the pooled txs out of `checked`. One pushed out is fetched again when announced.
PARKED_TXS: Final = 10_000
# Their bytes, as the extra-txs store's: 10,000 transfers are ~2 MB, so the count binds
# for ordinary txs, but a peer's free unfunded txs near max_tx_bytes (~62 KB) would park
# ~620 MB by count alone (rev20b); past this the origin holding the most bytes goes.
PARKED_TXS_BYTES: Final = 16 * 1024 * 1024
# Parked txs of one sender, its lowest nonces: a sender's later txs wait on its earlier
# ones, and an offer stops at the sender's first refusal, so more would only let one key
# (a free, unfunded one) hold the parked set. A wallet rarely has more in flight unfunded.
PARKED_PER_SENDER: Final = 16
# Parked txs offered to the mempool again after one committed block; the rest wait for the
# next. An offer is a mempool `add` (an account read and a few dict operations: 1,000
# refused took 4.7 ms, held18b), so a block pays ~5 ms for them, and a whole PARKED_TXS
# drains in ten blocks.
PARKED_OFFERS: Final = 1_000

_EVIDENCE: Final = TxKind.EVIDENCE

# Refusals that a change of the sender's own account clears (funds, nonce, its pooled
# txs' room): the only ones parked, since only that change offers a parked tx again. A
# handler's other refusals depend on height, apps or nodes (rev18e 4): not parked. Nor
# is a tx refused replacement_underpriced, a client's or a peer's (api21 3): another tx
# holds its nonce in the pool, only one of the two can commit, and the pooled one is the
# one this node would propose; parked, the rival would cost memory a funded key fills
# at will (rivals of its own pooled txs) and answer its copies with a stale refusal
# once the pooled tx left. It is let go and fetched again when announced, as a
# mempool_full tx is, and a client is told of the conflict (400, rev20a 1).
SENDER_CLEARS: Final = frozenset(
    {
        Reason.INSUFFICIENT_FUNDS,
        Reason.NONCE_MISMATCH,
        Reason.NONCE_TOO_FAR,
        Reason.SENDER_LIMIT,
    }
)


@dataclass(frozen=True, slots=True)
class _Parked:
    """A parked tx's last refusal (not the exception: its traceback holds the frames, and
    with them a whole gossiped frame's bytes) and where it came from."""

    reason: Reason
    message: str
    origin: Origin

    def refusal(self) -> TxError:
        return TxError(self.reason, self.message)


class UnprovenError(TxError):
    """Admission's refusal, on committed state, of a tx whose key proofs it has not
    checked (`TxAdmission._refuse_unprovable`): `tx` is decoded and its signature
    verified, its proofs not. The caller may park it unproven (`TxAdmission.park`)."""

    def __init__(self, tx: Tx, refusal: TxError) -> None:
        super().__init__(refusal.reason, refusal.message)
        self.tx = tx


def _nonce_order(tx: Tx) -> tuple[int, int]:
    return tx.nonce, -tx.fee


class TxAdmission:
    """Decodes and checks incoming txs against one chain; remembers the ones it passed."""

    def __init__(
        self,
        chain: Chain,
        capacity: int = KNOWN_TXS,
        committed_capacity: int = COMMITTED_TXS,
        parked_capacity: int = PARKED_TXS,
        offers_per_block: int = PARKED_OFFERS,
        verified_capacity: int = VERIFIED_TXS,
        parked_bytes: int = PARKED_TXS_BYTES,
        unheld_capacity: int = UNHELD_TXS,
        unheld_bytes: int = UNHELD_TXS_BYTES,
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
        # The committed records' node index built while a block was pending, by height.
        self._committed_index: tuple[int, NodeIndex] | None = None
        # Kept txs the mempool refused for a reason that can clear.
        self._parked: dict[bytes, _Parked] = {}
        # The parked txs whose key proofs are unchecked (`park`, not `proven`), held here
        # and not in `_known`: never in `checked` or `verified`, so neither served to a
        # peer nor taken by a block check. Bounded with the parked set.
        self._unproven: dict[bytes, Tx] = {}
        self._parked_capacity = parked_capacity
        self._parked_max_bytes = parked_bytes
        self._offers_per_block = offers_per_block
        # The same txs by sender address (a block names the accounts it changed), each
        # sender's in nonce order (PARKED_PER_SENDER: sorted on insert at little cost).
        self._parked_of: dict[bytes, list[Tx]] = {}
        # The same ids by origin, oldest first: past capacity the largest origin loses one.
        self._of_origin = ByOrigin()
        # Senders whose parked txs are due to be offered again, in turn order.
        self._due: dict[bytes, None] = {}
        # Txs a passed block check verified and this node had not admitted (`note_verified`).
        self._verified = VerifiedTxs(
            verified_capacity, VERIFIED_BLOCKS * chain.params.max_block_bytes
        )
        # Txs this admission verified and does not hold (not kept yet, refused, let go or
        # pushed out of the parked set): a block check or a copy takes them unverified.
        self._unheld = VerifiedTxs(unheld_capacity, unheld_bytes)
        # What a block check need not verify again: every tx above (`checked`, `_verified`,
        # `_unheld`), by id. Only for block checks: `checked` alone says what is held.
        self.verified: Mapping[bytes, Tx] = _Verified(self._known, self._verified, self._unheld)
        # Signatures this admission verified, and the copies it took from `_verified` or
        # `_unheld` instead (each one signature verified here before): issue 24.
        self.signatures_verified = 0
        self.block_verified_taken = 0

    def admit(
        self, raw: bytes, *, keep: bool = True, priced: Callable[[Tx], None] | None = None
    ) -> Tx:
        """Decode `raw` and run every stateless check, signature included (TxError if
        one fails); remember the tx (unless not `keep`: the caller `keep`s it once the
        mempool has judged it), so that the block that includes it skips both. `priced`
        raises the pool's refusal of a same-nonce rival that does not outbid the pooled
        tx (`Mempool.check_replacement`): run before a key-proof carrier's checks.
        `UnprovenError` if a signed key-proof carrier cannot apply on the committed state."""
        tx = self._by_raw.get(raw)
        if tx is not None:  # gossip brings a tx again; the mempool refuses it cheaply
            return tx
        tx = self._verified.take(raw) or self._unheld.take(raw)
        if tx is not None:  # verified here before: no decode, no second check
            self.block_verified_taken += 1
            if keep:
                self.keep(tx)
            else:
                self._unheld.add(tx)  # until the mempool's verdict keeps it
            return tx
        params = self._chain.params
        tx_id = None
        if self._committed and len(raw) <= params.max_tx_bytes:
            tx_id = sha256(raw)  # decoding hashes it anyway: passed on, hashed once
            if tx_id in self._committed:
                raise TxError(Reason.ALREADY_KNOWN, "this tx is already confirmed")
        tx = decode_unverified(raw, params, tx_id)
        self._check(tx, priced)
        if keep:
            self.keep(tx)
        else:
            self._unheld.add(tx)
        return tx

    def _check(self, tx: Tx, priced: Callable[[Tx], None] | None) -> None:
        """`admit`'s checks of the decoded `tx`, cheapest and most refusing first: a spent
        nonce, a key-proof carrier's underpriced rival, the signature (~50 us), then the
        committed-state refusals before the proofs (~1.6 ms for key proofs)."""
        account = self._refuse_spent(tx)
        proven = carries_key_proof(tx)
        if proven:
            if tx.id in self._unproven:  # these very bytes, signature verified: parked
                raise UnprovenError(tx, self._parked[tx.id].refusal())
            if priced is not None:
                # A rival of a pooled tx at its nonce that does not outbid it: refused for
                # any body, signed or forged, so before any check (rev23adm 3).
                priced(tx)
        check_signature(tx)
        self.signatures_verified += 1
        if proven:
            try:
                self._refuse_unprovable(tx, account)
            except TxError as refusal:
                raise UnprovenError(tx, refusal) from None
        elif tx.kind is _EVIDENCE:
            # Its two vote signatures after its duty's state checks (a few reads): any key
            # signs two votes, so a free key's evidence of a height not reached, or of a
            # signer that was no validator, cost three signature checks, unpunished.
            self.check_duty(tx)
        check_proofs(tx, self._chain.params.chain_id)

    def _refuse_spent(self, tx: Tx) -> Account | None:
        """Raise if the decoded, unverified `tx`'s nonce is below its sender's committed
        nonce: no body at that (sender, nonce) can commit, so neither its proofs nor its
        signature is worth a check. `ALREADY_KNOWN` if it is the committed tx itself (its
        next copy is then refused after a hash), as the mempool's refusal was named before.
        Return the sender's committed account (None if it has none)."""
        chain = self._chain
        account: Account | None = chain.state.committed(account_key(tx.sender_address))
        if account is None or tx.nonce >= account.nonce:
            return account
        if chain.tx_location(tx.id) is not None:
            self.note_committed((tx.id,))
            raise TxError(Reason.ALREADY_KNOWN, "this tx is already confirmed")
        raise TxError(
            Reason.NONCE_MISMATCH, f"nonce {tx.nonce} is spent (account nonce {account.nonce})"
        )

    def _refuse_unprovable(self, tx: Tx, account: Account | None) -> None:
        """Raise if the decoded, unverified `tx`, a kind whose key proofs cost ~1.6 ms
        (`check_proofs`), cannot apply on the committed state as offered: its sender's
        balance short of what it moves out at least (a registration's collateral and fee,
        a key rotation's top-up and fee), or, for a rotation, a node its sender does not
        own (issue 24, adm23). Before this, a free unfunded key's registrations, each
        with its own keys and one VRF proof reused, cost both proofs before the mempool
        refused them `insufficient_funds`. The refusal is for now (the funds or the node
        may commit later): `admit` raises it as `UnprovenError`, which the service parks
        unproven (funds) or has the tx relay fetch again when announced."""
        params = self._chain.params
        payload = tx.payload
        balance = 0 if account is None else account.balance
        if tx.kind is TxKind.NODE_REGISTER:
            need = params.tier(payload.tier).collateral + tx.fee
        else:
            node: Node | None = self._chain.state.committed(node_key(payload.node_id))
            if node is None:
                raise TxError(Reason.UNKNOWN_NODE, f"no node {payload.node_id.hex()}")
            if node.owner != tx.sender_address:
                raise TxError(Reason.NOT_OWNER, "only the collateral owner can update this node")
            need = payload.top_up + tx.fee
        if balance < need:
            raise TxError(
                Reason.INSUFFICIENT_FUNDS,
                f"committed balance {balance} does not cover the {need} this needs at least",
            )

    def note_verified(self, txs: Iterable[Tx]) -> None:
        """A block check passed, these txs' signatures verified by it (txs not in
        `verified`): remember them, so that a copy of one costs no decode or second check.
        Bounded by count and bytes, oldest out first (not by proposer: a byzantine one's
        blocks push out honest ones' txs, whose copies then cost a check as before)."""
        for tx in txs:
            self._verified.add(tx)

    def verified_tx(self, tx_id: bytes) -> bytes | None:
        """The bytes of a tx verified here and not held (a block check verified it and it
        was not admitted since, or admission verified it and let it go), by id (a
        rebuild, or a peer's GET_PROPOSAL_TXS once the round aborted); None if none."""
        tx = self._verified.get(tx_id) or self._unheld.get(tx_id)
        return None if tx is None else tx.raw

    def keep(self, tx: Tx) -> None:
        """Remember the admitted `tx` as checked (the mempool pooled it): not parked."""
        if self._parked:
            self._unpark(tx.id)
        self._remember(tx)

    def _remember(self, tx: Tx) -> None:
        known = self._known
        if tx.id in known:
            return
        self._unheld.drop(tx.id)
        known[tx.id] = tx
        self._by_raw[tx.raw] = tx
        if len(known) > self._capacity:
            oldest = next(iter(known))
            self._unpark(oldest)  # before the pop: it reads the parked tx from `known`
            del self._by_raw[known.pop(oldest).raw]  # aged out: a block check verifies it

    def park(self, tx: Tx, refusal: TxError, origin: Origin, *, proven: bool = True) -> list[bytes]:
        """The mempool refused (or a proposer dropped) `tx` for a reason a commit can clear:
        keep its bytes to offer it again once its sender's account changes; `refusal`
        answers its copies. Not `proven`: admission refused the signed `tx` before its
        key proofs (`UnprovenError`), which `prove` checks before it is offered. Return the ids
        that this pushed out of the parked set (maybe `tx`'s own), no longer held: the
        caller has the tx relay fetch them again."""
        parked = self._parked
        entry = parked.get(tx.id)
        if entry is not None:  # offered and refused again: where it came from stays
            parked[tx.id] = _Parked(refusal.reason, refusal.message, entry.origin)
            return []
        if proven:
            self._remember(tx)
        else:
            self._unproven[tx.id] = tx
        parked[tx.id] = _Parked(refusal.reason, refusal.message, origin)
        self._of_origin.add(origin, tx.id, len(tx.raw))
        of_sender = self._parked_of.setdefault(tx.sender_address, [])
        bisect.insort(of_sender, tx, key=_nonce_order)
        out = []
        if len(of_sender) > PARKED_PER_SENDER:
            out.append(of_sender[-1].id)  # the sender's last nonce waits on the others
            self.forget(out)
        if len(parked) > self._parked_capacity:
            out.append(self._evict())
        while self._of_origin.total_bytes > self._parked_max_bytes:
            out.append(self._evict(by_bytes=True))
        return out

    def _evict(self, *, by_bytes: bool = False) -> bytes:
        """Forget the oldest parked tx of the origin holding the most txs (or bytes: a
        peer flooding unfunded txs pushes out its own); this node's own only if it holds
        them all."""
        victim = self._of_origin.victim(by_bytes=by_bytes)
        self.forget((victim,))
        return victim

    def _unpark(self, tx_id: bytes) -> None:
        entry = self._parked.pop(tx_id, None)
        if entry is None:
            return
        self._of_origin.remove(entry.origin, tx_id)
        tx = self._unproven.pop(tx_id, None) or self._known[tx_id]
        sender = tx.sender_address
        of_sender = self._parked_of[sender]
        of_sender.remove(tx)  # at most PARKED_PER_SENDER
        if not of_sender:
            del self._parked_of[sender]
            self._due.pop(sender, None)

    def is_parked(self, tx_id: bytes) -> bool:
        """Whether `tx_id` is kept only to be offered to the mempool again (not pooled)."""
        return tx_id in self._parked

    def is_unproven(self, tx_id: bytes) -> bool:
        """Whether `tx_id` is parked with its key proofs unchecked (`prove` before an offer)."""
        return tx_id in self._unproven

    def prove(self, tx: Tx) -> None:
        """Check the unproven parked `tx` before it is offered to the mempool: first the
        committed state (`_refuse_unprovable`: a sender's account change that still leaves
        it short keeps it parked, unproven, at no proof's cost), then its key proofs. Raise
        its refusal: parked still if it can clear with the sender's account, else let go
        (its signature is not kept as verified: the proofs of these bytes failed or were
        never run). Proven, it is held as an admitted parked tx."""
        account: Account | None = self._chain.state.committed(account_key(tx.sender_address))
        try:
            self._refuse_unprovable(tx, account)
        except TxError as refusal:
            if refusal.reason in SENDER_CLEARS:
                origin = self._parked[tx.id].origin
                self._parked[tx.id] = _Parked(refusal.reason, refusal.message, origin)
            else:
                self.forget((tx.id,))
            raise
        try:
            check_proofs(tx, self._chain.params.chain_id)
        except TxError:
            self.forget((tx.id,))
            raise
        del self._unproven[tx.id]
        self._remember(tx)

    def parked_refusal(self, tx_id: bytes) -> TxError | None:
        """The refusal of the parked `tx_id` at its last offer (None if not parked): its
        sender's account has not changed since, so the mempool would say it again."""
        entry = self._parked.get(tx_id)
        return None if entry is None else TxError(entry.reason, entry.message)

    def parked_origin(self, tx_id: bytes) -> Origin:
        """Where the parked `tx_id` came from (`park`'s origin)."""
        return self._parked[tx_id].origin

    def note_changed(self, addresses: Iterable[bytes] | None) -> None:
        """A block changed these accounts (None: any may have changed): their senders'
        parked txs are due to be offered again (`offer_parked`)."""
        parked_of, due = self._parked_of, self._due
        if not parked_of:
            return
        for address in parked_of.keys() if addresses is None else addresses:
            if address in parked_of:
                due[address] = None

    def offer_parked(self, offer: Callable[[Tx], object]) -> None:
        """Hand the due parked txs to `offer` (which `keep`s, `park`s or `forget`s each),
        at most PARKED_OFFERS: round-robin across due senders, each in nonce order until
        one stays parked (refused again: its later nonces cannot pass either). Senders
        not reached stay due for the next block."""
        due, parked_of, parked = self._due, self._parked_of, self._parked
        for _ in range(self._offers_per_block):
            if not due:
                return
            sender = next(iter(due))
            del due[sender]
            tx = parked_of[sender][0]
            offer(tx)
            if tx.id not in parked and sender in parked_of:
                due[sender] = None  # pooled (or refused for good): its next, in turn

    def has_parked(self, sender: bytes) -> bool:
        """Whether `sender` has parked txs."""
        return sender in self._parked_of

    def offer_parked_of(self, sender: bytes, offer: Callable[[Tx], object]) -> None:
        """Hand `sender`'s parked txs to `offer` at once, in nonce order until one stays
        parked (at most PARKED_PER_SENDER): its gap filled in the pool, so its later txs
        may fit now, and no block need change its account first (rev18c 3)."""
        parked_of, parked = self._parked_of, self._parked
        for _ in range(PARKED_PER_SENDER):
            of_sender = parked_of.get(sender)
            if not of_sender:
                return
            tx = of_sender[0]
            offer(tx)
            if tx.id in parked:
                return

    def committed_lately(self, tx_id: bytes) -> bool:
        """Whether `tx_id` is one of the txs committed lately (a copy of it is refused)."""
        return tx_id in self._committed

    def check_duty(self, tx: Tx) -> bytes:
        """For a fee-free tx: raise TxError unless it would apply in the next block on the
        committed state; return the node it is a duty of (`core.admission.check_fee_free`)."""
        chain = self._chain
        try:
            return check_fee_free(chain.state.committed_view(), chain.params, chain.height + 1, tx)
        except TxError as refusal:  # a handler's, on state: never proof of garbage
            raise TxStateError(refusal.reason, refusal.message) from None

    def check_paid(self, tx: Tx) -> None:
        """For a paid tx of its sender's next nonce: raise the executor's TxError unless
        it would apply in the next block on the committed state (`core.admission`)."""
        chain = self._chain
        if chain.state.has_pending():
            # A block's writes are pending: the committed records' index is built from
            # every load record, once a height (those records change only at a commit).
            cached = self._committed_index
            if cached is None or cached[0] != chain.height:
                cached = self._committed_index = (chain.height, committed_node_index(chain.state))
            index = cached[1]
        else:
            index = committed_node_index(chain.state)  # the state's own: no build
        try:
            check_paid(chain.state, chain.params, chain.height + 1, tx, index)
        except TxError as refusal:  # a handler's, on state: never proof of garbage
            raise TxStateError(refusal.reason, refusal.message) from None

    def note_committed(self, tx_ids: Sequence[bytes]) -> None:
        """These txs are committed: the chain will not meet them again, and a copy that
        comes now is refused unchecked."""
        self._committed.note_all(tx_ids)
        self._forget(tx_ids, committed=True)

    def forget(self, tx_ids: Iterable[bytes]) -> None:
        """These txs are not held here any more: refused for good or for now, or parked
        past a bound (the tx relay fetches them again). Their signatures stay verified
        (`_unheld`): a block that takes one, or a copy, does not check it again."""
        self._forget(tx_ids, committed=False)

    def _forget(self, tx_ids: Iterable[bytes], *, committed: bool) -> None:
        known, by_raw, parked, unheld = self._known, self._by_raw, self._parked, self._unheld
        if committed and (self._verified or unheld):
            tx_ids = list(tx_ids)
            for tx_id in tx_ids:
                self._verified.drop(tx_id)
                unheld.drop(tx_id)
        if known or parked:  # empty while syncing: nothing was admitted
            for tx_id in tx_ids:
                if parked:
                    self._unpark(tx_id)
                tx = known.pop(tx_id, None)
                if tx is not None:
                    del by_raw[tx.raw]
                    if not committed:
                        unheld.add(tx)


class VerifiedTxs:
    """Txs whose signatures this node verified, by id and by bytes (a copy is found
    without hashing it), oldest first, bounded by count and bytes: past either the oldest
    go, and a tx pushed out only costs its next check again."""

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self._by_id: OrderedDict[bytes, Tx] = OrderedDict()
        self._by_raw: dict[bytes, Tx] = {}
        self._capacity = capacity
        self._max_bytes = max_bytes
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._by_id

    def get(self, tx_id: bytes) -> Tx | None:
        return self._by_id.get(tx_id)

    def ids(self) -> Iterable[bytes]:
        return self._by_id.keys()

    def add(self, tx: Tx) -> None:
        """Remember `tx` (once: a tx checked again in another round counts once)."""
        by_id = self._by_id
        if tx.id in by_id:
            return
        by_id[tx.id] = tx
        self._by_raw[tx.raw] = tx
        self.size_bytes += len(tx.raw)
        while by_id and (len(by_id) > self._capacity or self.size_bytes > self._max_bytes):
            self.drop(next(iter(by_id)))

    def take(self, raw: bytes) -> Tx | None:
        """The tx of these bytes, forgotten here (the caller holds it now); None if none."""
        if not self._by_raw:
            return None
        tx = self._by_raw.get(raw)
        if tx is not None:
            self.drop(tx.id)
        return tx

    def drop(self, tx_id: bytes) -> None:
        tx = self._by_id.pop(tx_id, None)
        if tx is not None:
            del self._by_raw[tx.raw]
            self.size_bytes -= len(tx.raw)


class _Verified(Mapping[bytes, Tx]):
    """The txs a block check takes as decoded and verified, by id (`TxAdmission.verified`):
    the admitted ones, those a block check verified, those admission verified and let go.
    A read-only view: nothing is copied."""

    def __init__(
        self, known: Mapping[bytes, Tx], verified: VerifiedTxs, unheld: VerifiedTxs
    ) -> None:
        self._known = known
        self._verified = verified
        self._unheld = unheld

    def __getitem__(self, tx_id: bytes) -> Tx:
        tx = self._known.get(tx_id) or self._verified.get(tx_id) or self._unheld.get(tx_id)
        if tx is None:
            raise KeyError(tx_id)
        return tx

    def get(self, tx_id: bytes, default: Tx | None = None) -> Tx | None:  # type: ignore[override]
        return (
            self._known.get(tx_id)
            or self._verified.get(tx_id)
            or self._unheld.get(tx_id)
            or default
        )

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._known or tx_id in self._verified or tx_id in self._unheld

    def __len__(self) -> int:
        return len(self._known) + len(self._verified) + len(self._unheld)

    def __iter__(self) -> Iterator[bytes]:
        yield from self._known
        yield from self._verified.ids()
        yield from self._unheld.ids()
