"""The mempool: valid-looking txs waiting for a block, bounded and ordered.

Admission (`add`): the tx passed `decode_tx` (stateless checks and signature) before it
gets here, and a paid kind other than a transfer of its sender's next nonce passed its
handler dry-run on committed state (`core.admission.check_paid`, the caller runs it);
against the latest committed state its nonce must not be spent and not be more than
`max_per_sender` ahead, and the sender's balance must cover its pooled txs up to this
one's nonce together (`cost`: each one's fee, plus a transfer's amount), this one
included: else insufficient_funds. The later txs it leaves uncovered are evicted, highest
nonce first (`take_evicted`): so txs relayed ahead of a gap never price out the nonce
that fills it (rev18c 4). One tx per (sender, nonce): a second one replaces the first
only if it pays at least `REPLACE_BUMP_PERCENT` more (replace-by-fee), so nobody can
churn the pool for free; a paid tx replacing a duty frees the duty's slot.

Executable and gapped txs (pool18): a sender's txs from its account nonce on, without a
hole, are executable; the ones behind a missing nonce are gapped and can never go into a
block until it comes. Gapped txs pay nothing while they wait, so they are second class:
at most `max_gapped_per_sender` a sender (else sender_limit) and `max_gapped` in all.
When the pool (by count or bytes, or the gapped share) is full, a new tx first evicts
gapped txs of other senders — an executable tx whatever their fees, a gapped one only if
it pays more — and a gapped tx never evicts an executable one; then an executable tx
evicts the lowest-paying txs at the tails of other senders' queues (`_tails`, a heap: no
walk of the senders), until the count and the bytes fit, at most one a sender, if it pays
more than those it evicts together, else it is refused; a replacement that grows the
pool does the same with the fee it adds (red23b 1, 3).
A drop (a proposer's, `remove`) or an evicted duty gaps the sender's later txs: those
past its gapped quota leave, tail first. So an account can hold pool room only for txs
its balance pays for and that can execute; 50 accounts holding one fee each no longer
fill the pool (docs/security.md, "Unaffordable or gapped txs hold the pool").

Fee-free duties (NODE_CONFIRM, UPTIME_ATTEST, EVIDENCE, APP_SECRETS_SEAL and _REJECT) come
with the node they are a duty of, found by `fluxchain.core.admission.check_fee_free`
against committed state (the caller runs it). They have their own quota (`max_duties`,
`max_duty_bytes`), so paid txs cannot crowd them out nor they the paid ones; at most one is
pending per (kind, node):
a second one is refused `duty_pending` (the first is as good, and refusing keeps the pool
independent of arrival order), except that evidence of an earlier offence replaces the
pending evidence against the same offender, and evidence its block can include now
replaces pending evidence stuck behind other txs of its sender (`_replaces`: an
offender cannot park a report of its own to shield an equivocation), and a duty its
sender signed again at the nonce gap its pending one waits behind replaces it
(`_fills_gap`: a node whose own report left the pools re-signs its duties behind it,
and every pool holding the gapped copy refused the new one until its recheck, rev24p A);
and a duty must
carry its sender's next free nonce, so no gap can keep it waiting. After every committed
block `recheck` runs the same check again and evicts the duties that no longer pass.

Ordering (`candidates`): fee-free node duties first — the rules cap them at one per node
per window/epoch and the network's health depends on them — then by fee, highest first,
each sender's txs in nonce order from its account nonce (a gap stops that sender).

After each committed block, `settle` (`update`) drops what the block included and what
its new nonces made stale, and, when a sender's balance no longer covers its pooled
txs, its txs from the tail until it does; `recheck_paid` then evicts each sender's next
tx of a paid non-transfer kind that its handler, dry-run on the new state, refuses (on
every node, not only the proposer that drops it: rev18c 2), at most
`recheck_per_block` senders a block, round-robin (rev18e 3). Before its dry-run at
admission, the caller runs `precheck`: the refusals `add` makes cheaply (pooled already,
nonce, replace-by-fee, sender limit), so a copy or an underpriced variant costs no
handler run (rev18e 1). Every refusal is a TxError with a reason code.
All of this costs a sender's txs at worst, or the recheck's budget, never a walk of the
pool (`_gapped` lists the senders that have gapped txs).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Final

from fluxchain.core.errors import Reason, TxError
from fluxchain.core.records import Account
from fluxchain.core.tx import FEE_FREE, Tx, TxKind

REPLACE_BUMP_PERCENT: Final = 10
DEFAULT_MAX_TXS: Final = 50_000  # ten full blocks of transfers
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_PER_SENDER: Final = 1_000
# Two duties per node (a confirm and an attestation) for 10,000 nodes; evidence is rarer.
DEFAULT_MAX_DUTIES: Final = 20_000
DEFAULT_MAX_DUTY_BYTES: Final = 16 * 1024 * 1024
# Gapped txs a sender may pool: relay fetches a burst in batches (GET_TXS) that can answer
# out of order, so a wallet's or an exchange's burst often arrives tail first; 16 cut a
# 100-tx burst to 66 (rev18c 3). geth's per-account queued limit, 64: a burst's later
# batch, and still few enough that each sender holds little room for nothing (the global
# share, `max_gapped`, bounds them all). Past it they are refused sender_limit and parked,
# and offered again as soon as the sender's gap fills (NodeService) or its account changes.
DEFAULT_MAX_GAPPED_PER_SENDER: Final = 64
# Gapped txs in all: a tenth of the pool, so that they never keep out executable txs.
DEFAULT_MAX_GAPPED: Final = DEFAULT_MAX_TXS // 10
# Stateful senders' heads dry-run again after one committed block (`recheck_paid`), the
# rest in turn at the next ones. A dry-run costs 25 us (APP_EXTEND) to ~200 us (an
# APP_REGISTER's placement), so 256 cost 6-50 ms a block, a small share of a second's
# block; a head the proposer meets first is dropped there anyway (`note_dropped`).
DEFAULT_RECHECK_PAID_PER_BLOCK: Final = 256
# An enum member read through its class costs ~50 ns on Python 3.11 (the metaclass's
# lookup), a module global ~5: the pool reads the kind several times a tx (issue 24, cpu19).
_TRANSFER: Final = TxKind.TRANSFER

AccountLookup = Callable[[bytes], Account]
DutyCheck = Callable[[Tx], bytes]  # the node a fee-free tx is a duty of; TxError if invalid
PaidCheck = Callable[[Tx], None]  # TxError unless a paid tx applies on the committed state


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_txs: int = DEFAULT_MAX_TXS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_per_sender: int = DEFAULT_MAX_PER_SENDER
    max_duties: int = DEFAULT_MAX_DUTIES  # fee-free txs, counted apart from `max_txs`
    max_duty_bytes: int = DEFAULT_MAX_DUTY_BYTES
    max_gapped_per_sender: int = DEFAULT_MAX_GAPPED_PER_SENDER
    max_gapped: int = DEFAULT_MAX_GAPPED
    recheck_per_block: int = DEFAULT_RECHECK_PAID_PER_BLOCK


class Mempool:
    """Pending txs by sender and nonce, with a global id index and a duty index."""

    def __init__(self, limits: MempoolLimits | None = None) -> None:
        self.limits = limits or MempoolLimits()
        self._by_sender: dict[bytes, dict[int, Tx]] = {}
        self._by_id: dict[bytes, Tx] = {}
        self._bytes = 0  # of paid txs
        # (kind, node id) -> the pending fee-free tx of that node and kind, and back
        self._duties: dict[tuple[int, bytes], Tx] = {}
        self._duty_of: dict[bytes, tuple[int, bytes]] = {}
        self._duty_bytes = 0
        # sender -> its account nonce at the last `update`: no pooled nonce of it is lower
        # (admission refuses a spent nonce, and nonces only grow), so the next `update`
        # looks at the nonces from there to the new one, not at the sender's whole queue.
        # It is also where the sender's executable run starts.
        self._floor: dict[bytes, int] = {}
        # sender -> the first nonce from its floor on that it has no pooled tx at: its txs
        # below are executable, the ones above gapped.
        self._run: dict[bytes, int] = {}
        self._cost: dict[bytes, int] = {}  # sender -> what its pooled txs spend together
        # sender -> how many of its txs are gapped, for the senders that have any; in the
        # order they got them, the first evicted first
        self._gapped: dict[bytes, int] = {}
        self._gapped_total = 0
        self._evicted: list[tuple[Tx, TxError]] = []  # see `take_evicted`
        # sender -> how many of its pooled txs are paid kinds other than transfers, whose
        # handlers can refuse on state, in `recheck_paid`'s turn order
        self._stateful: dict[bytes, int] = {}
        # sender -> its highest pooled nonce (its tail, which eviction takes: no gap), and
        # the paid tails by (fee, id) in a heap, so that a full pool finds the cheapest
        # without a walk of every sender (red23b 1). An entry whose tail changed since is
        # stale: skipped (and dropped) when met at the top, and the heap is rebuilt from
        # `_tail` when stale entries outnumber the live ones (`_push_tail`).
        self._tail: dict[bytes, int] = {}
        self._tails: list[tuple[int, bytes, bytes, int]] = []  # (fee, id, sender, nonce)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._by_id

    @property
    def size_bytes(self) -> int:
        return self._bytes + self._duty_bytes

    @property
    def duty_count(self) -> int:
        """Fee-free txs pending (they count against `max_duties`, not `max_txs`)."""
        return len(self._duties)

    @property
    def gapped_count(self) -> int:
        """Txs waiting behind a nonce gap (at most `max_gapped`)."""
        return self._gapped_total

    def executable(self, tx: Tx) -> bool:
        """Whether pooled `tx` is in its sender's executable run (no gap before it)."""
        return tx.nonce < self._run.get(tx.sender_address, 0)

    def get(self, tx_id: bytes) -> Tx | None:
        return self._by_id.get(tx_id)

    def add(self, tx: Tx, account_of: AccountLookup, duty_node: bytes | None = None) -> Tx | None:
        """Admit `tx`; return the tx it replaced or evicted, if any. Raise TxError if refused.

        A fee-free tx needs `duty_node`: what `check_fee_free` returned for it.
        """
        if tx.id in self._by_id:
            raise TxError(Reason.ALREADY_KNOWN, "this tx is already in the mempool")
        if tx.kind in FEE_FREE:
            if duty_node is None:
                raise ValueError("a fee-free tx is admitted with the node it is a duty of")
            return self._add_duty(tx, account_of, duty_node)
        account = account_of(tx.sender_address)
        self._check_window(tx, account)
        return self._add_paid(tx, account)

    def precheck(self, tx: Tx, account: Account) -> None:
        """Raise the TxError `add` would for paid `tx` on its cheap checks (pooled already,
        nonce window, replace-by-fee, sender limit; `account`: its sender's committed one),
        so a caller dry-runs only a tx these pass (rev18e 1)."""
        if tx.id in self._by_id:
            raise TxError(Reason.ALREADY_KNOWN, "this tx is already in the mempool")
        self._check_window(tx, account)
        queue = self._by_sender.get(tx.sender_address, {})
        previous = queue.get(tx.nonce)
        if previous is not None:
            _check_bump(previous, tx)
        elif len(queue) >= self.limits.max_per_sender:
            raise TxError(Reason.SENDER_LIMIT, "this sender has too many pending txs")

    def check_replacement(self, tx: Tx) -> None:
        """Raise `add`'s REPLACEMENT_UNDERPRICED if a paid tx of `tx`'s sender holds its
        nonce and `tx` does not outbid it: a dict look-up, true of any body (signed or
        forged), so admission asks it before a key-proof carrier's checks (rev23adm 3)."""
        previous = self._by_sender.get(tx.sender_address, {}).get(tx.nonce)
        if previous is not None and previous.id != tx.id and tx.kind not in FEE_FREE:
            _check_bump(previous, tx)

    def _check_window(self, tx: Tx, account: Account) -> None:
        """Raise unless paid `tx`'s nonce is unspent and within `max_per_sender` ahead."""
        if tx.nonce < account.nonce:
            raise TxError(
                Reason.NONCE_MISMATCH, f"nonce {tx.nonce} is spent (account nonce {account.nonce})"
            )
        if tx.nonce >= account.nonce + self.limits.max_per_sender:
            raise TxError(
                Reason.NONCE_TOO_FAR,
                f"nonce {tx.nonce} is too far ahead of the account's {account.nonce}",
            )

    def _add_paid(self, tx: Tx, account: Account) -> Tx | None:
        """`add` for a paid tx whose nonce is in the sender's window."""
        sender = tx.sender_address
        queue = self._by_sender.get(sender, {})
        previous = queue.get(tx.nonce)
        if previous is not None:
            _check_bump(previous, tx)
        # check: the balance covers the sender's pooled txs up to this one's nonce together,
        # not each alone: else one fee's worth of balance would hold a thousand txs' room,
        # all but one of which can never pay (pool18); and not the later ones too, or txs
        # relayed ahead of a gap would price out the nonce that fills it (rev18c 4)
        tx_cost = cost(tx)
        total = self._cost.get(sender, 0) + tx_cost - (0 if previous is None else cost(previous))
        if account.balance < total:
            need = tx_cost + sum(cost(t) for n, t in queue.items() if n < tx.nonce)
            if account.balance < need:
                raise TxError(
                    Reason.INSUFFICIENT_FUNDS,
                    f"balance {account.balance} does not cover the {need} this sender's "
                    "pooled txs up to this one spend with it",
                )
        if previous is not None:
            self._take_place(previous, tx, account)
            return previous
        if len(queue) >= self.limits.max_per_sender:
            raise TxError(Reason.SENDER_LIMIT, "this sender has too many pending txs")
        if not queue:
            self._floor[sender] = self._run[sender] = account.nonce
        gapped = tx.nonce > self._run[sender]
        # check: few txs a sender behind a gap: they hold room and pay nothing while waiting
        if gapped and self._gapped.get(sender, 0) >= self.limits.max_gapped_per_sender:
            self._forget_if_empty(sender)
            raise TxError(
                Reason.SENDER_LIMIT,
                f"{self.limits.max_gapped_per_sender} txs of this sender wait behind a nonce "
                "gap already",
            )
        victims = self._room_for(tx, gapped)
        if victims is None:
            self._forget_if_empty(sender)
            raise _full_error()
        self._evict(victims[1:])
        if victims:
            self._remove(victims[0])
        self._insert(tx, tx_cost)
        if self._cost[sender] > account.balance:  # the tail past this tx's nonce: uncovered
            self._evicted.extend(self._unpaid(sender, account.balance))
        return victims[0] if victims else None

    def _take_place(self, previous: Tx, tx: Tx, account: Account) -> None:
        """Put paid `tx` in the place of `previous` (same sender and nonce, outbid); evict
        the sender's tail past it that the balance no longer covers."""
        sender = tx.sender_address
        # check: the pool's bounds hold after the replacement too (red23b 3): a duty's
        # place frees nothing of the paid quota, a paid one its bytes and fee
        replaced = None if previous.kind in FEE_FREE else previous
        victims = self._room_for(tx, tx.nonce > self._run[sender], replaced)
        if victims is None:
            raise _full_error()
        self._evict(victims)
        if previous.kind in FEE_FREE:
            # a duty's slot and quota go with it (rev18c 1); its nonce is in the run
            self._remove(previous)
            if sender not in self._by_sender:  # it was the sender's only tx
                self._floor[sender] = self._run[sender] = account.nonce
            self._insert(tx)
        else:
            self._replace(previous, tx)
        if self._cost[sender] > account.balance:
            self._evicted.extend(self._unpaid(sender, account.balance))

    def take_evicted(self) -> list[tuple[Tx, TxError]]:
        """The txs that the last adds evicted besides the one `add` returned (a sender's
        tail its balance no longer covers), with why; the caller parks or forgets them."""
        out = self._evicted
        if out:  # else the same empty list: no allocation per add
            self._evicted = []
        return out

    def _room_for(self, tx: Tx, gapped: bool, replaced: Tx | None = None) -> list[Tx] | None:
        """The txs that the pool evicts so that `tx` fits its count, its bytes and its
        gapped share (`gapped`: `tx` waits behind a gap; `replaced`: the paid tx whose
        place it takes), [] if it fits, or None if it cannot: first gapped txs of other
        senders, whatever their fees for an executable `tx`; then, for an executable `tx`
        only, the cheapest tails. Together they pay less than `tx` (than the fee it adds
        to its place): an eviction never lowers the fees the pool holds, so one large tx
        cannot push out many small ones for one fee more (red23b 3). Never `tx`'s
        sender's, and at most one tx a sender: a pool of few senders with many small
        txs may refuse a large one."""
        limits = self.limits
        count = len(self._by_id) - len(self._duties) - limits.max_txs
        size = self._bytes + len(tx.raw) - limits.max_bytes
        share = self._gapped_total - limits.max_gapped if gapped else -1
        budget = tx.fee
        if replaced is None:
            count += 1
            share += 1
        else:
            size -= len(replaced.raw)
            budget -= replaced.fee
        if count <= 0 and size <= 0 and share <= 0:
            return []
        victims: list[Tx] = []
        for victim in self._gapped_victims(tx.sender_address):
            if gapped:
                if victim.fee >= budget:
                    continue  # a dearer gapped tx keeps its place; a cheaper one may not (rev23b 2)
                budget -= victim.fee
            victims.append(victim)
            count, size, share = count - 1, size - len(victim.raw), share - 1
            if count <= 0 and size <= 0 and share <= 0:
                return victims
        if gapped:
            return None
        return self._tail_victims(tx.sender_address, budget, count, size, victims)

    def _tail_victims(
        self, sender: bytes, budget: int, count: int, size: int, victims: list[Tx]
    ) -> list[Tx] | None:
        """`victims` and the cheapest tails of other senders than `sender` and theirs, that
        free `count` txs and `size` bytes, paying less than `budget` together; None if
        none do (`_room_for`). The heap's entries looked at go back."""
        senders = {sender, *(t.sender_address for t in victims)}
        popped: list[tuple[int, bytes, bytes, int]] = []
        try:
            while self._tails:
                entry = heapq.heappop(self._tails)
                fee, tx_id, other, nonce = entry
                victim = (
                    self._by_sender[other].get(nonce) if self._tail.get(other) == nonce else None
                )
                if victim is None or victim.id != tx_id:
                    continue  # stale: dropped
                popped.append(entry)
                if fee >= budget:
                    return None  # the heap's order: every tail left pays as much
                if other in senders:
                    # The newcomer's own tail (evicting it would gap the newcomer), or a
                    # sender whose gapped tx is a victim already: passed over (rev23b 1).
                    continue
                budget -= fee
                victims.append(victim)
                senders.add(other)
                count, size = count - 1, size - len(victim.raw)
                if count <= 0 and size <= 0:
                    return victims
            return None
        finally:
            for entry in popped:
                heapq.heappush(self._tails, entry)

    def _evict(self, victims: list[Tx]) -> None:
        """Take out `victims` for room (`_room_for`), noted for `take_evicted`."""
        for victim in victims:
            self._remove(victim)
            self._evicted.append((victim, _full_error()))

    def _add_duty(self, tx: Tx, account_of: AccountLookup, node_id: bytes) -> Tx | None:
        slot = (int(tx.kind), node_id)
        pending = self._duties.get(slot)
        account = account_of(tx.sender_address)
        queue = self._by_sender.get(tx.sender_address, {})
        expected = self.next_nonce(tx.sender_address, account.nonce)
        # check: one pending duty per (kind, node), unless this is evidence includable
        # sooner or of an earlier offence (see `_replaces`), or the same sender's duty
        # that fills the gap its pending one waits behind (`_fills_gap`)
        if (
            pending is not None
            and not _replaces(tx, pending, account_of)
            and not _fills_gap(tx, pending, expected)
        ):
            raise TxError(
                Reason.DUTY_PENDING,
                f"a {tx.kind.name.lower()} for node {node_id.hex()} is pending already",
            )
        # The replaced evidence's own nonce is free for its sender's new evidence.
        reuses_nonce = (
            pending is not None
            and pending.sender_address == tx.sender_address
            and pending.nonce == tx.nonce
        )
        # check: the sender's next free nonce, so that nothing before it can hold it back
        if tx.nonce != expected and not reuses_nonce:
            if tx.nonce in queue:  # the same nonce as a pending tx: fees cannot outbid
                raise TxError(
                    Reason.REPLACEMENT_UNDERPRICED, f"nonce {tx.nonce} is pending already"
                )
            raise TxError(
                Reason.NONCE_MISMATCH, f"a duty must use the sender's next nonce {expected}"
            )
        if account.balance < tx.fee:
            raise TxError(
                Reason.INSUFFICIENT_FUNDS, f"balance {account.balance} does not cover fee {tx.fee}"
            )
        if len(queue) >= self.limits.max_per_sender and not reuses_nonce:
            raise TxError(Reason.SENDER_LIMIT, "this sender has too many pending txs")
        freed = (1, len(pending.raw)) if pending is not None else (0, 0)
        if (
            len(self._duties) - freed[0] >= self.limits.max_duties
            or self._duty_bytes - freed[1] + len(tx.raw) > self.limits.max_duty_bytes
        ):
            raise TxError(Reason.MEMPOOL_FULL, "the mempool's quota of fee-free duties is full")
        if pending is not None:
            self._remove(pending)  # its sender's later txs, if any, wait for `recheck`
        if tx.sender_address not in self._by_sender:
            self._floor[tx.sender_address] = self._run[tx.sender_address] = account.nonce
        self._insert(tx)
        self._duties[slot] = tx
        self._duty_of[tx.id] = slot
        return pending

    def recheck(self, account_of: AccountLookup, check: DutyCheck) -> list[tuple[Tx, TxError]]:
        """After a committed block: evict every duty that `check` (the admission check on
        the new state) now refuses, or that a nonce gap would hold back; return them."""
        evicted: list[tuple[Tx, TxError]] = []
        for tx_id in sorted(self._duty_of):  # a fixed order: evicting one can gap another
            tx = self._by_id.get(tx_id)
            if tx is None:
                continue  # gone with the gapped txs an earlier eviction made too many
            try:
                reachable = self.next_nonce(tx.sender_address, account_of(tx.sender_address).nonce)
                if tx.nonce >= reachable:
                    raise TxError(Reason.NONCE_MISMATCH, f"nonce {tx.nonce} follows a gap")
                if check(tx) != self._duty_of[tx_id][1]:
                    raise TxError(Reason.NOT_OWNER, "the duty now concerns another node")
            except TxError as exc:
                evicted.append((tx, exc))
                evicted.extend(self._take_out(tx))
        return evicted

    def recheck_paid(self, account_of: AccountLookup, check: PaidCheck) -> list[tuple[Tx, TxError]]:
        """After a committed block: evict each sender's next executable tx of a paid kind
        other than a transfer that `check` (its handler, dry-run on the new state) now
        refuses, with the gapped txs this makes too many; return them. Only the senders
        that pool such txs are looked at (a transfer's handler refuses nothing `add` and
        `settle` do not check already), at most `recheck_per_block` of them, round-robin:
        the ones looked at go last in turn (rev18e 3)."""
        evicted: list[tuple[Tx, TxError]] = []
        stateful = self._stateful
        for sender in list(islice(stateful, self.limits.recheck_per_block)):
            if sender not in stateful:
                continue  # its last such tx went with an eviction above
            stateful[sender] = stateful.pop(sender)  # to the end of the turn
            queue = self._by_sender.get(sender)
            if not queue:
                continue
            head = queue.get(account_of(sender).nonce)
            if head is None or head.kind is _TRANSFER or head.kind in FEE_FREE:
                continue
            try:
                check(head)
            except TxError as exc:
                evicted.append((head, exc))
                evicted.extend(self._take_out(head))
        return evicted

    def candidates(self, account_of: AccountLookup) -> Iterator[Tx]:
        """Txs in the order a proposer should try them (see module docstring)."""
        heap: list[tuple[int, int, bytes, int]] = []
        for sender, queue in self._by_sender.items():
            nonce = account_of(sender).nonce
            tx = queue.get(nonce)
            if tx is not None:
                heap.append(_priority(tx, sender, nonce))
        heapq.heapify(heap)
        while heap:
            _, _, sender, nonce = heapq.heappop(heap)
            queue = self._by_sender[sender]
            yield queue[nonce]
            following = queue.get(nonce + 1)
            if following is not None:
                heapq.heappush(heap, _priority(following, sender, nonce + 1))

    def update(self, account_of: AccountLookup) -> list[Tx]:
        """Drop txs whose nonces the committed state has spent; return them (`settle`
        without the txs it evicts for want of balance)."""
        return self.settle(account_of)[0]

    def settle(self, account_of: AccountLookup) -> tuple[list[Tx], list[tuple[Tx, TxError]]]:
        """After a committed block: drop the txs whose nonces it spent (returned first),
        then evict, tail first, the txs a sender's new balance no longer covers (second)."""
        dropped: list[Tx] = []
        unpaid: list[tuple[Tx, TxError]] = []
        floor, run = self._floor, self._run
        for sender, queue in list(self._by_sender.items()):
            account = account_of(sender)
            nonce = account.nonce
            low = floor.get(sender)
            # Per block, the nonces the block spent rather than every pooled tx (issue 24);
            # the whole queue when that is shorter.
            if low is None or nonce - low > len(queue):
                spent: Iterable[int] = [n for n in queue if n < nonce]
            else:
                spent = range(low, nonce)
            floor[sender] = nonce  # first: a spent nonce is below the run, no gap
            if not self._remove_spent(sender, queue, spent, dropped):
                continue  # every pooled tx of the sender was spent
            # The block may have spent nonces this pool never held: the run starts there.
            end = max(run[sender], nonce)
            while end in queue:
                end += 1
            run[sender] = end
            self._count_gapped(sender)
            if self._cost[sender] > account.balance:
                unpaid.extend(self._unpaid(sender, account.balance))
        return dropped, unpaid

    def _remove_spent(
        self, sender: bytes, queue: dict[int, Tx], spent: Iterable[int], out: list[Tx]
    ) -> bool:
        """`_remove` of `sender`'s txs at the `spent` nonces (below its new floor) into
        `out`, its cost and gapped count settled once (`settle` counts them next), not
        per tx; whether the sender still has pooled txs."""
        by_id = self._by_id
        spent_cost = 0
        for n in spent:
            tx = queue.pop(n, None)
            if tx is None:
                continue
            out.append(tx)
            del by_id[tx.id]
            spent_cost += cost(tx)
            self._uncount(tx)
        if not queue:
            self._forget_if_empty(sender)
            return False
        self._cost[sender] -= spent_cost
        return True

    def _unpaid(self, sender: bytes, balance: int) -> list[tuple[Tx, TxError]]:
        """Take out `sender`'s paid txs from the tail until `balance` covers the rest."""
        out = []
        queue = self._by_sender[sender]
        for n in sorted(queue, reverse=True):
            if self._cost.get(sender, 0) <= balance:
                break
            tx = queue[n]
            if tx.kind in FEE_FREE:
                continue  # costs nothing; `recheck` evicts it if it is gapped now
            self._remove(tx)
            out.append(
                (tx, TxError(Reason.INSUFFICIENT_FUNDS, f"balance {balance} no longer covers it"))
            )
        # A duty past a paid tx taken out follows a gap now: no block could include it
        out.extend(self._gapped_duties(sender))
        return out

    def _gapped_duties(self, sender: bytes) -> list[tuple[Tx, TxError]]:
        """Take out `sender`'s duties behind a nonce gap (a duty never waits on one)."""
        queue = self._by_sender.get(sender)
        if not queue:
            return []
        end = self._run[sender]
        gapped = [t for n, t in queue.items() if n > end and t.kind in FEE_FREE]
        for tx in gapped:
            self._remove(tx)
        return [
            (t, TxError(Reason.NONCE_MISMATCH, f"nonce {t.nonce} follows a gap")) for t in gapped
        ]

    def next_nonce(self, address: bytes, committed_nonce: int) -> int:
        """The nonce a new tx from `address` should use: after its pooled run of nonces."""
        queue = self._by_sender.get(address, {})
        nonce = committed_nonce
        while nonce in queue:
            nonce += 1
        return nonce

    def of_sender(self, address: bytes) -> list[Tx]:
        """The pooled txs of `address`, in nonce order."""
        queue = self._by_sender.get(address, {})
        return [queue[nonce] for nonce in sorted(queue)]

    def remove(self, tx_id: bytes) -> list[tuple[Tx, TxError]]:
        """Take out a pooled tx (a proposer dropped it); return the later txs of its
        sender that this gaps beyond the gapped quotas, evicted with it."""
        tx = self._by_id.get(tx_id)
        return [] if tx is None else self._take_out(tx)

    # -- internals -------------------------------------------------------------------------

    def _insert(self, tx: Tx, tx_cost: int | None = None) -> None:
        """Pool `tx` (`tx_cost`: its `cost`, if known); its sender's floor and run are set
        (it has pooled txs, or `add` set them from its account)."""
        sender = tx.sender_address
        queue = self._by_sender.setdefault(sender, {})
        queue[tx.nonce] = tx
        self._by_id[tx.id] = tx
        if tx.nonce > self._tail.get(sender, -1):
            self._tail[sender] = tx.nonce
            self._push_tail(tx)
        self._cost[sender] = self._cost.get(sender, 0) + (cost(tx) if tx_cost is None else tx_cost)
        if tx.kind is not _TRANSFER:
            self._count_stateful(tx, 1)
        end = self._run[sender]
        if tx.nonce == end:  # extends the run, and the gapped txs it reaches join it
            end += 1
            if end in queue:
                while end in queue:
                    end += 1
                self._run[sender] = end
                self._count_gapped(sender)
            else:  # the commonest case: one more tx and one longer run, the gapped as many
                self._run[sender] = end
        else:
            self._count_gapped(sender)
        if tx.kind in FEE_FREE:
            self._duty_bytes += len(tx.raw)
        else:
            self._bytes += len(tx.raw)

    def _replace(self, previous: Tx, tx: Tx) -> None:
        """Put paid `tx` in the place of `previous` (same sender and nonce): no run moves."""
        self._by_sender[tx.sender_address][tx.nonce] = tx
        del self._by_id[previous.id]
        self._by_id[tx.id] = tx
        if self._tail[tx.sender_address] == tx.nonce:
            self._push_tail(tx)
        self._cost[tx.sender_address] += cost(tx) - cost(previous)
        self._bytes += len(tx.raw) - len(previous.raw)
        self._count_stateful(previous, -1)
        self._count_stateful(tx, 1)

    def _count_stateful(self, tx: Tx, delta: int) -> None:
        """Count `tx` in (`delta` 1) or out (-1) of its sender's paid non-transfer txs."""
        if tx.kind is _TRANSFER or tx.kind in FEE_FREE:
            return
        sender = tx.sender_address
        count = self._stateful.get(sender, 0) + delta
        if count:
            self._stateful[sender] = count
        else:
            del self._stateful[sender]

    def _remove(self, tx: Tx) -> None:
        sender = tx.sender_address
        queue = self._by_sender[sender]
        del queue[tx.nonce]
        if not queue:
            self._forget_if_empty(sender)
        else:
            self._cost[sender] -= cost(tx)
            if self._tail[sender] == tx.nonce:
                # its next highest nonce: within the sender's window (`max_per_sender`)
                tail = tx.nonce - 1
                while tail not in queue:
                    tail -= 1
                self._tail[sender] = tail
                self._push_tail(queue[tail])
            if self._floor[sender] <= tx.nonce < self._run[sender]:
                self._run[sender] = tx.nonce  # the txs after it wait behind a gap now
            self._count_gapped(sender)
        del self._by_id[tx.id]
        self._uncount(tx)

    def _uncount(self, tx: Tx) -> None:
        """Take the removed `tx` out of the bytes, duty and stateful counts."""
        if tx.kind is _TRANSFER:
            self._bytes -= len(tx.raw)
            return
        self._count_stateful(tx, -1)
        slot = self._duty_of.pop(tx.id, None)
        if slot is not None:
            del self._duties[slot]
            self._duty_bytes -= len(tx.raw)
        elif tx.kind not in FEE_FREE:
            self._bytes -= len(tx.raw)

    def _forget_if_empty(self, sender: bytes) -> None:
        """Forget what the pool keeps about `sender` if it has no pooled tx."""
        if self._by_sender.get(sender):
            return
        self._by_sender.pop(sender, None)
        self._floor.pop(sender, None)
        self._run.pop(sender, None)
        self._cost.pop(sender, None)
        self._tail.pop(sender, None)
        self._gapped_total -= self._gapped.pop(sender, 0)

    def _count_gapped(self, sender: bytes) -> None:
        """Count `sender`'s gapped txs again: its pooled txs but its executable run."""
        queue = self._by_sender[sender]
        count = len(queue) - (self._run[sender] - self._floor[sender])
        self._gapped_total += count - self._gapped.get(sender, 0)
        if count:
            self._gapped[sender] = count
        else:
            self._gapped.pop(sender, None)

    def _take_out(self, tx: Tx) -> list[tuple[Tx, TxError]]:
        """Remove `tx`, then the gapped txs over the quotas this leaves: its sender's
        from the tail, then the first gapped senders'; return those."""
        sender = tx.sender_address
        self._remove(tx)
        out: list[tuple[Tx, TxError]] = []
        over = self._gapped.get(sender, 0) - self.limits.max_gapped_per_sender
        if over > 0:
            queue = self._by_sender[sender]
            for n in sorted(queue, reverse=True)[:over]:
                out.append((queue[n], _gap_error()))
                self._remove(queue[n])
        while self._gapped_total > self.limits.max_gapped:
            victim = next(self._gapped_victims(None), None)
            if victim is None:
                break  # only gapped duties: `recheck` evicts them
            self._remove(victim)
            out.append((victim, _gap_error()))
        return out

    def _gapped_victims(self, keep: bytes | None) -> Iterator[Tx]:
        """The last paid gapped tx of each sender with one, other than `keep`, the first
        gapped senders first."""
        for sender in self._gapped:
            if sender == keep:
                continue
            queue, end = self._by_sender[sender], self._run[sender]
            for n in sorted(queue, reverse=True):
                if n <= end:
                    break
                if queue[n].kind not in FEE_FREE:
                    yield queue[n]
                    break

    def _push_tail(self, tx: Tx) -> None:
        """Index pooled `tx`, its sender's tail now, among the tails eviction picks from (a
        duty is never evicted for a paid tx: it has its own quota)."""
        if tx.kind in FEE_FREE:
            return
        tails = self._tails
        heapq.heappush(tails, (tx.fee, tx.id, tx.sender_address, tx.nonce))
        if len(tails) > 2 * len(self._tail) + 1_024:  # mostly stale: rebuilt, O(1) a push
            by_sender = self._by_sender
            tails[:] = [
                (t.fee, t.id, sender, nonce)
                for sender, nonce in self._tail.items()
                if (t := by_sender[sender][nonce]).kind not in FEE_FREE
            ]
            heapq.heapify(tails)


def cost(tx: Tx) -> int:
    """What `tx` takes from its sender's balance at least: its fee, and a transfer's
    amount (a new payee's deposit and other kinds' spending depend on state: not counted,
    so a tx the pool refuses would always fail)."""
    if tx.kind is _TRANSFER:
        return int(tx.fee + tx.payload.amount)
    return tx.fee


def outbids(previous_fee: int, fee: int) -> bool:
    """Whether a tx of `fee` pays enough more than one of `previous_fee` (same sender and
    nonce) to replace it."""
    return fee * 100 >= previous_fee * (100 + REPLACE_BUMP_PERCENT) and fee != previous_fee


def _check_bump(previous: Tx, tx: Tx) -> None:
    """Raise unless `tx` pays enough more than `previous` (same sender and nonce) to replace it."""
    if not outbids(previous.fee, tx.fee):
        raise TxError(
            Reason.REPLACEMENT_UNDERPRICED,
            f"replacing nonce {tx.nonce} needs a fee at least {REPLACE_BUMP_PERCENT}% "
            f"above {previous.fee}",
        )


def _full_error() -> TxError:
    return TxError(Reason.MEMPOOL_FULL, "the mempool is full; a higher fee may get in")


def _gap_error() -> TxError:
    return TxError(Reason.SENDER_LIMIT, "too many txs wait behind a nonce gap")


def _replaces(tx: Tx, pending: Tx, account_of: AccountLookup) -> bool:
    """Whether evidence `tx` takes its offender's slot from pending evidence `pending`.

    Evidence that can go into the next block (at its sender's account nonce: no pooled tx
    before it) comes first, then evidence of an earlier offence. A report parked behind
    other txs of its sender waits for them, and an offender can keep those out of every
    block at the lowest fee for as long as the evidence lives (rev23c): it yields to one
    that is includable now. An earlier offence's report can go into a block at least as
    soon and expires first (`evidence_max_age`), so whatever an offender parks in its own
    slot (say, evidence of the height being decided, which only the block after it can
    hold) the report of an earlier equivocation still gets in; one stuck behind its
    sender's txs does not take the place of one that is not. Each replacement lowers
    (stuck, height) within the evidence age (a report once includable stays so until its
    nonce is spent), so the churn per offender is bounded, and the slot ends with the best
    (stuck, height) that arrived, in whatever order.
    """
    if tx.kind is not TxKind.EVIDENCE or pending.kind is not TxKind.EVIDENCE:
        return False
    stuck = tx.nonce != account_of(tx.sender_address).nonce
    pending_stuck = pending.nonce != account_of(pending.sender_address).nonce
    return (stuck, tx.payload.vote_a.height) < (pending_stuck, pending.payload.vote_a.height)


def _fills_gap(tx: Tx, pending: Tx, expected: int) -> bool:
    """Whether duty `tx` takes the slot of `pending`, its sender's same duty held back by a
    nonce gap (another tx of the sender left the pool: `expected`, the sender's next free
    nonce, is below it), at that free nonce: its node signed it again there (rev24p A),
    and the gapped one can go into no block until the gap fills. Only the sender can sign
    both, and each replacement lowers the slot's nonce, which stays at or above the
    sender's account nonce."""
    return (
        tx.kind is not TxKind.EVIDENCE  # evidence's order is `_replaces`'
        and tx.sender_address == pending.sender_address
        and tx.nonce == expected
        and expected < pending.nonce
    )


def _priority(tx: Tx, sender: bytes, nonce: int) -> tuple[int, int, bytes, int]:
    duty = 0 if tx.kind in FEE_FREE else 1
    return (duty, -tx.fee, sender, nonce)
