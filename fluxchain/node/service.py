"""What the node offers its users: submitting txs, their status, and committed blocks.

The API and the consensus driver both go through this object: the API hands in txs and
reads state; the driver (or block sync) reports each committed block here, which updates
the mempool, the tx status cache, the metrics, and the subscribers of the block stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from fluxchain.agent.syncthing import device_claim_digest
from fluxchain.api.view import SignatureCounts
from fluxchain.core.accounts import get_account
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, address_of, sha256
from fluxchain.core.errors import Reason, StoreError, TxError, TxHeldError
from fluxchain.core.events import Event
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.owner_request import (
    NONCE_SIZE,
    NonceBook,
    OwnerRequest,
    OwnerRequestError,
    Refusal,
    check_owner_request,
)
from fluxchain.core.records import META, Account
from fluxchain.core.tx import FEE_FREE, Evidence, Tx, TxKind, decode_tx
from fluxchain.core.uptime import health_digest, proof_nonces
from fluxchain.node.admission import SENDER_CLEARS, TxAdmission, UnprovenError
from fluxchain.node.agent_link import AgentLink
from fluxchain.node.app_reports import PUBLIC, ReportGatherer, ReportHosts
from fluxchain.node.extra_txs import ExtraTxs
from fluxchain.node.mempool import Mempool
from fluxchain.node.origins import API, ByOrigin, Origin, client_origin, is_own
from fluxchain.node.own_reports import SETTLED, OwnReports
from fluxchain.store.chain import Chain

log = logging.getLogger("fluxchain.node")

REJECTED_KEPT: Final = 10_000  # recent refusals kept for `tx status`
# Txs that left the pool uncommitted, kept for `tx status` (`evicted`): apart from the
# refusals, which anyone fills for free (unfunded keys sign junk), while each of these
# was pooled first, its fee covered by its sender's balance. Yet a funded key replaces its
# txs behind a nonce gap (never committed, no fee paid) as often as it likes, each
# replaced tx a record (rev21a 1): past either bound the sender holding the most records
# (or bytes) loses its oldest, so a sender's churn pushes out its own.
EVICTED_KEPT: Final = 10_000
EVICTED_BYTES: Final = 16 * 1024 * 1024
# Evicted records `tx status` re-checks against the committed state a height (a handler
# dry-run each, at most once a record a height): past it a record reads as it was.
EVICTED_RECHECKS: Final = 256
SUBSCRIBER_QUEUE: Final = 256  # blocks a slow stream subscriber may lag before it is dropped
RECENT_BLOCKS: Final = 120  # for block time and tx/s figures
REGOSSIP_BLOCKS: Final = 3  # a local tx still pending after this many blocks is sent again
LOCAL_KEPT: Final = 10_000  # local txs watched for re-gossip
# The node's own records of accepted owner requests: expiry (8 bytes, big-endian, so the
# names sort by it), nonce, signer's public key; kept until the request expires.
OWNER_NONCES: Final = b"owner-nonce/"
# A module global, not the enum's class attribute (~50 ns a read on Python 3.11): read
# for every tx admitted (issue 24, cpu19).
_TRANSFER: Final = TxKind.TRANSFER
# Admission's refusals, before a tx's proofs, of what may pass once a block commits (the
# node it updates, the height or validator set evidence names; funds park it unproven,
# `_unproven`): a peer's is fetched again when announced, as the pool's refusals for now
# are (`_clears_later`).
_UNPROVEN_FOR_NOW: Final = frozenset(
    {Reason.INSUFFICIENT_FUNDS, Reason.UNKNOWN_NODE, Reason.BAD_EVIDENCE, Reason.UNKNOWN_VALIDATOR}
)
_EVIDENCE: Final = TxKind.EVIDENCE


def _pushed_out(dropped: Tx, by: Tx) -> TxError:
    """What a copy of `dropped`, which the pooled `by` replaced or evicted, is told."""
    if by.kind in FEE_FREE:
        if by.kind is not _EVIDENCE:  # `mempool._fills_gap`
            return TxError(
                Reason.DUTY_PENDING, f"replaced by its sender's at nonce {by.nonce}, before its gap"
            )
        return TxError(Reason.DUTY_PENDING, "replaced by evidence of an earlier offence")
    if dropped.sender_address == by.sender_address and dropped.nonce == by.nonce:
        return TxError(Reason.REPLACEMENT_UNDERPRICED, f"nonce {dropped.nonce} was replaced")
    return TxError(Reason.MEMPOOL_FULL, "evicted by a higher fee; a higher fee may get in")


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A committed block as the stream and the API present it."""

    height: int
    hash: bytes
    time_ms: int
    proposer: bytes
    tx_ids: tuple[bytes, ...]
    events: tuple[Event, ...]

    @classmethod
    def of(
        cls, block: Block, events: tuple[Event, ...], tx_ids: tuple[bytes, ...] | None = None
    ) -> CommittedBlock:
        """`tx_ids` when the caller has them (the import computed them); else hashed here."""
        header = block.header
        if tx_ids is None:
            tx_ids = tuple(sha256(raw) for raw in block.txs)
        return cls(block.height, block.hash(), header.time_ms, header.proposer, tx_ids, events)

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "hash": self.hash.hex(),
            "time_ms": self.time_ms,
            "proposer": self.proposer.hex(),
            "txs": [t.hex() for t in self.tx_ids],
            "events": [e.to_json() for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class TxStatus:
    # pending (pooled) | held (parked: refused for now, offered again after its sender's
    # account changes) | evicted (pooled, so relayed to peers, then let go uncommitted: it
    # may still commit from a peer's pool) | confirmed | rejected | unknown
    state: str
    height: int = 0
    index: int = 0
    reason: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.state}
        if self.state == "confirmed":
            out.update(height=self.height, index=self.index)
        if self.state in ("rejected", "held", "evicted"):
            out.update(reason=self.reason, message=self.message)
        return out


@dataclass(slots=True, eq=False)  # identity: each subscriber is its own
class Subscriber:
    queue: asyncio.Queue[CommittedBlock | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    # Called when the node cuts this subscriber off: its reader may be waiting in a send
    # to a client that stopped reading, and would not see the end-of-stream marker.
    on_cut: Callable[[], None] | None = None


class NodeService:
    """The node's front desk: tx admission, tx status, the committed-block stream.

    Every collaborator comes in at construction; the defaults serve a node without peers
    or consensus (tests, tools): no gossip, no peers, round 0, not syncing, storage
    failures ignored.
    """

    def __init__(
        self,
        chain: Chain,
        mempool: Mempool | None = None,
        agent: AgentLink | None = None,
        *,
        admission: TxAdmission | None = None,
        gossip: Callable[[Tx], None] = lambda tx: None,
        relay: Callable[[list[bytes]], None] = lambda tx_ids: None,
        refetch: Callable[[list[bytes]], None] = lambda tx_ids: None,
        peer_count: Callable[[], int] = lambda: 0,
        consensus_round: Callable[[], int] = lambda: 0,
        syncing: Callable[[], bool] = lambda: False,
        storage_failed: Callable[[StoreError], None] = lambda error: None,
        node_key: SigningKey | None = None,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        report_hosts: ReportHosts = PUBLIC,
    ) -> None:
        self.chain = chain
        self.mempool = mempool if mempool is not None else Mempool()  # an empty pool is falsy
        self.admission = admission or TxAdmission(chain)
        # Checked txs let go (refused or dropped for now), for compact-proposal rebuilds only.
        self.extra = ExtraTxs(max_per_sender=self.mempool.limits.max_per_sender)
        # Without a configured agent, reports are still checked against a secret nobody has.
        self.agent = agent or AgentLink(secrets.token_hex(32), expected=False)
        self._node_key = node_key  # signs the agent's Syncthing device (volume_device)
        self._volume_device: dict[str, str] | None = None
        # The /health proofs signed, by (epoch, node id, nonce): this epoch's and the one
        # before's, at most two entries and two signatures per epoch (`health_proofs`); the
        # count is what tests and /metrics can check.
        self._health_proofs: dict[tuple[int, bytes, bytes], dict[str, Any]] = {}
        self.health_signatures = 0
        # What `tx status` reports of a recent refusal, never the exception: its traceback
        # holds the handler's frame, and with it a whole gossiped frame's tx bytes.
        self._rejected: OrderedDict[bytes, TxStatus] = OrderedDict()
        # Txs that left the pool uncommitted (`EVICTED_KEPT`, `EVICTED_BYTES`): `evicted`
        # until the chain settles them (api21 2); their ids by sender (its address, hex,
        # as the origin), for the bound.
        self._evicted_txs: dict[bytes, tuple[Tx, TxStatus]] = {}
        self._evicted_of = ByOrigin(clients_apart=False)
        # The height the re-checks below were counted for, their number, and each record's
        # last re-check: (height, its refusal for good or None).
        self._evicted_rechecks = (0, 0)
        self._evicted_checked: dict[bytes, tuple[int, TxStatus | None]] = {}
        # Txs submitted here (wallet, duties), the height they were last gossiped at, and
        # their origin: a tx sent while this node had no peers, or lost on the way, must
        # still reach a proposer, and one dropped from the pool is parked as its client's.
        self._local: OrderedDict[bytes, tuple[Tx, int, Origin]] = OrderedDict()
        # Own duties signed again between blocks (`_sign_again_behind`, at once): sent
        # again at the next block, whose recheck drops the gapped copy a peer held, which
        # made it refuse these `duty_pending`. Emptied every block; own duties only.
        self._resend: dict[bytes, Tx] = {}
        # The equivocations this node's engine saw, reported again until settled (red23c).
        self.own_reports = OwnReports(db=chain.db)
        self.own_reports.load(lambda raw: decode_tx(raw, chain.params))
        self._subscribers: set[Subscriber] = set()
        self._recent: deque[tuple[int, int, float]] = deque(maxlen=RECENT_BLOCKS)
        self._gossip = gossip
        # Announces the ids of txs pooled from a peer's copy (parked txs offered again).
        self._relay = relay
        # Tells the tx relay that these txs were refused for now only and are not held: an
        # announcement after a cool-down fetches them again (rev13a: they stayed "received
        # lately" and were never fetched again), never of the peer whose answer delivered
        # them (rev13c: a re-announcing peer had them checked every time).
        self._refetch = refetch
        self._peer_count = peer_count
        self._consensus_round = consensus_round
        # A StoreError met anywhere (an API read too) stops the node.
        self._storage_failed = storage_failed
        self._syncing = syncing
        # Owner operations (owner_request.py): this node's key finds its node id in state;
        # requests expire in wall-clock time, which only this policy reads.
        self.node_public_key = b"" if node_key is None else node_key.public_key
        self._wall_clock_ms = wall_clock_ms
        self.nonces = NonceBook()
        self._load_owner_nonces()
        self.reports = ReportGatherer(self.node_id, self.agent_app_report, hosts=report_hosts)

    # -- txs -------------------------------------------------------------------------------

    def account_of(self, address: bytes) -> Account:
        return get_account(self.chain.state, address)

    def next_nonce(self, pubkey: bytes) -> int:
        """The nonce a new tx signed by `pubkey` should carry: after its pooled ones."""
        address = address_of(pubkey)
        return self.mempool.next_nonce(address, self.account_of(address).nonce)

    @staticmethod
    def client_origin(host: str | None) -> str:
        """The origin of the txs an API client at `host` (its socket's peer address)
        posts, counted apart from other clients' in the parked set (`origins`)."""
        return client_origin(host)

    def submit(
        self, raw: bytes, *, from_peer: bool = False, peer: str = "", client: str = API
    ) -> Tx:
        """Check and admit a tx; gossip it unless it came from a peer (`peer`: its id, where
        the node knows it; else `client`: the origin of the API client that posted it,
        `origins.client_origin`). Raise TxError; TxHeldError for a client's tx refused for
        now and parked by that refusal, which may still commit (a re-send at its nonce
        would race it)."""
        admission = self.admission
        tx = None
        try:
            # Kept once the mempool has judged it; a key-proof carrier's underpriced rival
            # of a pooled tx is refused before any check.
            tx = admission.admit(raw, keep=False, priced=self.mempool.check_replacement)
            refusal = admission.parked_refusal(tx.id) if from_peer else None
            if refusal is not None:
                # A peer's copy of a parked tx: its sender's account is as it was at the
                # tx's last offer, so no pool attempt, no tx index read (rev18a 1).
                raise refusal
            origin = peer if from_peer else self._own_origin(tx, client)
            self._pool(tx, origin)
        except UnprovenError as exc:
            self._remember_rejection(exc.tx.id, exc)
            self._unproven(exc, from_peer, peer, client)
            raise
        except TxError as exc:
            if (
                exc.reason is not Reason.ALREADY_KNOWN
                and len(raw) <= self.chain.params.max_tx_bytes
            ):
                tx_id = sha256(raw)
                self._remember_rejection(tx_id, exc)
                if from_peer and tx is None and exc.reason in _UNPROVEN_FOR_NOW:
                    # Evidence refused on committed state before its votes' checks
                    # (`TxAdmission.check_duty`): the relay fetches it again when announced.
                    self._refetch([tx_id])
            # A client's refusal that does not park it lets go of a parked copy (`_refused`):
            # parked now means parked by this refusal.
            if not from_peer and tx is not None and admission.is_parked(tx.id):
                raise TxHeldError(tx.id, exc) from None
            raise
        if not from_peer:
            self._gossip(tx)
            self._watch(tx, origin)
        return tx

    def report_offence(self, key: SigningKey, evidence: Evidence) -> Tx:
        """Submit this node's report of an equivocation its engine saw (an EVIDENCE tx
        signed by `key`); TxError if refused. Whatever becomes of it, the offence is kept
        and reported again after each committed block until it is settled
        (`own_reports`): an offender's own report may hold its slot now and leave later."""
        tx = Tx.create(
            key, self.chain.params.chain_id, self.next_nonce(key.public_key), 0, evidence
        )
        self.own_reports.keep(key, evidence, tx)
        try:
            return self.submit(tx.raw)
        except TxError as exc:
            if exc.reason in SETTLED:
                self.own_reports.settle(evidence)
            raise

    def _offer_own_reports(self, offenders: Iterable[bytes]) -> None:
        """Report again the kept offences of `offenders` that no report of this node's
        holds a place in the pool for, earliest first (the pool takes one per offender);
        forget the ones settled."""
        reports = self.own_reports
        mempool = self.mempool
        height = self.chain.height
        max_age = self.chain.params.evidence_max_age
        for offender in offenders:
            kept = reports.of(offender)
            if any(report.tx.id in mempool for report in kept):
                continue
            for report in kept:
                if height + 1 - report.evidence.vote_a.height > max_age:
                    reports.settle(report.evidence)  # no block can record it any more
                    continue
                tx = report.tx
                nonce = self.next_nonce(tx.sender)
                if tx.nonce != nonce:  # its nonce spent since: signed again
                    key = report.key
                    node_key = self._node_key
                    if key is None and node_key is not None and node_key.public_key == tx.sender:
                        key = report.key = node_key  # loaded from disk
                    if key is None:
                        break  # no key to sign with yet: the node's comes with its driver
                    tx = Tx.create(key, self.chain.params.chain_id, nonce, 0, report.evidence)
                    reports.renew(report, tx)
                try:
                    self.submit(tx.raw)
                except TxError as exc:
                    if exc.reason in SETTLED:
                        reports.settle(report.evidence)
                        continue  # a later offence of the offender may still apply
                    break  # held out for now (another report of it, a full pool): next block
                log.warning(
                    "equivocation reported again validator=%s height=%d",
                    offender.hex()[:12],
                    report.evidence.vote_a.height,
                )
                break

    def _own_keys(self) -> dict[bytes, SigningKey]:
        """The keys this node signs its own fee-free txs with, by address."""
        keys = {address_of(key.public_key): key for key in self.own_reports.signing_keys()}
        if self._node_key is not None:
            keys[address_of(self._node_key.public_key)] = self._node_key
        return keys

    def _sign_again_behind(
        self, evicted: list[tuple[Tx, TxError]], *, between_blocks: bool = False
    ) -> None:
        """A tx of this node's own left the pool unincluded (its re-offered evidence report
        when another node's report of the offence was recorded: rev23c; or between blocks,
        another's report taking its slot, an eviction: p2p24), or a duty of its own lost
        its nonce to another of its txs (`_spent_by_another`): the duties it sent after
        it, now behind a nonce gap, or the lost one, are signed again at the free nonces,
        in their order, else they are lost (`Duties` sends each once a window or epoch).

        `between_blocks`: the tx left this pool only. Peers may still hold the gapped
        copies and refuse the new ones `duty_pending` until their next recheck drops them:
        the new ones are sent again at the next block (`_resend`)."""
        keys = self._own_keys()
        freed = {tx.sender_address for tx, _ in evicted if tx.sender_address in keys}
        for address in sorted(freed):
            gapped = {
                tx.id: tx
                for tx, exc in evicted
                if tx.sender_address == address and exc.reason is Reason.NONCE_MISMATCH
            }
            reachable = self.mempool.next_nonce(address, self.account_of(address).nonce)
            for tx in self.mempool.of_sender(address):
                if tx.nonce > reachable and tx.kind in FEE_FREE and tx.id in self.mempool:
                    # Left behind the gap: the next recheck would evict it, too late.
                    gone = [(tx, TxError(Reason.NONCE_MISMATCH, f"nonce {tx.nonce} follows a gap"))]
                    gone.extend(self.mempool.remove(tx.id))
                    self._evicted(gone, everywhere=True)
                    gapped.update((t.id, t) for t, _ in gone)
            key = keys[address]
            for tx in sorted(gapped.values(), key=lambda t: t.nonce):
                if tx.kind not in FEE_FREE or tx.kind is _EVIDENCE:
                    continue  # a report is offered again on its own (`_offer_own_reports`)
                again = Tx.create(
                    key, self.chain.params.chain_id, self.next_nonce(key.public_key), 0, tx.payload
                )
                try:
                    self.submit(again.raw)
                except TxError as exc:
                    log.warning("own %s not signed again: %s", tx.kind.name, exc.reason)
                    continue
                if between_blocks:
                    self._resend[again.id] = again
                log.info("own %s signed again at nonce %d", tx.kind.name, again.nonce)

    def _spent_by_another(
        self, spent: list[Tx], committed: tuple[bytes, ...]
    ) -> list[tuple[Tx, TxError]]:
        """The duties of this node's own among the pooled `spent` that the block did not
        include: another tx of its sender took their nonce (a report this pool let go,
        still gossiped, that the proposer held: rev24p A)."""
        lost = [tx for tx in spent if tx.kind in FEE_FREE and tx.kind is not _EVIDENCE]
        if not lost:
            return []  # the common case: no own-keys dict built a block
        keys = self._own_keys()
        included = set(committed)
        return [
            (tx, TxError(Reason.NONCE_MISMATCH, f"nonce {tx.nonce} was spent by another tx"))
            for tx in lost
            if tx.sender_address in keys and tx.id not in included
        ]

    def _send_again(self) -> None:
        """Send again the own duties signed again between blocks that are still pooled
        (`_resend`): a peer's recheck of this block dropped the gapped copy it refused
        them for."""
        resend, self._resend = self._resend, {}
        for tx_id, tx in resend.items():
            if tx_id in self.mempool:
                self._gossip(tx)

    def _take_kept_duties(self, rechecked: list[tuple[Tx, TxError]]) -> None:
        """Offer the pool again the duties kept in `extra` at the next free nonces of each
        sender whose duties this block's recheck evicted: ones refused `duty_pending`
        while the evicted (or a gapped) copies held their slots. A node signs its duties
        again behind a gap, in order, and sends them at once and at its next block
        (`_resend`), and either send can reach this pool before this pool's own recheck
        of that block (p2p25 1); a node restarted meanwhile has no `_resend` and signs
        them afresh, as early. Each pooled one frees the next nonce, so they are taken in
        nonce order until a nonce holds none or one is refused (rev25p 3: one a sender
        lost the second). Pooled, they are announced to the peers. Bounded: each take
        removes a store entry (at most `max_per_sender` a sender) and stops at the pool's
        per-sender window."""
        pooled = []
        window = self.mempool.limits.max_per_sender
        for sender in sorted({tx.sender_address for tx, _ in rechecked}):
            floor = self.account_of(sender).nonce
            while (nonce := self.mempool.next_nonce(sender, floor)) < floor + window:
                kept = self.extra.take(sender, nonce)
                if kept is None:
                    break
                raw, origin = kept
                own = is_own(origin)
                try:
                    tx = self.submit(
                        raw, from_peer=not own, peer=origin or "", client=origin or API
                    )
                except TxError:
                    break  # its refusal is recorded (`tx status`); the next would gap
                if tx.id not in self.mempool:
                    break  # parked or held: not at this nonce
                if not own:
                    pooled.append(tx.id)  # an own one was gossiped by `submit`
        if pooled:
            self._relay(pooled)

    def _unproven(self, refused: UnprovenError, from_peer: bool, peer: str, client: str) -> None:
        """Admission refused the signed `refused.tx` on committed state before its key
        proofs (`TxAdmission._refuse_unprovable`). Short of funds, it is parked unproven
        as its origin's (a client is told it is held), so the block that funds it offers
        it again, its proofs checked then: a peer announces a tx once (rev23adm 1). Else
        (a node not known yet, evidence of a height to come) a peer's is let go and
        fetched again when announced, as the pool's refusals for now are."""
        tx = refused.tx
        origin = peer if from_peer else self._own_origin(tx, client)
        if self._parks(tx, refused):
            self._refetch(self.admission.park(tx, refused, origin, proven=False))
            if not from_peer:
                raise TxHeldError(tx.id, refused) from None
        elif from_peer and refused.reason in _UNPROVEN_FOR_NOW:
            self._refetch([tx.id])

    def _watch(self, tx: Tx, origin: Origin) -> None:
        """Watch the pooled `tx`, submitted here (by a client of `origin`, or this node):
        gossiped again while pending, and parked as its origin's if dropped."""
        # Last in the schedule, which stays in the order of the heights sent at: a tx
        # submitted again kept its old place, holding back the ones behind it (fix17).
        local = self._local
        local.pop(tx.id, None)
        local[tx.id] = (tx, self.chain.height, origin)
        while len(local) > LOCAL_KEPT:
            local.popitem(last=False)

    def _pool(self, tx: Tx, origin: Origin, *, parked: bool = False) -> None:
        """Put the admitted `tx` (from `origin`: a peer, this node's clients or itself) in
        the mempool, kept as checked; else raise its refusal, parked if it can clear
        (`parked`: it was parked, so never committed)."""
        admission = self.admission
        try:
            # A fee-free tx is checked against committed state before it is pooled or
            # relayed: nothing else makes a flood of them cost anything.
            duty_node = admission.check_duty(tx) if tx.kind in FEE_FREE else None
            if tx.kind is not _TRANSFER and duty_node is None:
                account = self.account_of(tx.sender_address)
                if tx.nonce == account.nonce:
                    # A paid kind whose handler can refuse on state: dry-run it for the
                    # sender's next nonce, or it holds room free on every non-proposer
                    # (rev18c 2); after the pool's cheap refusals, so that copies and
                    # underpriced variants cost no handler run (rev18e 1)
                    self.mempool.precheck(tx, account)
                    admission.check_paid(tx)
            dropped = self.mempool.add(tx, self.account_of, duty_node)
        except TxError as refusal:
            self._refused(tx, refusal, origin, parked)
            raise
        admission.keep(tx)
        left: list[tuple[Tx, TxError]] = []
        if dropped is not None:  # evicted or replaced
            pushed_out = _pushed_out(dropped, tx)
            self._note_evicted(dropped, pushed_out)
            self._drop(dropped, pushed_out, self._origin_of(dropped))
            left.append((dropped, pushed_out))
        evicted = self.mempool.take_evicted()  # a tail its balance no longer covers
        if evicted:
            self._evicted(evicted)
            left.extend(evicted)
        self._rejected.pop(tx.id, None)
        sender = tx.sender_address
        if not parked and admission.has_parked(sender) and self.mempool.executable(tx):
            self._offer_parked_of(sender)
        if left and tx.kind is not _EVIDENCE and self.own_reports:
            # A paid tx that outbids pending evidence, or gaps it out, frees its offender's
            # slot (an offender's own parked report, red23c): this node's report of the
            # offence takes it now, not a block later.
            freed = [t.payload.vote_a.validator for t, _ in left if t.kind is _EVIDENCE]
            if freed:
                self._offer_own_reports(freed)
        if left:
            # One of this node's own txs may have left (its report, another's taking the
            # slot): the duties it sent after it are signed again at once, not at the next
            # block's recheck, whose block they could not go in (behind the gap): one due by
            # an epoch's last block would miss its epoch (p2p24 3).
            self._sign_again_behind(left, between_blocks=True)

    def _offer_parked_of(self, sender: bytes) -> None:
        """`sender`'s executable run grew in the pool: offer its parked txs at once (the
        ones refused behind its gap may fit now), relay the pooled."""
        self._reoffer(lambda offer: self.admission.offer_parked_of(sender, offer))

    def _refused(self, tx: Tx, refusal: TxError, origin: Origin, parked: bool) -> None:
        """The mempool refused the admitted `tx`: raise ALREADY_KNOWN for a committed one
        (noted, so that its next copy costs one hash); else park or forget it (`_drop`)."""
        own = is_own(origin)
        if not own and refusal.reason is Reason.ALREADY_KNOWN and tx.id in self.mempool:
            # A peer's copy of a pooled tx (gossip's commonest refusal): no tx index read
            # (held18 3). A client is still told a tx its block just committed is confirmed.
            return
        # A committed tx's nonce is spent, so the pool always refuses it: the tx index (a
        # LevelDB read) is asked only then, to name the refusal, not on every tx admitted
        # (issue 24, docs/performance.md "Devnet profile"). A parked tx is never committed:
        # its block forgot it.
        if not parked and self.chain.tx_location(tx.id) is not None:
            # Committed long ago (outside the committed-ids record): its next copy is
            # refused after one hash, and this one never took a place in `checked`.
            self.admission.note_committed((tx.id,))
            raise TxError(Reason.ALREADY_KNOWN, "this tx is already confirmed") from None
        if own and not parked:
            if self._parks(tx, refusal):
                self._drop(tx, refusal, origin)
            elif self.admission.is_parked(tx.id):
                # A client's re-post (or a peer's parked copy) refused so: told refused, so
                # no longer held; an offer's refusal lets it go the same way (rev20a 4).
                self._let_go(tx, refusal, origin)
            return  # else a client is told; nothing is kept, nothing to fetch again
        # A peer's duty refused for a pending one of its (kind, node) is kept to be taken
        # back when a recheck frees that slot (`_take_kept_duties`, p2p25 1, rev25p 1).
        # Not a report: its own node offers it again (`_offer_own_reports`), and an old
        # one relayed again would take the slot of its sender's duty signed again at that
        # nonce, then be refused at the recheck, the duty lost (late25p 1).
        pending = (
            refusal.reason is Reason.DUTY_PENDING
            and tx.kind in FEE_FREE
            and tx.kind is not _EVIDENCE
        )
        self._drop(tx, refusal, origin, pending=pending)

    def _drop(self, tx: Tx, reason: TxError, origin: Origin, *, pending: bool = False) -> None:
        """`tx` is not (or no longer) pooled, for `reason`: parked if its sender's next
        account change can clear it; else forgotten (a pooled tx dropped is no longer
        held: rev18a 4), and if it can clear otherwise (room frees, a height comes), the
        tx relay fetches it again when announced after a cool-down (held18c). `pending`:
        a duty refused `duty_pending` at the door (`ExtraTxs.add`)."""
        if self._parks(tx, reason):
            self._gone(tx, origin, self.admission.park(tx, reason, origin))
        elif tx.id not in self.mempool:
            self._let_go(tx, reason, origin, pending=pending)

    def _let_go(self, tx: Tx, reason: TxError, origin: Origin, *, pending: bool = False) -> None:
        """Forget `tx`, not pooled or parked (any more) for `reason`; if it can clear
        otherwise, the tx relay fetches it again when announced."""
        self.admission.forget((tx.id,))
        gone = [tx.id] if self._clears_later(tx, reason) else []
        self._gone(tx, origin, gone, pending=pending)

    def _gone(self, tx: Tx, origin: Origin, gone: list[bytes], *, pending: bool = False) -> None:
        """These ids (maybe `tx`'s, of `origin`) are no longer held: kept for a proposal
        that names `tx` (and, `pending`, to be taken back: `ExtraTxs.add`), and fetched
        again when announced."""
        if gone:
            if tx.id in gone and self._includable(tx):  # a proposal may still name it
                self.extra.add(tx, origin, pending=pending)
            self._refetch(gone)

    def _parks(self, tx: Tx, refusal: TxError) -> bool:
        """Whether `tx`, refused so, is parked: it can clear, and with its sender's account
        (the only change that offers it again). A fee-free tx's refusals clear with height
        or node records, `mempool_full` with room (rev18b 1, 4), and a paid kind's handler
        refusals (expire_too_far, app_exists, domain_taken...) with height, apps or nodes
        (rev18e 4): those are forgotten and refetched."""
        return (
            tx.kind not in FEE_FREE
            and refusal.reason in SENDER_CLEARS
            and self._clears_later(tx, refusal)
        )

    def _includable(self, tx: Tx) -> bool:
        """Whether a block could take `tx` now, as far as its sender's account says: a
        nonce in the pool's window, a balance that covers its fee (an unfunded key signs
        junk for free: none of it goes to `extra`, rev19b 3). Read from `chain.state`, as
        the pool's admission reads it, so a block executed but not yet committed shows
        its writes. Harmless: that block commits (then this is the state to come) or is
        aborted, and a tx misjudged meanwhile is one kept in vain (within the store's
        bounds, read only by its id, checked in full by a block that takes it) or one
        not kept (fetched, as without the store)."""
        account = self.account_of(tx.sender_address)
        return (
            account.nonce <= tx.nonce < account.nonce + self.mempool.limits.max_per_sender
            and account.balance >= tx.fee
        )

    def _origin_of(self, tx: Tx) -> Origin:
        """Where a pooled `tx` came from, as far as parking needs: this node's own txs are
        watched (`_local`); the pool keeps no peer, so the rest count as an unnamed peer's."""
        local = self._local.get(tx.id)
        return "" if local is None else local[2]

    @staticmethod
    def _own_origin(tx: Tx, client: str) -> Origin:
        """The origin of a tx submitted here: None for a duty (never parked), its client's
        for a paid tx, so that a client's flood pushes out its own parked txs, never
        another client's (api21 1) or a peer's (rev20a 3)."""
        return None if tx.kind in FEE_FREE else client

    def _clears_later(self, tx: Tx, refusal: TxError) -> bool:
        """Whether a later commit can make the mempool take `tx` after `refusal`: every
        stateful reason but a nonce below the account's, which only ever grows."""
        if refusal.reason is Reason.ALREADY_KNOWN:
            return False
        if refusal.reason is Reason.NONCE_MISMATCH:
            return tx.nonce >= self.account_of(tx.sender_address).nonce
        return True

    def _offer_parked(self, touched: Iterable[bytes] | None) -> None:
        """Offer again the parked txs of the senders a block changed (`touched`; None:
        any), at most PARKED_OFFERS a block, from their kept bytes; relay the pooled."""
        self.admission.note_changed(touched)
        self._reoffer(self.admission.offer_parked)

    def _reoffer(self, walk: Callable[[Callable[[Tx], None]], None]) -> None:
        """Let `walk` offer parked txs to the pool (each refusal recorded); relay the
        pooled."""
        pooled = []

        def offer(tx: Tx) -> None:
            origin = self.admission.parked_origin(tx.id)  # pooling unparks it
            try:
                if self.admission.is_unproven(tx.id):
                    self.admission.prove(tx)  # parked still, or let go, if refused
                self._pool(tx, origin, parked=True)
            except TxError as refusal:
                self._remember_rejection(tx.id, refusal)
                return
            pooled.append(tx.id)
            if origin is not None and is_own(origin):
                # A client's held tx, pooled at last: watched as its client's other txs,
                # so that a later drop parks it under its client's group again, not as
                # an unnamed peer's that a peer's flood pushes out (rev21a 3).
                self._watch(tx, origin)

        walk(offer)
        if pooled:
            self._relay(pooled)

    def candidates(self) -> list[Tx]:
        """Pooled txs for the next block, in the order a proposer takes them."""
        return list(self.mempool.candidates(self.account_of))

    def _regossip_local(self, height: int, committed: tuple[bytes, ...]) -> None:
        local = self._local
        for tx_id in committed:
            local.pop(tx_id, None)
        # Oldest sent first (a re-gossiped tx moves to the end): only the front, sent
        # REGOSSIP_BLOCKS or more ago, is looked at, not every pending local tx a block.
        while local:
            tx_id, (tx, sent, origin) = next(iter(local.items()))
            if height - sent < REGOSSIP_BLOCKS:
                break
            if tx_id not in self.mempool:
                del local[tx_id]  # replaced or dropped
                continue
            self._gossip(tx)
            local[tx_id] = (tx, height, origin)
            local.move_to_end(tx_id)

    def _remember_rejection(self, tx_id: bytes, exc: TxError) -> None:
        self._rejected[tx_id] = TxStatus("rejected", reason=str(exc.reason), message=exc.message)
        while len(self._rejected) > REJECTED_KEPT:
            self._rejected.popitem(last=False)

    def _note_evicted(self, tx: Tx, exc: TxError) -> None:
        """The pooled `tx` left the pool uncommitted, for `exc`. It was relayed to peers
        when pooled (a client's gossiped, a peer's announced), so it may still commit from
        their pools: `tx status` says `evicted`, not `rejected`, until its nonce is spent,
        and a wallet keeps its nonce meanwhile (api21 2)."""
        status = TxStatus("evicted", reason=str(exc.reason), message=exc.message)
        evicted, of_sender = self._evicted_txs, self._evicted_of
        self._forget_evicted(tx.id)  # evicted again: its newest reason, last in its turn
        evicted[tx.id] = (tx, status)
        of_sender.add(tx.sender_address.hex(), tx.id, len(tx.raw))
        while len(evicted) > EVICTED_KEPT:
            self._forget_evicted(of_sender.victim())
        while of_sender.total_bytes > EVICTED_BYTES:
            self._forget_evicted(of_sender.victim(by_bytes=True))

    def _forget_evicted(self, tx_id: bytes) -> None:
        self._evicted_checked.pop(tx_id, None)
        record = self._evicted_txs.pop(tx_id, None)
        if record is not None:
            self._evicted_of.remove(record[0].sender_address.hex(), tx_id)

    def note_dropped(self, tx: Tx, exc: TxError) -> None:
        """A proposer dropped a pooled tx that no longer applies: record why, forget it.

        A duty that still passes admission stays: evidence of the height being decided
        cannot go into that height's block, only into the next one. So does a paid tx of
        a kind whose handler refuses on state (not a transfer) that still applies on the
        committed state (or waits behind its sender's earlier nonces): the drop was
        relative to the block being built (two registrations of one name), and once that
        block commits, every node's recheck decides it the same way, `rejected` if it
        fails. One that the committed state refuses is refused so by every node: `rejected`
        at once (rev21a 2). A tx kept costs a bounded amount: a build meets it at most
        once (its dry-run here no dearer than the build's own attempt); a commit rechecks
        it once it heads its sender's txs (`recheck_paid`, a budget a block, round-robin),
        and a later build that meets it first checks it against the new committed state.
        """
        if tx.kind in FEE_FREE:
            try:
                self.admission.check_duty(tx)
            except TxError:
                pass
            else:
                return
        elif tx.kind is not _TRANSFER:
            refusal = self._committed_refusal(tx)
            if refusal is None:
                return
            self._remove(tx, refusal, everywhere=True)
            return
        self._remove(tx, exc)

    def _committed_refusal(self, tx: Tx) -> TxError | None:
        """The committed state's refusal of paid `tx` at its sender's next nonce (its
        handler dry-run, `admission.check_paid`); None if it applies there, or if its
        sender's earlier nonces come first (those decide it when they commit)."""
        committed = get_account(self.chain.state.committed_view(), tx.sender_address)
        if tx.nonce != committed.nonce:
            if tx.nonce < committed.nonce:
                return TxError(Reason.NONCE_MISMATCH, f"nonce {tx.nonce} was spent")
            return None
        try:
            self.admission.check_paid(tx)
        except TxError as refusal:
            return refusal
        return None

    def _remove(self, tx: Tx, exc: TxError, *, everywhere: bool = False) -> None:
        """Take the pooled `tx` out for `exc` (`everywhere`: as `_evicted` says), with the
        later txs of its sender the gap leaves too many (pool18)."""
        origin = self._origin_of(tx)
        gapped_out = self.mempool.remove(tx.id)
        if everywhere:
            self._remember_rejection(tx.id, exc)
        else:
            self._note_evicted(tx, exc)
        self._drop(tx, exc, origin)
        self._evicted(gapped_out)

    def _evicted(self, evicted: Iterable[tuple[Tx, TxError]], *, everywhere: bool = False) -> None:
        """The pool evicted these txs for these reasons: record why, park or forget each.

        `everywhere`: the committed state every node shares made them invalid (a block's
        rechecks), so every honest pool drops them too and they are told `rejected`; the
        rest left this node's pool only (room, a replacement, an unpaid tail) and are
        `evicted`: they may still commit from a peer's pool."""
        for tx, exc in evicted:
            if everywhere:
                self._remember_rejection(tx.id, exc)
            else:
                self._note_evicted(tx, exc)
            self._drop(tx, exc, self._origin_of(tx))

    def tx_status(self, tx_id: bytes) -> TxStatus:
        location = self.chain.tx_location(tx_id)
        if location is not None:
            return TxStatus("confirmed", height=location[0], index=location[1])
        if tx_id in self.mempool:
            return TxStatus("pending")
        held = self.admission.parked_refusal(tx_id)
        if held is not None:
            return TxStatus("held", reason=str(held.reason), message=held.message)
        evicted = self._evicted_txs.get(tx_id)
        if evicted is not None:  # before a later refusal of a copy: the first may commit
            tx, status = evicted
            nonce = tx.nonce
            if self.account_of(tx.sender_address).nonce <= nonce:
                return self._evicted_recheck(tx) or status
            return TxStatus(
                "rejected",
                reason=str(Reason.NONCE_MISMATCH),
                message=f"nonce {nonce} was spent by another tx",
            )
        return self._rejected.get(tx_id, TxStatus("unknown"))

    def _evicted_recheck(self, tx: Tx) -> TxStatus | None:
        """`rejected [reason]` if the committed state refuses the evicted `tx` of a paid
        kind whose handler refuses on state, at its sender's next nonce, for a reason its
        sender's account cannot clear (the name it registers was taken since): every
        node's recheck drops it so, so it can never commit. None otherwise, or past this
        height's budget (`EVICTED_RECHECKS`; each record at most once a height)."""
        if tx.kind is _TRANSFER or tx.kind in FEE_FREE:
            return None
        height = self.chain.height
        checked = self._evicted_checked.get(tx.id)
        if checked is not None and checked[0] == height:
            return checked[1]
        counted_at, count = self._evicted_rechecks
        if counted_at != height:
            count = 0
        if count >= EVICTED_RECHECKS:
            return None
        self._evicted_rechecks = (height, count + 1)
        refusal = self._committed_refusal(tx)
        status = None
        if refusal is not None and refusal.reason not in SENDER_CLEARS:
            status = TxStatus("rejected", reason=str(refusal.reason), message=refusal.message)
        self._evicted_checked[tx.id] = (height, status)
        return status

    # -- committed blocks ------------------------------------------------------------------

    def on_committed(
        self,
        block: Block,
        events: tuple[Event, ...],
        tx_ids: tuple[bytes, ...] | None = None,
        touched: Iterable[bytes] | None = None,
    ) -> None:
        """Called once per committed block, after it is on disk; `touched`: the addresses
        whose accounts it changed (`changed_accounts`; None: any may have)."""
        committed = CommittedBlock.of(block, events, tx_ids)
        touched = None if touched is None else list(touched)
        # A block's spent nonces are spent for every tx of them: only its senders' go.
        self.extra.drop_spent(touched, lambda sender: self.account_of(sender).nonce)
        admission = self.admission
        admission.note_committed(committed.tx_ids)
        self._recent.append((block.height, len(block.txs), block.header.time_ms / 1000))
        # Every committed tx's nonce is spent, so this drops each pooled one too; the
        # others it drops lost their nonce to another tx for good.
        spent, unpaid = self.mempool.settle(self.account_of)
        admission.forget(tx.id for tx in spent)
        self._evicted(unpaid)  # parked until their sender's balance changes again
        # Every node, proposer or not, drops a sender's next tx that no longer applies.
        recheck_paid = self.mempool.recheck_paid(self.account_of, admission.check_paid)
        self._evicted(recheck_paid, everywhere=True)
        # Every node, proposer or not, drops the duties this block made invalid.
        rechecked = self.mempool.recheck(self.account_of, admission.check_duty)
        self._evicted(rechecked, everywhere=True)
        self._take_kept_duties(rechecked)
        self._send_again()
        # A duty whose nonce another own tx spent, and the ones a recheck gapped out.
        self._sign_again_behind(rechecked + self._spent_by_another(spent, committed.tx_ids))
        self._offer_own_reports(self.own_reports.offenders())
        self._offer_parked(touched)
        self._regossip_local(block.height, committed.tx_ids)
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(committed)
            except asyncio.QueueFull:
                # A subscriber this far behind would make the node hold blocks for it
                # forever; it is cut off and may reconnect with ?from=height.
                self._subscribers.discard(sub)
                sub.queue.get_nowait()  # make room for the end-of-stream marker
                sub.queue.put_nowait(None)
                if sub.on_cut is not None:
                    sub.on_cut()

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        """Committed-block streams being fed (not yet cut off or gone)."""
        return len(self._subscribers)

    def committed_block(self, height: int) -> CommittedBlock | None:
        if not 1 <= height <= self.chain.height:
            return None
        return CommittedBlock.of(self.chain.get_block(height), tuple(self.chain.events(height)))

    # -- figures ---------------------------------------------------------------------------

    def peer_count(self) -> int:
        """Connected p2p peers."""
        return self._peer_count()

    def consensus_round(self) -> int:
        """The round consensus is in at the current height."""
        return self._consensus_round()

    def storage_failed(self, error: StoreError) -> None:
        """This node's storage failed (met by a reader): the node stops."""
        self._storage_failed(error)

    @property
    def syncing(self) -> bool:
        """Block sync is more than a block behind the best peer."""
        return self._syncing()

    @property
    def mempool_size(self) -> tuple[int, int]:
        return len(self.mempool), self.mempool.size_bytes

    def signature_counts(self) -> SignatureCounts:
        admission = self.admission
        return SignatureCounts(
            admission.signatures_verified,
            self.chain.signatures_verified,
            admission.block_verified_taken,
        )

    def health(self) -> dict[str, Any]:
        """What checkers see at /health: the node serves, and its agent (if any) can run apps."""
        problem = self.agent.problem()
        out: dict[str, Any] = {
            "healthy": problem is None,
            "height": self.chain.height,
            "syncing": self.syncing,
            "agent": self.agent.summary(),
        }
        if problem is not None:
            out["problem"] = problem
        proofs = self.health_proofs()
        if proofs is not None:
            out["proof"], previous = proofs
            if previous is not None:
                out["previous"] = previous
        return out

    def health_proofs(self) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """Which node answers /health, for its checkers (`uptime.health_proof_valid`): its
        node id and its node key's signatures over `uptime.health_digest` for this epoch
        and (from epoch 1) the one before, "proof" and "previous" in `health()`; None
        while this key runs no registered node.

        The previous epoch's proof lets a checker a block behind, still in that epoch,
        count this node up. Its nonce is committed (`uptime.proof_nonces`: the current
        `epoch_seed`), so it is signed on demand when this process did not sign it during
        that epoch (restarted at the boundary, or asked nothing). Each is signed once and
        kept: /health skips the read budget, so a signature per request would let anyone
        spend this node's CPU (docs/security.md); at most two signatures per epoch."""
        if self._node_key is None:
            return None
        state = self.chain.state.committed_view()
        node = get_node_by_key(state, self._node_key.public_key)
        if node is None:
            return None
        wanted = [
            (epoch, node.node_id, nonce) for epoch, nonce in proof_nonces(state.get(META)).items()
        ]
        kept: dict[tuple[int, bytes, bytes], dict[str, Any]] = {}
        for epoch, node_id, nonce in wanted:
            proof = self._health_proofs.get((epoch, node_id, nonce))
            if proof is None:
                digest = health_digest(self.chain.params.chain_id, node_id, epoch, nonce)
                signature = self._node_key.sign(digest).hex()
                proof = {"node_id": node_id.hex(), "epoch": epoch, "signature": signature}
                self.health_signatures += 1
            kept[(epoch, node_id, nonce)] = proof
        self._health_proofs = kept  # any other is for an epoch no checker accepts
        proofs = list(kept.values())
        return proofs[0], proofs[1] if len(proofs) > 1 else None

    def agent_report(self, token: str, report: dict[str, Any]) -> bool:
        """Take the agent's heartbeat; False when the token is not this node's."""
        if not self.agent.accept(token, report):
            return False
        self._volume_device = report.get("syncthing")
        return True

    def volume_device(self) -> dict[str, str] | None:
        """The agent's Syncthing device id and address signed with the node key (what other
        hosts of an app check before syncing a replicated volume with it); None while the
        agent has not reported one or is not healthy."""
        device = self._volume_device
        if device is None or self._node_key is None or self.agent.problem() is not None:
            return None
        node_key = self._node_key.public_key
        digest = device_claim_digest(
            self.chain.params.chain_id, node_key, device["device_id"], device["address"]
        )
        return {
            "node_key": node_key.hex(),
            "device_id": device["device_id"],
            "address": device["address"],
            "signature": self._node_key.sign(digest).hex(),
        }

    def agent_status(self) -> dict[str, Any]:
        return self.agent.status()

    # -- owner operations ------------------------------------------------------------------

    def node_id(self) -> bytes | None:
        """This node's id in committed state (None until its registration is confirmed)."""
        if not self.node_public_key:
            return None
        node = get_node_by_key(self.chain.state.committed_view(), self.node_public_key)
        return None if node is None else node.node_id

    def check_owner_request(self, request: OwnerRequest) -> list[int]:
        """The instances on this node a valid owner request covers; OwnerRequestError if
        it is refused (its nonce is used only when it is accepted)."""
        node_id = self.node_id()
        if node_id is None:
            raise OwnerRequestError(Refusal.NOT_HOSTED, "this node is not a registered node")
        now_ms = self._wall_clock_ms()
        instances = check_owner_request(
            request,
            self.chain.state.committed_view(),
            self.chain.genesis.chain_id,
            node_id,
            now_ms,
            self.nonces,
        )
        self._save_owner_nonce(request.pubkey, request.nonce, request.expiry_ms, now_ms)
        return instances

    def _save_owner_nonce(self, signer: bytes, nonce: bytes, expiry_ms: int, now_ms: int) -> None:
        """Keep an accepted request's nonce on disk until its expiry (durably, before the
        agent acts on it), so that a node restart is no chance to replay the request; the
        ones past their expiry go, in expiry order (the names sort by it)."""
        for name, _ in list(self.chain.db.meta_items(OWNER_NONCES)):
            if int.from_bytes(name[len(OWNER_NONCES) :][:8], "big") >= now_ms:
                break
            self.chain.db.delete_meta(name)
        name = OWNER_NONCES + expiry_ms.to_bytes(8, "big") + nonce + signer
        self.chain.db.put_meta(name, b"")

    def _load_owner_nonces(self) -> None:
        """The nonces of the requests accepted before the node last stopped, still live."""
        now_ms = self._wall_clock_ms()
        for name, _ in self.chain.db.meta_items(OWNER_NONCES):
            rest = name[len(OWNER_NONCES) :]
            expiry_ms = int.from_bytes(rest[:8], "big")
            nonce, signer = rest[8 : 8 + NONCE_SIZE], rest[8 + NONCE_SIZE :]
            if expiry_ms < now_ms:
                continue  # the next accept deletes it
            with contextlib.suppress(OwnerRequestError):  # the book full: it forgets, safely
                self.nonces.use(signer, nonce, expiry_ms, now_ms)

    def agent_token_ok(self, token: str) -> bool:
        return self.agent.token_ok(token)

    async def agent_control(self, ws: Any) -> None:
        """Hold the agent's control channel (its token already checked) until it leaves."""
        await self.agent.control.serve(ws)

    def agent_call(self, command: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Send a command down the control channel; the agent's items as they come."""
        return self.agent.control.call(command)

    def agent_app_report(self, name: str) -> dict[str, Any]:
        """The public report of one app's workloads on this node, with this node's id."""
        out = self.agent.app_report(name)
        out["node_id"] = (self.node_id() or b"").hex()
        return out

    async def add_instance_reports(self, view: dict[str, Any]) -> None:
        """Each instance of an app view gets its hosting agent's report (`agent`)."""
        await self.reports.add_reports(view)

    def block_time_s(self) -> float:
        """Mean interval between recent blocks, from their header times."""
        if len(self._recent) < 2:
            return 0.0
        first, last = self._recent[0], self._recent[-1]
        return (last[2] - first[2]) / (last[0] - first[0])

    def tx_per_s(self) -> float:
        if len(self._recent) < 2:
            return 0.0
        span = self._recent[-1][2] - self._recent[0][2]
        txs = sum(n for _, n, _ in list(self._recent)[1:])
        return txs / span if span > 0 else 0.0
