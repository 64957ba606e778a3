"""The mempool: valid-looking txs waiting for a block, bounded and ordered.

Admission (`add`): the tx passed `decode_tx` (stateless checks and signature) before it
gets here; against the latest committed state its nonce must not be spent and not be
more than `max_per_sender` ahead, and the sender must afford the fee. One tx per
(sender, nonce): a second one replaces the first only if it pays at least
`REPLACE_BUMP_PERCENT` more (replace-by-fee), so nobody can churn the pool for free.
When the pool is full, a new tx evicts the lowest-paying tx at the tail of some sender's
queue if it pays more than that tx, else it is refused.

Fee-free duties (NODE_CONFIRM, UPTIME_ATTEST, EVIDENCE, APP_SECRETS_SEAL and _REJECT) come
with the node they are a duty of, found by `fluxchain.core.admission.check_fee_free`
against committed state (the caller runs it). They have their own quota (`max_duties`,
`max_duty_bytes`), so paid txs cannot crowd them out nor they the paid ones; at most one is
pending per (kind, node):
a second one is refused `duty_pending` (the first is as good, and refusing keeps the pool
independent of arrival order), except that evidence of an earlier offence replaces the
pending evidence against the same offender (`_replaces`: an offender cannot park a
report of its own to shield an earlier equivocation); and a duty must carry its sender's
next free nonce, so no gap can keep it waiting. After every committed block `recheck`
runs the same check again and evicts the duties that no longer pass.

Ordering (`candidates`): fee-free node duties first — the rules cap them at one per node
per window/epoch and the network's health depends on them — then by fee, highest first,
each sender's txs in nonce order from its account nonce (a gap stops that sender).

After each committed block, `update` drops what the block included and what its new
nonces made stale. Every refusal is a TxError with a reason code.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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

AccountLookup = Callable[[bytes], Account]
DutyCheck = Callable[[Tx], bytes]  # the node a fee-free tx is a duty of; TxError if invalid


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_txs: int = DEFAULT_MAX_TXS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_per_sender: int = DEFAULT_MAX_PER_SENDER
    max_duties: int = DEFAULT_MAX_DUTIES  # fee-free txs, counted apart from `max_txs`
    max_duty_bytes: int = DEFAULT_MAX_DUTY_BYTES


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
        self._floor: dict[bytes, int] = {}

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
        if tx.nonce < account.nonce:
            raise TxError(
                Reason.NONCE_MISMATCH, f"nonce {tx.nonce} is spent (account nonce {account.nonce})"
            )
        if tx.nonce >= account.nonce + self.limits.max_per_sender:
            raise TxError(
                Reason.NONCE_TOO_FAR,
                f"nonce {tx.nonce} is too far ahead of the account's {account.nonce}",
            )
        if account.balance < tx.fee:
            raise TxError(
                Reason.INSUFFICIENT_FUNDS, f"balance {account.balance} does not cover fee {tx.fee}"
            )
        queue = self._by_sender.get(tx.sender_address, {})
        previous = queue.get(tx.nonce)
        if previous is not None:
            if tx.fee * 100 < previous.fee * (100 + REPLACE_BUMP_PERCENT) or tx.fee == previous.fee:
                raise TxError(
                    Reason.REPLACEMENT_UNDERPRICED,
                    f"replacing nonce {tx.nonce} needs a fee at least {REPLACE_BUMP_PERCENT}% "
                    f"above {previous.fee}",
                )
            self._remove(previous)
            self._insert(tx)
            return previous
        if len(queue) >= self.limits.max_per_sender:
            raise TxError(Reason.SENDER_LIMIT, "this sender has too many pending txs")
        evicted = None
        if (
            len(self._by_id) - len(self._duties) >= self.limits.max_txs
            or self._bytes + len(tx.raw) > self.limits.max_bytes
        ):
            evicted = self._cheapest_tail()
            if (
                evicted is None
                or evicted.fee >= tx.fee
                or evicted.sender_address == tx.sender_address
            ):
                raise TxError(Reason.MEMPOOL_FULL, "the mempool is full; a higher fee may get in")
            self._remove(evicted)
        self._insert(tx)
        return evicted

    def _add_duty(self, tx: Tx, account_of: AccountLookup, node_id: bytes) -> Tx | None:
        slot = (int(tx.kind), node_id)
        pending = self._duties.get(slot)
        # check: one pending duty per (kind, node), unless this is evidence of an earlier
        # offence (see `_replaces`)
        if pending is not None and not _replaces(tx, pending):
            raise TxError(
                Reason.DUTY_PENDING,
                f"a {tx.kind.name.lower()} for node {node_id.hex()} is pending already",
            )
        account = account_of(tx.sender_address)
        queue = self._by_sender.get(tx.sender_address, {})
        expected = self.next_nonce(tx.sender_address, account.nonce)
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
        self._insert(tx)
        self._duties[slot] = tx
        self._duty_of[tx.id] = slot
        return pending

    def recheck(self, account_of: AccountLookup, check: DutyCheck) -> list[tuple[Tx, TxError]]:
        """After a committed block: evict every duty that `check` (the admission check on
        the new state) now refuses, or that a nonce gap would hold back; return them."""
        evicted: list[tuple[Tx, TxError]] = []
        for tx_id in sorted(self._duty_of):  # a fixed order: evicting one can gap another
            tx = self._by_id[tx_id]
            try:
                reachable = self.next_nonce(tx.sender_address, account_of(tx.sender_address).nonce)
                if tx.nonce >= reachable:
                    raise TxError(Reason.NONCE_MISMATCH, f"nonce {tx.nonce} follows a gap")
                if check(tx) != self._duty_of[tx_id][1]:
                    raise TxError(Reason.NOT_OWNER, "the duty now concerns another node")
            except TxError as exc:
                self._remove(tx)
                evicted.append((tx, exc))
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
        """Drop txs whose nonces the committed state has spent; return them."""
        dropped: list[Tx] = []
        floor = self._floor
        for sender, queue in list(self._by_sender.items()):
            nonce = account_of(sender).nonce
            low = floor.get(sender)
            # Per block, the nonces the block spent rather than every pooled tx (issue 24);
            # the whole queue when that is shorter, or on a sender's first update.
            if low is None or nonce - low > len(queue):
                spent: Iterable[int] = [n for n in queue if n < nonce]
            else:
                spent = range(low, nonce)
            for n in spent:
                tx = queue.get(n)
                if tx is not None:
                    self._remove(tx)
                    dropped.append(tx)
            if sender in self._by_sender:
                floor[sender] = nonce
        return dropped

    def next_nonce(self, address: bytes, committed_nonce: int) -> int:
        """The nonce a new tx from `address` should use: after its pooled run of nonces."""
        queue = self._by_sender.get(address, {})
        nonce = committed_nonce
        while nonce in queue:
            nonce += 1
        return nonce

    def remove(self, tx_id: bytes) -> None:
        tx = self._by_id.get(tx_id)
        if tx is not None:
            self._remove(tx)

    # -- internals -------------------------------------------------------------------------

    def _insert(self, tx: Tx) -> None:
        self._by_sender.setdefault(tx.sender_address, {})[tx.nonce] = tx
        self._by_id[tx.id] = tx
        if tx.kind in FEE_FREE:
            self._duty_bytes += len(tx.raw)
        else:
            self._bytes += len(tx.raw)

    def _remove(self, tx: Tx) -> None:
        queue = self._by_sender[tx.sender_address]
        del queue[tx.nonce]
        if not queue:
            del self._by_sender[tx.sender_address]
            self._floor.pop(tx.sender_address, None)
        del self._by_id[tx.id]
        slot = self._duty_of.pop(tx.id, None)
        if slot is not None:
            del self._duties[slot]
            self._duty_bytes -= len(tx.raw)
        elif tx.kind not in FEE_FREE:
            self._bytes -= len(tx.raw)

    def _cheapest_tail(self) -> Tx | None:
        """The lowest-fee paid tx among each sender's last one (evicting it leaves no gap);
        duties are never evicted for paid txs: they have their own quota."""
        tails = (queue[max(queue)] for queue in self._by_sender.values())
        paid = (t for t in tails if t.kind not in FEE_FREE)
        return min(paid, key=lambda t: (t.fee, t.id), default=None)


def _replaces(tx: Tx, pending: Tx) -> bool:
    """Whether evidence `tx` takes its offender's slot from pending evidence `pending`.

    Evidence of an earlier offence does: it can go into a block at least as soon, and it
    expires first (`evidence_max_age`). So whatever an offender parks in its own slot
    (say, evidence of the height being decided, which only the block after it can hold),
    the report of an earlier equivocation still gets in. Each replacement needs a lower
    height within the evidence age, so the churn per offender is bounded, and the pool
    ends with the earliest offence whatever order the reports arrive in.
    """
    if tx.kind is not TxKind.EVIDENCE or pending.kind is not TxKind.EVIDENCE:
        return False
    return bool(tx.payload.vote_a.height < pending.payload.vote_a.height)


def _priority(tx: Tx, sender: bytes, nonce: int) -> tuple[int, int, bytes, int]:
    duty = 0 if tx.kind in FEE_FREE else 1
    return (duty, -tx.fee, sender, nonce)
