"""Tx relay by id (issue 22): announce a tx's id, fetch its body from whoever announced it.

A tx's origin (the node that admitted it from its API) pushes the body to every peer in a
TXS frame (node.py); a node that admitted a tx from a peer does not relay the body, it
announces the id (TX_IDS) to each peer not known to hold it. A peer that lacks an
announced id (not in its pool, not received lately, not being fetched) asks the announcer
for it (GET_TXS), and the answer (TX_BODIES) goes to the host as a TXS frame from that
peer would, but is not relayed by body: the host announces what it admits.

Bitcoin's inv/getdata and Ethereum's eth/68 pooled-tx announcements do the same: a body
crosses each link at most about once, an id (32 bytes) crosses the rest.

Per peer we remember the ids it is known to hold (it announced or sent them, or we did to
it; bounded), its requests in flight, and the announcements and requests waiting to leave
(batched for `Limits.tx_announce_wait`, like TXS). Announcements trickle (issue 22,
wan23t; Bitcoin's inv trickling): `Limits.tx_announce_fanout` peers drawn each window get
a tx's id at the window's end, every other peer at its own next trickle time (a random
delay around `Limits.tx_trickle_interval`), less the ids it announced to us meanwhile and
the txs no longer in the mempool: on a dense mesh, where every peer has the origin's
push, most announcements vanish. Per id being fetched, the announcers to ask, in order (as
many as for a refused tx below, the gone ones making room: rev16a): a
request unanswered within `Limits.tx_fetch_timeout`, or an answer that misses the id,
moves it to the next announcer; after that first failure each next announcer is also
asked once the one before stayed silent `Limits.tx_fetch_retry_after` (its request stays
open until its own timeout); with none left, the id is dropped until announced again.
A peer announcing ids faster than `Limits.tx_ids_rate` has the rest
ignored; ids of a request it left unanswered past the timeout cost it POINTS_UNDELIVERED_TX
each (a miss inside an answer is free: honest peers miss txs committed meanwhile); an
answer holding a tx not asked for, or with an unknown request id, is scored as a bad or
unsolicited answer.

After rev13a's review: a fetch lasts until the host has taken the tx (`handled`), so a
link lost while fetched bodies wait in its inbox hands them to the next announcers; we
keep to the id rates our peers apply to us, and ask a peer only while its byte budget has
room for the answers, which spend it; we answer a peer once its send queue has room, send
it each body at most SERVE_TIMES, and an asker takes a large answer's missing tail as cut
for size (asked again), not missed.

After rev13c's review: a peer's share of `max_tx_fetching` is counted over every peer slot,
not the peers connected now, and ids announced past it wait in its backlog instead of
being dropped; a cut re-ask is hedged like a retry (the next announcer is asked too after
`tx_fetch_retry_after`); and a request leaves only while the bodies kept for a full inbox
leave room for its answer, so that a stalled host does not make us ask for a body again
and again until its server answers "not held".

After rev14a's review: a late answer takes back the `undelivered` points of the txs it
delivers, and a request's time counts from when it left our send queue; a peer's share
counts the bodies it delivered that wait for the host; a body is served only to a peer
we announced it to (SERVE_TIMES per announcement); and a TX_IDS dropped at a peer's
budget or full queue leaves its ids for the next flush.

After rev14b's review: a late answer takes back at most what is left of its request's
own points (decayed as the score); a peer whose request expired, or sat in our send queue
at its deadline, is late until it answers in time (`Limits.tx_fetch_late_for`): the ids it
announces first wait `tx_fetch_retry_after` for an announcer not late; and a slow link's
expired requests keep their places among its open requests (EXPIRED_HOLD_TIMEOUTS).

A tx the host refused for a full mempool (`forget_received`; reviews rev14b to rev15c) is
not fetched for `Limits.tx_refused_cooldown`, doubled at each refusal in a row up to
`tx_refused_cooldown_max`, and never of the peer that delivered it (its announcements alone
start nothing: the record ends in turn, as bounded). Its announcers meanwhile are
remembered, one per peer slot (`tx_fetch_announcers`) or per peer connected if more are
(gone peers making room, so that Sybils announcing first cannot turn an honest holder
away), and kept across a new refusal. When the cool-down ends (the `_refetch` timers, or an
announcement after it) the record ends and the tx is refetched from them: the ones not late
and least scored first, each next one when one misses, asked at once as a retry (past the
holder's share if need be, never through its bounded backlog), counting against
`max_tx_fetching`, at most REFETCH_PER_FLUSH between two flushes, by timers and
announcements alike. A record or refetch that ends without the tx leaves its count of
refusals (bounded as the records), so that the back-off goes on (fix16a). A holder counts
as connected by the network's live peers. Work due within TIMER_SLACK is done by the flush
a timer runs, so an early timer does not spin it.

After p2p24: a link replaced as a duplicate (`Network._establish`) hands the ids announced
on it and not asked for, or waiting to be, to the new link, which announces them again
(`announce_again`): its queued TX_IDS were lost with it, and nothing else announces an id
twice; an id the peer asked for is known to it (rev24p B).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import filterfalse
from typing import Final, Protocol

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack
from p2p.connection import Forgive, Links, Misbehave
from p2p.errors import P2PError, PeerReason
from p2p.limits import (
    POINTS_BAD_RESPONSE,
    POINTS_RATE_LIMITED,
    POINTS_UNDELIVERED_TX,
    POINTS_UNSOLICITED,
    Limits,
    Rate,
    TokenBucket,
    decayed,
)
from p2p.messages import (
    MAX_BLOCKS_RESPONSE_BYTES,
    MAX_FRAME,
    MAX_REQUEST_ID,
    MAX_TX_IDS_PER_ANNOUNCE,
    MAX_TXS_PER_FETCH,
    TX_ID_SIZE,
    GetTxs,
    Gossip,
    Kind,
    MiB,
    TxBodies,
    TxIds,
    encode,
    lane_of,
)
from p2p.peer import BoundedSet, Peer

log = logging.getLogger("fluxchain.p2p")

# The send-queue lane our GET_TXS requests wait in: a request's mark counts frames of it.
_GET_TXS_LANE: Final = lane_of(Kind.GET_TXS)

# Requests of a peer whose answers came too late, by request id, kept so that one late
# answer to each is still taken (on a congested link the only holder may answer late), not
# scored as unsolicited; a second answer to the same id is unsolicited.
EXPIRED_KEPT: Final = 64

# An expired request of a peer whose last answer came late (a slow link, still carrying
# the answers asked before) keeps its place among its open requests (the reserve for its
# answer, `_send_requests`) until answered, or this many `tx_fetch_timeout`s after its
# deadline: such a peer is asked no faster than it answers (rev14b: freed at the
# deadline, requests piled onto it two a sweep, each answer in transit counted 10.24
# `undelivered` points until it landed, and the honest peer was banned). A peer that
# answers nothing, or in time, is asked (and scored) again at once, as before.
EXPIRED_HOLD_TIMEOUTS: Final = 16

# A timer may run up to the clock's resolution early (asyncio runs what is due within
# it; 15.6 ms on Windows): what is due within TIMER_SLACK is done by the flush it runs,
# so that an early timer does not re-run the flush with no delay until the clock passes
# (rev14c).
TIMER_SLACK: Final = max(0.01, 2 * time.get_clock_info("monotonic").resolution)

# Fetched txs go to the host in TXS frames of at most this many: a node refuses a TXS
# frame of more than 2,000 (fluxchain.node MAX_TXS_PER_FRAME) and punishes its peer
# (rev13a: kept answers were handed over as one frame of 2,048).
HANDOVER_TXS: Final = MAX_TXS_PER_FETCH

# A tx body is sent to one peer at most this often: once, and once more for an asker
# whose host had no room for the first copy (it asks the same peer again). More requests
# for it are answered as misses: sixteen requests for the same large txs drew sixteen
# copies, megabytes for a few kilobytes (rev13a).
SERVE_TIMES: Final = 2

# GET_TXS of a peer waiting for room in its send queue; past them, a request is answered
# empty (its ids as misses: the asker tries elsewhere).
PARKED_KEPT: Final = 64

# An answer holds at most `answer_bytes` of txs (`serve`); one holding more than
# `cut_mark` may have been cut there: the ids after its last tx are asked of the same peer
# again rather than counted as misses.
ANSWER_OVERHEAD: Final = MAX_FRAME - MAX_BLOCKS_RESPONSE_BYTES  # room for the frame's fields

# The cut mark of every asker, whatever its own limits: a sender cuts an answer within a
# tx of its `answer_bytes`, so any sender whose `answer_bytes` passes the mark by a tx
# (its bulk share of byte budget and send queue ~1.1 MiB at 64 KiB txs: every config but
# tests' throttled links) cuts above it, however small its queue next to the asker's
# (rev17a 2: judged by half the asker's own ~8 MiB, a 5 MiB queue's ~3.7 MiB answers were
# taken as misses and their tails lost). Answers of small txs (a request's 1,024 of ~250
# bytes: 256 KiB) stay below it: their honest misses still go straight to the next
# announcer.
ANSWER_CUT_MARK: Final = 1 * MiB


def answer_bytes(limits: Limits) -> int:
    """The tx bytes of a whole TX_BODIES answer: a frame's worth, within the bulk share of
    the byte budget and of the send queue (an answer must leave its peer's consensus
    reserve, rev16b 2; fix17: with `send_queue_bytes` at 8 MiB, an 8 MiB answer never
    fitted the queue's 6 MiB and stayed parked)."""
    budget_reserve, _, queue_reserve = limits.consensus_reserve()
    bulk_budget = int(limits.bytes_burst - budget_reserve)
    bulk = min(bulk_budget, limits.send_queue_bytes - queue_reserve) - ANSWER_OVERHEAD
    return max(1, min(MAX_BLOCKS_RESPONSE_BYTES, bulk))


def cut_mark(limits: Limits) -> int:
    """The tx bytes above which an answer that misses its tail was cut for size: the
    protocol's ANSWER_CUT_MARK, lower only for an asker whose own answers are smaller (it
    re-asks more, never drops: a peer of the same limits cuts below the mark)."""
    return min(ANSWER_CUT_MARK, answer_bytes(limits) // 2)


# Fetched txs kept for a peer whose inbox is full (a stalled host), at most: room for two
# whole answers. A request leaves only while what is kept leaves room for a whole answer
# to it and to each other request open (`_send_requests`), so that an answer always
# finds room: an asker whose host stalled re-asked at every flush, and the server, which
# sends a body at most SERVE_TIMES, answered the third request "not held" (rev13c). Two:
# a peer's share of `max_tx_fetching` (2,000 ids) fits in two requests.
UNQUEUED_BYTES: Final = 2 * MAX_BLOCKS_RESPONSE_BYTES

# A peer's next trickle comes after a random delay of mean about `tx_trickle_interval`:
# half of it, plus an exponential of mean half of it (random, so that the order in which
# peers hear of a tx says little of where it came from), at most TRICKLE_MAX_FACTOR times
# it (so that a tx crosses a sparse network in a known time). The half at least leaves
# time for the fast announcements of the peers that got the tx too to reach us first:
# the trickle then leaves their ids out.
TRICKLE_MIN_FACTOR: Final = 0.5
TRICKLE_MAX_FACTOR: Final = 2.5

# Refused txs whose cool-down ended refetched between two flushes, at most, by the flush's
# timers and by announcements together (each ranks its announcers, up to
# `tx_fetch_announcers`); the rest stay due for the next flush, a batching window later
# (rev15c: every due refetch ran in one flush, and 100,000 refused records due at once
# held the loop for a whole ranking each; fix16a: one TX_IDS of refused ids past their
# cool-down started them all, uncapped).
REFETCH_PER_FLUSH: Final = MAX_TXS_PER_FETCH


class RelayCounts:
    """Ids through the relay since start (a node's `/metrics`; bench.wan counts what a
    tx costs a node): announced to us, news among them (a fetch started), announced by
    us, asked of peers, fetches ended by a body from elsewhere before their request left,
    bodies that came in answers and, of them, the ones already held by then."""

    __slots__ = ("announced_in", "announced_out", "asked", "fetched", "held", "news", "unasked")

    def __init__(self) -> None:
        self.announced_in = 0
        self.news = 0
        self.announced_out = 0
        self.asked = 0
        # Fetches that ended before their request left: the body came meanwhile.
        self.unasked = 0
        self.fetched = 0
        # Fetched bodies of txs held by the time they came (pushed meanwhile).
        self.held = 0

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class TxPool(Protocol):
    """The txs a node holds, by id. Implemented by fluxchain.node."""

    def has_tx(self, tx_id: bytes) -> bool:
        """Whether this node holds (or just admitted, or lately committed) the tx `tx_id`."""

    def in_mempool(self, tx_id: bytes) -> bool:
        """Whether the tx `tx_id` still waits for a block here (not committed, not evicted)."""

    def tx_bodies(self, tx_ids: list[bytes]) -> list[bytes | None]:
        """The bytes of each tx of `tx_ids`, None where this node does not hold it."""


class _Request:
    __slots__ = ("deadline", "ids", "mark")

    def __init__(self, ids: list[bytes], deadline: float, mark: int) -> None:
        self.ids = ids
        self.deadline = deadline
        # Its place in its lane of the peer's send queue (`SendQueue.queued`): it has
        # left once the writer took that many frames of the lane (`SendQueue.taken`).
        self.mark = mark


class _Expired:
    """A request unanswered at its deadline: its ids, the `undelivered` points it cost and
    when (a late answer takes back at most what is left of them), and until when it keeps
    its place among the open requests (EXPIRED_HOLD_TIMEOUTS)."""

    __slots__ = ("charged_at", "held_until", "ids", "points")

    def __init__(
        self, ids: tuple[bytes, ...], points: float, charged_at: float, held_until: float
    ) -> None:
        self.ids = ids
        self.points = points
        self.charged_at = charged_at
        self.held_until = held_until


# The peers that announced an id, in order of arrival: a dict for its O(1) membership test
# (rev16a: a list's grew with the peers, on each announcement).
Announcers = dict[str, None]


class _Refused:
    """A tx the host refused as `mempool_full`: until when nobody is asked for it, the peer
    whose answer delivered it (never asked for it again while remembered), how many times
    in a row it was refused, and who else announced it meanwhile (asked once the cool-down
    is over, `_note_announcer`)."""

    __slots__ = ("announcers", "deliverer", "refusals", "until")

    def __init__(self, until: float, deliverer: str | None, refusals: int) -> None:
        self.until = until
        self.deliverer = deliverer
        self.refusals = refusals
        # Announcers of the tx during its cool-down, save its deliverer: once it is over
        # the tx is fetched from them, the ones not late and least scored first, each next
        # one asked when one misses (rev14b: honest holders announce a tx once, so their
        # announcements all fell inside the cool-down and were dropped). One per peer slot
        # (`tx_fetch_announcers`), the gone ones making room: every connected peer fits
        # (rev15a: with eight, first come, eight Sybil keys announcing at once and
        # answering "not held", free, kept it from every honest holder heard later).
        self.announcers: Announcers = {}


class _PeerTxs:
    """What we know of one peer's txs, and what waits to leave for it."""

    __slots__ = (
        "announce",
        "ask",
        "asked_ids",
        "backlog",
        "deferred",
        "expired",
        "fast",
        "handed",
        "held_since",
        "inflight",
        "known",
        "late_until",
        "next_id",
        "next_trickle",
        "offered",
        "out_asked",
        "out_ids",
        "parked",
        "parked_need",
        "requests",
        "sent_ids",
        "slow",
        "trickle",
        "unqueued",
        "unqueued_bytes",
        "waiting",
    )

    def __init__(self, limits: Limits, now: float) -> None:
        self.known = BoundedSet(limits.known_txs_per_peer)
        self.announce: list[bytes] = []  # ids to announce to it at the next flush
        # Ids to announce to it at this window's end (it is a fast peer for them), checked
        # against `known` only then: left out if it announced them to us meanwhile (on a
        # full mesh every peer has the origin's push, and of two peers telling each other
        # the same ids in one window, the later one's frame was news to nobody).
        self.fast: list[bytes] = []
        # Ids to announce to it at `next_trickle` (not yet in `known`: left out then if it
        # announced them to us meanwhile). Past known_txs_per_peer (a burst admitted, or a
        # replaced link's handed over by `announce_again`, at most that many) it is due at
        # once: the next flush empties it.
        self.trickle: list[bytes] = []
        self.next_trickle = 0.0
        self.ask: list[bytes] = []  # ids to ask of it at the next flush
        self.requests: dict[int, _Request] = {}
        self.inflight = 0  # ids in `requests` and `ask`
        # Ids to ask of it once it has room under max_tx_fetch_inflight (bounded by
        # known_txs_per_peer): a burst past the bound is fetched later, not lost (rev12b).
        self.waiting: deque[bytes] = deque()
        # Ids it announced that found no room under its share of `max_tx_fetching`:
        # fetched when room frees, oldest first; past known_txs_per_peer the oldest are
        # forgotten (rev13c: they were dropped, and an honest peer never announces an id
        # twice).
        self.backlog: deque[bytes] = deque(maxlen=limits.known_txs_per_peer)
        # Fetched txs (id, body) its inbox had no room for (a busy host): handed over at a
        # later flush rather than downloaded again (rev12b), up to UNQUEUED_BYTES.
        self.unqueued: list[tuple[bytes, bytes]] = []
        self.unqueued_bytes = 0
        # The TXS frames of fetched txs in its inbox, oldest first, with their ids: their
        # fetches stay open until the host has taken them (`handled`), so that a link
        # dropped meanwhile sends them to the next announcer (rev13a). Bounded by the inbox.
        self.handed: deque[tuple[Gossip, list[bytes]]] = deque()
        # Since when ids to ask of it wait for its budgets (None: none wait).
        self.held_since: float | None = None
        # Its GET_TXS waiting for room in its send queue, served by `_flush` (rev13a).
        self.parked: deque[GetTxs] = deque()
        # The bytes of the head parked request's answer when last built and refused for
        # our budget (0: not yet built): it is built again only once the budget holds it,
        # not at every flush while the budget refills (rev16c 1).
        self.parked_need = 0
        # The ids we announced to it, with how many more times we send it each body: only
        # those are served, each at most SERVE_TIMES however many requests name it
        # (rev13a), oldest announcement forgotten first past known_txs_per_peer (then not
        # served: rev14a, counts of bodies served were forgotten instead, and a peer asking
        # for more txs than the bound got every body again each round).
        self.offered: OrderedDict[bytes, int] = OrderedDict()
        self.expired: OrderedDict[int, _Expired] = OrderedDict()
        # Until when it is late (`Limits.tx_fetch_late_for`): the ids it announces first
        # wait in `deferred`, (when due, id), for `tx_fetch_retry_after`, and go to another
        # announcer if one comes meanwhile (rev14b).
        self.late_until = 0.0
        # Whether its last answer came late: its expired requests keep their places
        # (EXPIRED_HOLD_TIMEOUTS).
        self.slow = False
        self.deferred: deque[tuple[float, bytes]] = deque()
        self.next_id = 0
        self.sent_ids = TokenBucket(limits.tx_ids_rate, now)  # ids it announced to us
        self.asked_ids = TokenBucket(limits.tx_ids_rate, now)  # ids it asked of us
        # The limits it applies to us: ids we announce to it and ask of it past them wait
        # for the next flush rather than cost us points and be ignored (rev13a).
        self.out_ids = TokenBucket(_out_rate(limits), now)
        self.out_asked = TokenBucket(_out_rate(limits), now)


def _out_rate(limits: Limits) -> Rate:
    """The id rate we keep to toward a peer: the `tx_ids_rate` it applies to us (it runs
    our defaults), at half its burst: its bucket fills by the time frames reach it, ours
    by the time they leave, and the other half absorbs the difference."""
    return Rate(limits.tx_ids_rate.per_second, limits.tx_ids_rate.burst / 2)


class _Fetch:
    """One id we lack: the peers that announced it, which of them is being asked, and
    which one's inbox holds its body for the host (`handed`: the fetch ends when the host
    has taken it, not when the body came, rev13a)."""

    __slots__ = ("announcers", "asking", "deferred", "handed", "refusals", "tried")

    def __init__(self, announcer: str, refusals: int = 0) -> None:
        # In order of arrival, kept as `_Refused.announcers` are (`_add_announcer`).
        self.announcers: Announcers = {announcer: None}
        self.tried: set[str] = set()
        self.asking: str | None = None
        self.handed: str | None = None
        self.deferred = False  # `asking` is late and not asked yet (its `deferred`)
        # The refusals in a row of a refused tx this fetch refetches (its record is gone
        # by then): a new refusal counts on from them (`forget_received`).
        self.refusals = refusals


class TxFetcher:
    """Announcements out, and fetches of announced txs in, for one switch."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        links: Links,
        limits: Limits,
        misbehave: Misbehave,
        forgive: Forgive,
        pool: TxPool | None,
    ) -> None:
        self._peers = peers
        self._links = links
        self._limits = limits
        self._misbehave = misbehave
        self._forgive = forgive
        self._pool = pool
        self._state: dict[str, _PeerTxs] = {}
        self._fetching: dict[bytes, _Fetch] = {}
        # The ids one peer may have asked of it at once: its slot's share of the bound,
        # over every slot a node has, not the peers connected now (rev13c: a peer
        # connecting first got the whole bound, and filled it with junk).
        slots = max(1, limits.max_inbound + limits.max_outbound)
        self._share = max(1, limits.max_tx_fetching // slots)
        # Ids whose bodies reached us lately (from any peer): announced again, not fetched.
        self._received = BoundedSet(limits.seen_cache_size)
        # Ids the host refused as `mempool_full` (`forget_received`), oldest first (rev13c).
        # Bounded as `_received`, which they leave.
        self._refused: OrderedDict[bytes, _Refused] = OrderedDict()
        # The refusals in a row of refused ids whose record ended with no fetch after it
        # (no holder connected, or every one missed), as bounded: a next refusal counts on
        # from them (fix16a: it started the back-off over, so a holder that left and came
        # back reset it).
        self._refusals_before: OrderedDict[bytes, int] = OrderedDict()
        # Refetches still allowed before the next flush, from announcements or timers
        # alike (fix16a: an announcement of many refused ids past their cool-down started
        # them all at once, uncapped).
        self._refetch_room = REFETCH_PER_FLUSH
        # (end of cool-down, id) of the refused ids announced during their cool-down, the
        # earliest first: fetched from those announcers by the flush at that time.
        self._refetch: list[tuple[float, bytes]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Which peers hear of a tx at once, and when the others do. Not consensus: a
        # process-wide seed-free generator, like Bitcoin's per-peer inv timers.
        self._random = random.Random()
        # The peers told at once in this batching window, in a random order (one draw a
        # window, not one per call: at load a node takes txs from many peers a window, and
        # each draw would add frames to two more peers).
        self._fast_order: list[Peer] | None = None
        self.counts = RelayCounts()

    # -- what the host and the switch call ------------------------------------------------

    def announce(self, tx_ids: list[bytes], source: Peer | None) -> None:
        """Txs the host admitted (from `source`, or its own): `source` holds them; of the
        other peers not known to hold them, `tx_announce_fanout` chosen at random get their
        ids in their next TX_IDS frame, the rest at their next trickle (`_release`)."""
        if not tx_ids:
            return
        self._note_admitted(tx_ids, source)
        fast = self._fast_peers(source)
        now = asyncio.get_running_loop().time()
        bound = self._limits.known_txs_per_peer
        states = self._state
        earliest: float | None = None  # the earliest time of a trickle this call starts
        for peer in self._peers.values():
            if peer is source or peer.closing:
                continue
            state = states.get(peer.peer_id) or self._peer_state(peer)
            if peer in fast:
                state.fast.extend(tx_ids)
                continue
            trickle = state.trickle
            if not trickle:
                # This call fills it: its time needs a timer, whether set now or kept from
                # its last release (no flush armed one for an empty trickle; rev16d 1).
                if state.next_trickle <= now:
                    state.next_trickle = now + self._trickle_delay()
                if earliest is None or state.next_trickle < earliest:
                    earliest = state.next_trickle
            known = state.known
            # Mostly none is known to it yet (the source is the one that sent them): one
            # C-level test, then the ids whole, instead of a test per id.
            if known.keys().isdisjoint(tx_ids):
                trickle.extend(tx_ids)
            else:
                trickle.extend([tx_id for tx_id in tx_ids if tx_id not in known])
            if len(trickle) > bound:
                state.next_trickle = earliest = now  # a burst past the bound: announced now
        self._schedule_flush()
        # Only the trickles this call starts need a timer: every other waiting trickle has
        # one already (set when it started, or by the flush that left it waiting), and a
        # timer is only ever replaced by an earlier one (a scan of every peer per frame,
        # before).
        if earliest is not None:
            self._schedule_flush(max(0.0, earliest - now))

    def note_own(self, tx_ids: list[bytes]) -> None:
        """Txs the host admitted from its own API (pushed by body, never announced): held,
        so neither fetched nor counted as refused any more (fix17)."""
        self._note_admitted(tx_ids, None)

    def _note_admitted(self, tx_ids: list[bytes], source: Peer | None) -> None:
        """We hold `tx_ids` now (not fetched any more), and so does `source`."""
        self._received.note_all(tx_ids)  # as `add_all`, without the list of new ids
        # Admitted: a later refusal is a first one again, its record and its count gone
        # (fix17: a refused record outlived the admission, and counted on from it).
        for refusals in (self._refused, self._refusals_before):
            if refusals:
                for tx_id in tx_ids:
                    refusals.pop(tx_id, None)
        fetching = self._fetching
        if fetching:  # mostly empty on a mesh where every tx is pushed by its origin
            for tx_id in tx_ids:
                fetching.pop(tx_id, None)
        if source is not None:
            self._peer_state(source).known.note_all(tx_ids)

    def _fast_peers(self, source: Peer | None) -> set[Peer]:
        """This window's `tx_announce_fanout` peers told at once, save `source` (one more
        is drawn, so that leaving the source out still leaves `tx_announce_fanout`)."""
        fanout = self._limits.tx_announce_fanout
        if self._fast_order is None:
            live = [p for p in self._peers.values() if not p.closing]
            self._fast_order = self._random.sample(live, min(len(live), fanout + 1))
        picked = [p for p in self._fast_order if p is not source and not p.closing]
        return set(picked[:fanout])

    def on_frame(self, peer: Peer, message: TxIds | GetTxs | TxBodies) -> None:
        """An announcement, a request (answered now) or an answer from `peer`."""
        if peer.closing:  # a frame read before it left: its state is (being) dropped
            return
        if isinstance(message, TxIds):
            self.on_announcement(peer, message)
        elif isinstance(message, GetTxs):
            self.serve(peer, message)
        else:
            self.on_answer(peer, message)

    def expects_answer(self, peer: Peer) -> bool:
        """Whether a TX_BODIES frame from `peer` may answer a request of ours."""
        state = self._state.get(peer.peer_id)
        return state is not None and bool(state.requests or state.expired)

    def forget_peer(self, peer: Peer) -> None:
        """The peer is gone: what it was asked for goes to the next announcer, and so do
        the fetched txs its inbox still held for the host (thrown away with its link:
        rev13a, an announcer answering then disconnecting took the tx away for good)."""
        state = self._state.pop(peer.peer_id, None)
        if state is None:
            return
        peer_id = peer.peer_id
        lost = [*state.ask, *state.waiting, *(tx_id for _, tx_id in state.deferred)]
        for request in state.requests.values():
            lost.extend(request.ids)
        kept = [tx_id for _, ids in state.handed for tx_id in ids]
        kept.extend(tx_id for tx_id, _ in state.unqueued)
        lost.extend(tx_id for tx_id in kept if self._undelivered_body(tx_id, peer_id))
        for tx_id in lost:
            self._next_announcer(tx_id, peer_id)
        self._schedule_flush()

    def announcements_of(self, peer: Peer) -> tuple[list[bytes], list[bytes]]:
        """What a link replaced as a duplicate would lose (`Network._establish`): the ids
        we announced on it that it has not asked for (their TX_IDS may still sit in its
        send queue, and its asks for them die with it at both ends) or were about to, and
        the ids it is known to hold (it announced, sent or asked for them: an id we served
        it, even once, is not news to it: rev24p B). Each list holds at most
        known_txs_per_peer ids (the newest announcements): the new link's trickle keeps
        its bound."""
        state = self._state.get(peer.peer_id)
        if state is None:
            return [], []
        unasked = [tx_id for tx_id, left in state.offered.items() if left == SERVE_TIMES]
        ours = dict.fromkeys([*unasked, *state.announce, *state.fast, *state.trickle])
        again = list(ours)[-self._limits.known_txs_per_peer :]
        return again, [tx_id for tx_id in state.known if tx_id not in ours]

    def announce_again(self, peer: Peer, tx_ids: list[bytes], held: list[bytes]) -> None:
        """`peer` replaces a link to the same node (`announcements_of` it): `held` it is
        known to hold; `tx_ids` are announced to it again at the next flush, less what it
        holds by then and the txs no longer in our pool (`_release`). An id is announced
        once, when its tx is admitted: nothing else would send them (p2p24 2)."""
        state = self._peer_state(peer)
        state.known.note_all(held)
        state.trickle.extend(tx_ids)
        state.next_trickle = asyncio.get_running_loop().time()  # at the next window's end
        self._schedule_flush()

    def _undelivered_body(self, tx_id: bytes, peer_id: str) -> bool:
        """The body of `tx_id` that `peer_id` delivered is lost before the host judged it:
        whether its fetch goes on (to the next announcer: `_next_announcer`)."""
        fetch = self._fetching.get(tx_id)
        if fetch is None or fetch.handed != peer_id:
            return False  # the host took it meanwhile, or another peer's copy went in
        if self._held(tx_id):  # admitted by a handling its link's end cut short
            del self._fetching[tx_id]
            return False
        fetch.handed = None
        self._received.discard(tx_id)
        if fetch.asking is None:
            fetch.asking = peer_id
        return True

    def handled(self, peer: Peer, message: Gossip) -> None:
        """The host is done with `message` from `peer`'s inbox: if it held fetched txs,
        their fetches end (the txs it admitted were announced, ending theirs already; the
        rest it refused, and are not fetched again while remembered as received)."""
        state = self._state.get(peer.peer_id)
        if state is None or not state.handed or state.handed[0][0] is not message:
            return
        _, ids = state.handed.popleft()
        for tx_id in ids:
            fetch = self._fetching.get(tx_id)
            if fetch is not None and fetch.handed == peer.peer_id:
                del self._fetching[tx_id]
        if any(s.backlog for s in self._state.values()):
            self._schedule_flush()  # room under `max_tx_fetching` for the ids waiting

    def unreceive(self, peer_id: str, tx_ids: list[bytes]) -> None:
        """Txs from `peer_id` the host dropped unjudged (the rest of a frame that held
        garbage): not received. The ones it delivered to a fetch of ours go to their next
        announcers, as if its link had dropped them (`forget_peer`); the others (pushed)
        are fetched when announced."""
        received = self._received
        for tx_id in tx_ids:
            if self._undelivered_body(tx_id, peer_id):
                self._next_announcer(tx_id, peer_id)
            else:
                received.discard(tx_id)
        self._schedule_flush()

    def forget_received(self, tx_ids: list[bytes]) -> None:
        """Txs the host refused for now only (its mempool full): fetched again after
        `tx_refused_cooldown`, of a peer that announced them meanwhile or later, but never
        of the peer whose answer delivered them (its fetch is still open: the host is
        handling its inbox). A tx refused again keeps the holders known of it, save its
        new deliverer and those that missed it (rev14c: a new refusal forgot them, so a
        push during the cool-down, or a mempool still full, left nobody to ask), and waits
        twice as long as the last time (`_cooldown`)."""
        now = asyncio.get_running_loop().time()
        for tx_id in tx_ids:
            self._received.discard(tx_id)
            fetch = self._fetching.get(tx_id)
            old = self._refused.pop(tx_id, None)
            before = max(
                0 if old is None else old.refusals,
                0 if fetch is None else fetch.refusals,
                self._refusals_before.pop(tx_id, 0),
            )
            refused = self._refused[tx_id] = _Refused(
                now + self._cooldown(before + 1),
                None if fetch is None else fetch.handed,
                before + 1,
            )
            holders = [] if old is None else list(old.announcers)
            if fetch is not None:
                holders += [p for p in fetch.announcers if p not in fetch.tried]
            for announcer in holders:
                self._note_announcer(tx_id, refused, announcer, now)
        while len(self._refused) > self._limits.seen_cache_size:
            self._refused.popitem(last=False)

    def _cooldown(self, refusals: int) -> float:
        """How long a tx refused `refusals` times in a row is not fetched: doubled at each
        refusal, up to `tx_refused_cooldown_max` (rev15a: a tx under a full mempool's
        floor, held by many peers, was downloaded and checked again every cool-down)."""
        base = self._limits.tx_refused_cooldown
        most = max(base, self._limits.tx_refused_cooldown_max)
        return min(base * 2.0 ** min(refusals - 1, 64), most)

    def fetching(self) -> int:
        """How many announced ids we are fetching (for tests and metrics)."""
        return len(self._fetching)

    # -- announcements in ------------------------------------------------------------------

    def on_announcement(self, peer: Peer, message: TxIds) -> None:
        """Ids `peer` holds: ask it for the ones we lack and nobody is being asked for."""
        tx_ids = message.ids()
        state = self._state.get(peer.peer_id) or self._peer_state(peer)
        now = asyncio.get_running_loop().time()
        if not state.sent_ids.take(now, len(tx_ids)):
            self._misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "TX_IDS ids")
            return
        state.known.note_all(tx_ids)
        self.counts.announced_in += len(tx_ids)
        if self._pool is None:  # no pool (a node still state-syncing): nothing to fetch into
            return
        started = False
        fresh = 0
        # Only an id being fetched or not received lately can be news or a preference
        # (`_lacks`, `_prefer`): on a mesh where every tx is pushed by its origin, most
        # announced ids are neither, and are passed over here in one C-level scan.
        fetching, received = self._fetching, self._received
        if fetching:
            news = [t for t in tx_ids if t in fetching or t not in received]
        else:  # mostly: nothing being fetched, and the scan needs no Python frame
            news = list(filterfalse(received.__contains__, tx_ids))
        for tx_id in news:
            if self._lacks(tx_id, peer.peer_id):
                state.backlog.append(tx_id)
                fresh += 1
            else:
                started = self._prefer(tx_id, peer.peer_id, state, now) or started
        # An empty backlog has nothing to take (most announcements: nothing fresh).
        if (state.backlog and self._take_backlog(peer.peer_id, state, fresh)) or started:
            self._schedule_flush()

    def _prefer(self, tx_id: bytes, announcer: str, state: _PeerTxs, now: float) -> bool:
        """`announcer`, not late, announced `tx_id` while the late peer that announced it
        first waits out its delay: ask `announcer` now; whether it was (the late one stays
        a next announcer)."""
        fetch = self._fetching.get(tx_id)
        if fetch is None or not fetch.deferred or self._is_late(state, now):
            return False
        return self._assign(tx_id, fetch, announcer, state)

    def _is_late(self, state: _PeerTxs, now: float) -> bool:
        return state.late_until > now

    def _lacks(self, tx_id: bytes, announcer: str) -> bool:
        """Whether `tx_id`, which `announcer` holds, is news to fetch: not held, not
        received lately, not refused in its cool-down, not being fetched (then `announcer`
        is noted as a next source)."""
        fetch = self._fetching.get(tx_id)
        if fetch is not None:
            self._add_announcer(fetch.announcers, announcer)
            return False
        return (
            tx_id not in self._received
            and not self._held(tx_id)
            and not self._refused_for(tx_id, announcer)
        )

    def _take_backlog(self, peer_id: str, state: _PeerTxs, fresh: int = 0) -> bool:
        """Fetch the ids `peer_id` announced, oldest first, while its share of
        `max_tx_fetching` and the bound itself have room; whether any is now asked. The
        last `fresh` of them it announced just now: if it is late, they wait (`deferred`)."""
        started = False
        waiting = self._bodies_waiting(state)
        now = asyncio.get_running_loop().time()
        # The ids before them waited for its share: others had time to announce them.
        older = len(state.backlog) - fresh if self._is_late(state, now) else len(state.backlog)
        while state.backlog and self._has_share(state, waiting):
            tx_id = state.backlog.popleft()
            older -= 1
            if not self._lacks(tx_id, peer_id):
                continue  # got, or being fetched from another announcer, meanwhile
            fetch = _Fetch(peer_id)
            if older < 0:
                # Asked of it after `tx_fetch_retry_after`, unless another announcer
                # comes first (`_prefer`): lateness costs the late peer, not the tx.
                fetch.asking = peer_id
                fetch.deferred = True
                state.deferred.append((now + self._limits.tx_fetch_retry_after, tx_id))
            elif not self._assign(tx_id, fetch, peer_id, state):
                state.backlog.appendleft(tx_id)
                break
            self._fetching[tx_id] = fetch
            self.counts.news += 1
            started = True
        return started

    def _bodies_waiting(self, state: _PeerTxs) -> int:
        """The bodies a peer delivered that wait for the host (in its inbox, or kept)."""
        return sum(len(ids) for _, ids in state.handed) + len(state.unqueued)

    def _has_share(self, state: _PeerTxs, waiting: int) -> bool:
        """Whether a peer may be asked for one more id it announced: under its share of
        `max_tx_fetching` (so that peers announcing junk cannot take the bound from the
        others), and under the bound itself (rev13a). Its share counts the `waiting`
        bodies it delivered that wait for the host (rev14a: an attacker answering at once
        had its share freed by each answer, and its bodies held the whole bound)."""
        return (
            state.inflight + len(state.waiting) + len(state.deferred) + waiting < self._share
            and len(self._fetching) < self._limits.max_tx_fetching
        )

    def _refused_for(self, tx_id: bytes, announcer: str) -> bool:
        """Whether the host refused `tx_id` as `mempool_full` and remembers it: then
        `announcer`, unless it delivered it, is noted as one of its holders, and past the
        cool-down the refetch starts (`_start_refetch`). The record goes only when its
        refetch starts (rev15c: an announcement past the cool-down dropped it, its count
        of refusals and its holders with it)."""
        refused = self._refused.get(tx_id)
        if refused is None:
            return False
        if announcer == refused.deliverer:
            return True
        now = asyncio.get_running_loop().time()
        self._note_announcer(tx_id, refused, announcer, now)
        if now >= refused.until:
            # Started now while the window's room lasts, else due at the next flush (its
            # `_refetch` entry was made with its first announcer).
            if self._refetch_room > 0 and self._start_refetch(tx_id, refused, now):
                self._refetch_room -= 1
            self._schedule_flush()
        return True

    def _note_announcer(self, tx_id: bytes, refused: _Refused, announcer: str, now: float) -> None:
        """`announcer` holds the refused `tx_id`: one of its announcers asked for it when
        its cool-down is over (`_refetch_refused`); the ones gone make room."""
        if announcer == refused.deliverer:
            return
        first = not refused.announcers
        if not self._add_announcer(refused.announcers, announcer) or not first:
            return  # not kept, or its refetch is timed already (with the first)
        heapq.heappush(self._refetch, (refused.until, tx_id))
        # Stale entries (refused anew, fetched, forgotten) wait for their time: past twice
        # the live ones' bound they are dropped at once (rev14c: they counted toward the
        # bound, and a live refused id found no room).
        if len(self._refetch) > 2 * self._limits.seen_cache_size:
            self._compact_refetch()
        self._schedule_flush(max(0.0, refused.until - now))

    def _add_announcer(self, announcers: Announcers, announcer: str) -> bool:
        """Keep `announcer` among an id's `announcers` (a fetch's or a refused record's);
        whether it is new there. When they are full, the gone ones make room first: every
        connected peer fits (rev16a: a fetch's list kept them, so Sybils that announced
        and left turned a connected holder away)."""
        if announcer in announcers:
            return False
        most = self._announcer_room()
        if len(announcers) >= most:
            # The room is at least the peers connected: if the new one is, the prune frees
            # a place (O(room), run only when full, as a list's `in` was on every call).
            for gone in [p for p in announcers if not self._connected(p)]:
                del announcers[gone]
            if len(announcers) >= most:
                return False
        announcers[announcer] = None
        return True

    def _announcer_room(self) -> int:
        """How many announcers an id keeps: one per peer slot (`tx_fetch_announcers`), or
        one per peer connected if more are (fix16a: persistent peers past the slots, or an
        operator's `max_inbound`, let as many Sybils first turn an honest holder away)."""
        return max(self._limits.tx_fetch_announcers, len(self._peers))

    def _compact_refetch(self) -> None:
        """Keep the `_refetch` entries of live refused records only (one per record)."""
        live = dict.fromkeys(
            (until, tx_id)
            for until, tx_id in self._refetch
            if (refused := self._refused.get(tx_id)) is not None and refused.until == until
        )
        self._refetch = list(live)
        heapq.heapify(self._refetch)

    def _connected(self, peer_id: str) -> bool:
        """Whether `peer_id` is one of the network's live peers (rev15a: judged by our
        state of it, a holder that reconnected, and had sent us nothing since, was gone)."""
        peer = self._peers.get(peer_id)
        return peer is not None and not peer.closing

    def _refetch_refused(self, now: float) -> None:
        """Refused ids whose cool-down is over, announced meanwhile: fetched from their
        announcers still connected (`_start_refetch`), REFETCH_PER_FLUSH at most since the
        last flush, counting those announcements started; the ones over it, or over
        `max_tx_fetching`, stay due for the next flush."""
        refetch = self._refetch
        while refetch and refetch[0][0] <= now + TIMER_SLACK:
            until, tx_id = refetch[0]
            refused = self._refused.get(tx_id)
            if refused is None or refused.until != until:
                heapq.heappop(refetch)  # fetched on a later announcement, refused anew, gone
                continue
            if self._refetch_room <= 0 or not self._start_refetch(tx_id, refused, now):
                break
            heapq.heappop(refetch)
            self._refetch_room -= 1
        self._refetch_room = REFETCH_PER_FLUSH  # the next window's

    def _start_refetch(self, tx_id: bytes, refused: _Refused, now: float) -> bool:
        """Refetch the refused `tx_id`, its cool-down over, from its announcers still
        connected (`_refetch_from`), its record gone (its count carried by the fetch);
        with none left, nothing: a later announcement fetches it. False, the record kept,
        while `max_tx_fetching` has no room (rev15c: refetches went past it)."""
        if len(self._fetching) >= self._limits.max_tx_fetching:
            return False
        del self._refused[tx_id]
        if tx_id not in self._fetching and tx_id not in self._received and not self._held(tx_id):
            sources = self._ranked(refused.announcers, now)
            self._refetch_from(tx_id, sources, refused.refusals, refused.deliverer)
            if tx_id not in self._fetching:  # no holder connected took it
                self._remember_refusals(tx_id, refused.refusals)
        return True

    def _remember_refusals(self, tx_id: bytes, refusals: int) -> None:
        """Keep the count of a refused id whose record or refetch ended without the tx
        (bounded as the records, oldest out first)."""
        self._refusals_before[tx_id] = refusals
        self._refusals_before.move_to_end(tx_id)
        while len(self._refusals_before) > self._limits.seen_cache_size:
            self._refusals_before.popitem(last=False)

    def _ranked(self, peer_ids: Iterable[str], now: float) -> list[tuple[str, _PeerTxs]]:
        """The connected ones of `peer_ids` with their states (made if need be: a peer
        that reconnected may have sent nothing yet), the ones not late first, then by
        score (least first), then in order."""
        ranked: list[tuple[bool, float, int, str, _PeerTxs]] = []
        for index, peer_id in enumerate(peer_ids):
            peer = self._peers.get(peer_id)
            if peer is not None and not peer.closing:
                state = self._peer_state(peer)
                late = self._is_late(state, now)
                ranked.append((late, peer.score.value(now), index, peer_id, state))
        ranked.sort(key=lambda entry: entry[:3])
        return [(peer_id, state) for *_, peer_id, state in ranked]

    def _refetch_from(
        self,
        tx_id: bytes,
        sources: list[tuple[str, _PeerTxs]],
        refusals: int,
        deliverer: str | None,
    ) -> None:
        """Ask the first of `sources` whose share has room for `tx_id`, the others its
        next announcers (rev14c: it went to the back of their backlogs, behind every id
        they announced). With no share free, the first that takes it (`_assign`), past
        its share: one id for a tx the host had checked, bounded by the refused records
        (rev15a: put first in a backlog, the backlog's next id pushed it out). Its
        `deliverer` counts as tried: never asked, even if it announces it again."""
        if not sources:
            return
        fetch = _Fetch(sources[0][0], refusals)
        fetch.announcers = dict.fromkeys(peer_id for peer_id, _ in sources)
        if deliverer is not None:
            fetch.tried.add(deliverer)

        def no_share(source: tuple[str, _PeerTxs]) -> bool:
            return not self._has_share(source[1], self._bodies_waiting(source[1]))

        for peer_id, state in sorted(sources, key=no_share):
            if self._assign(tx_id, fetch, peer_id, state):
                self._fetching[tx_id] = fetch
                return

    def _held(self, tx_id: bytes) -> bool:
        if self._pool is None:  # pragma: no cover - announcements are not fetched without one
            return True
        try:
            return self._pool.has_tx(tx_id)
        except Exception as exc:
            raise P2PError(PeerReason.HOST_ERROR, f"has_tx: {exc!r}") from exc

    # -- requests in -------------------------------------------------------------------------

    def serve(self, peer: Peer, request: GetTxs) -> None:
        """Answer with the txs asked for that we hold, in order (an honest miss is no fault:
        a tx committed or evicted since we announced it), once its send queue has room
        for a whole answer (rev13a: four answers at once overflowed an honest asker's
        queue, and it was disconnected as slow) and our budget for it keeps the
        consensus reserve after it (rev16b 2: an answer took a proposal's room)."""
        asked = request.ids()
        state = self._peer_state(peer)
        now = asyncio.get_running_loop().time()
        if not state.asked_ids.take(now, len(asked)):
            self._misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "GET_TXS ids")
            return
        for tx_id in asked:
            state.known.add(tx_id)  # it will hold them: never announce them to it
        if not state.parked and self._has_room(peer) and self._answer(peer, state, request, now):
            return
        if len(state.parked) < PARKED_KEPT:
            state.parked.append(request)
            self._schedule_flush()
            return
        # All misses (it tries elsewhere): a few bytes, sent whatever our budgets.
        self._links.send(peer, encode(TxBodies(request.request_id, ())), droppable=False)

    def _has_room(self, peer: Peer) -> bool:
        """Whether `peer`'s send queue can take a maximal answer (half the queue at most)."""
        need = min(MAX_FRAME, self._limits.send_queue_bytes // 2)
        return peer.send_queue.room() >= need

    def _answer(self, peer: Peer, state: _PeerTxs, request: GetTxs, now: float) -> bool:
        """Send the answer to `request` if it fits our budgets for `peer` above the
        consensus reserve (`Links.send_answer`); False, nothing sent, if it does not."""
        # Each id answered once: a request naming one large tx many times would otherwise
        # draw megabytes from a few kilobytes (rev12b); only ids we announced to it, at
        # most SERVE_TIMES across requests (rev13a, rev14a).
        offered = state.offered
        tx_ids = [t for t in dict.fromkeys(request.ids()) if t in offered]
        bodies: list[bytes | None] = []
        if self._pool is not None and tx_ids:
            try:
                bodies = self._pool.tx_bodies(tx_ids)
            except Exception as exc:
                raise P2PError(PeerReason.HOST_ERROR, f"tx_bodies: {exc!r}") from exc
        txs: list[bytes] = []
        sent: list[bytes] = []
        total = 0
        most = answer_bytes(self._limits)
        for tx_id, tx in zip(tx_ids, bodies, strict=False):
            if tx is None:
                continue
            total += len(tx)
            if total > most:
                # The rest are left out: the asker, seeing an answer this large, asks
                # again for the ids after its last tx (`answer_bytes`).
                break
            txs.append(tx)
            sent.append(tx_id)
        frame = encode(TxBodies(request.request_id, tuple(txs)))
        if not self._links.send_answer(peer, frame, now):
            state.parked_need = len(frame)
            return False
        state.parked_need = 0
        for tx_id in sent:
            left = offered[tx_id] - 1
            if left > 0:
                offered[tx_id] = left
            else:
                del offered[tx_id]
        return True

    def _serve_parked(self, peer: Peer, state: _PeerTxs) -> None:
        now = asyncio.get_running_loop().time()
        while state.parked and self._has_room(peer) and not peer.closing:
            if state.parked_need and not self._links.answer_fits(peer, state.parked_need, now):
                return  # not yet refilled for the answer last built: not built again
            if not self._answer(peer, state, state.parked[0], now):
                return  # our budget for it refills: the next flush
            state.parked.popleft()

    # -- answers in --------------------------------------------------------------------------

    def on_answer(self, peer: Peer, answer: TxBodies) -> None:
        """The txs `peer` holds of a request of ours: each must be one asked for; the ids
        it missed go to the next announcer; the txs go to the host as if pushed by it."""
        state = self._state.get(peer.peer_id)
        request = None if state is None else state.requests.pop(answer.request_id, None)
        if state is None or request is None:
            late = None if state is None else state.expired.pop(answer.request_id, None)
            if state is None or late is None:
                self._misbehave(
                    peer, PeerReason.UNSOLICITED, POINTS_UNSOLICITED, "TX_BODIES nobody asked for"
                )
            else:
                self._on_late_answer(peer, late, answer)
            return
        state.inflight -= len(request.ids)
        state.late_until = 0.0  # answered in time: asked first again
        state.slow = False
        got = self._asked_txs(peer, request.ids, answer)
        if got is None:
            for tx_id in request.ids:
                self._next_announcer(tx_id, peer.peer_id)
            self._schedule_flush()
            return
        size = self._charge(peer, got)
        self.counts.fetched += len(got)
        # An answer that lacks some ids is an honest miss (committed or evicted since it
        # announced them: at load, hundreds a block): they go to the next announcer, free.
        # Only silence is scored (`_expire`) (rev12b: 0.01 a miss banned honest peers).
        # But an answer this large may have been cut for size: the ids after its last tx
        # are asked of it again (rev13a: the only holder's answer stopped at 8 MiB and the
        # rest were dropped), and, like a retry, of their next announcers too if still
        # not delivered `tx_fetch_retry_after` later (rev13c: a peer answering each
        # round with a large tx of its own held an honest tx after it for ever).
        cut: set[bytes] = set()
        if size > cut_mark(self._limits):
            last = max(i for i, tx_id in enumerate(request.ids) if tx_id in got)
            cut.update(request.ids[last + 1 :])
        again: list[bytes] = []
        for tx_id in request.ids:
            if tx_id in got:
                continue
            fetch = self._fetching.get(tx_id)
            if (
                tx_id in cut
                and fetch is not None
                and fetch.asking == peer.peer_id
                and fetch.handed is None  # never downloaded again while its body waits
            ):
                state.ask.append(tx_id)
                state.inflight += 1
                again.append(tx_id)
            else:
                self._next_announcer(tx_id, peer.peer_id)
        if again:
            asyncio.get_running_loop().call_later(
                self._limits.tx_fetch_retry_after, self._hedge_all, again, peer.peer_id
            )
        self._take(peer, state, got)
        self._schedule_flush()

    def _charge(self, peer: Peer, got: Mapping[bytes, bytes]) -> int:
        """Spend an answer's bytes from `peer`'s byte budget: the attacker chose what we
        asked by announcing its own ids (rev13a: answers bypassed the budget). We ask only
        while the budget has room for a whole answer to each request open
        (`_send_requests`), so an answer over it came on top of other frames: taken (we
        asked for it, and the next requests wait for the budget), but scored as
        rate-limited."""
        size = sum(map(len, got.values()))
        now = asyncio.get_running_loop().time()
        if size and not peer.in_bytes.take(now, size):
            self._misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "TX_BODIES bytes")
        return size

    def _take(self, peer: Peer, state: _PeerTxs, got: Mapping[bytes, bytes]) -> None:
        """Hand the answer's txs we still need to the host (their fetches stay open until
        it has taken them); ask `peer` again for those there is no room for."""
        peer_id = peer.peer_id
        fresh: list[tuple[bytes, bytes]] = []
        for tx_id, tx in got.items():
            fetch = self._fetching.get(tx_id)
            if fetch is None:
                if tx_id in self._received or self._held(tx_id):
                    self.counts.held += 1
                    continue  # got from another announcer, or given up and got since
                # Given up while the answer was late (the only holder on a congested link).
                fetch = self._fetching[tx_id] = _Fetch(peer_id)
            elif fetch.handed is not None:
                continue  # another announcer's copy waits for the host already
            self._received.add(tx_id)
            fetch.handed = peer_id
            if fetch.asking is None:
                fetch.asking = peer_id
            fresh.append((tx_id, tx))
        rest = self._hand_over(peer, state, fresh)
        if rest:
            # Its inbox is full and too much waits already (a late answer, which had no
            # room kept for it): ask it again, once there is room, rather than lose them,
            # its other announcers kept as the next ones (rev13a: they were forgotten).
            peer.dropped_frames += 1
            for tx_id, _ in rest:
                self._received.discard(tx_id)
                fetch = self._fetching[tx_id]
                fetch.handed = None
                if fetch.asking in (None, peer_id):
                    fetch.asking = peer_id
                    state.ask.append(tx_id)
                    state.inflight += 1

    def _hand_over(
        self, peer: Peer, state: _PeerTxs, txs: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """Give fetched txs to the host through `peer`'s inbox, after any that wait for
        room; keep them for a later flush if it is full. The ones there is no room to keep."""
        if not state.unqueued:
            txs = self._enqueue(peer, state, txs)
        size = sum(len(tx) for _, tx in txs)
        if state.unqueued_bytes + size > UNQUEUED_BYTES:
            return txs
        if txs:
            state.unqueued.extend(txs)
            state.unqueued_bytes += size
            self._schedule_flush()
        return []

    def _enqueue(
        self, peer: Peer, state: _PeerTxs, txs: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """Put fetched txs in `peer`'s inbox in TXS frames of at most HANDOVER_TXS, as far
        as it has room; the ones left over."""
        for start in range(0, len(txs), HANDOVER_TXS):
            chunk = txs[start : start + HANDOVER_TXS]
            frame = Gossip(Kind.TXS, pack([tx for _, tx in chunk]))
            if not self._links.enqueue(peer, frame, b""):
                return txs[start:]
            state.handed.append((frame, [tx_id for tx_id, _ in chunk]))
        return []

    def _asked_txs(
        self, peer: Peer, ids: Sequence[bytes], answer: TxBodies
    ) -> dict[bytes, bytes] | None:
        """The answer's txs by id, each one asked for and once; None (and `peer` scored
        bad_response) if it holds any other."""
        asked = set(ids)
        got: dict[bytes, bytes] = {}
        for tx in answer.txs:
            tx_id = sha256(tx)
            if tx_id not in asked or tx_id in got:
                problem = "TX_BODIES holds a tx not asked for"
                self._misbehave(peer, PeerReason.BAD_RESPONSE, POINTS_BAD_RESPONSE, problem)
                return None
            got[tx_id] = tx
        return got

    def _on_late_answer(self, peer: Peer, late: _Expired, answer: TxBodies) -> None:
        """An answer after its request expired: its misses were moved on then; the txs
        asked for that we still lack are taken (a lost tx otherwise, where it was the
        only holder); anything not asked for is scored as in a timely answer."""
        got = self._asked_txs(peer, late.ids, answer)
        if got is None:
            return
        self._peer_state(peer).slow = True
        if got:
            # Its ids were scored undelivered at the deadline (and went to their next
            # announcers then): the ones it delivered after all are given back (rev14a: an
            # honest peer on a slow link, every answer late, was banned for txs it
            # delivered). At most once a request (its expired entry is gone), and at most
            # what is left of the request's own points, decayed as the score did since
            # (rev14b: a full refund of points long decayed took back other faults').
            now = asyncio.get_running_loop().time()
            left = decayed(late.points, self._limits.score_decay_per_second, now - late.charged_at)
            owed = min(POINTS_UNDELIVERED_TX * len(got), left)
            if owed > 0:
                self._forgive(peer, owed)
        self._charge(peer, got)
        self._take(peer, self._peer_state(peer), got)

    def _undelivered(self, peer: Peer, missed: list[bytes]) -> None:
        if not missed:
            return
        self._misbehave(
            peer,
            PeerReason.UNDELIVERED,
            POINTS_UNDELIVERED_TX * len(missed),
            f"{len(missed)} announced txs not delivered",
        )
        for tx_id in missed:
            self._next_announcer(tx_id, peer.peer_id)

    def _next_announcer(self, tx_id: bytes, failed: str) -> None:
        """`failed` did not deliver `tx_id`: queue it for the next announcer, or give up."""
        fetch = self._fetching.get(tx_id)
        if fetch is None or fetch.asking != failed:
            return
        fetch.tried.add(failed)
        fetch.asking = None
        if fetch.handed is not None:
            return  # its body waits for the host: nobody else to ask for now
        if self._held(tx_id):
            # Got meanwhile, mostly in a committed block (why the announcer missed it: at
            # load, hundreds a block): each next announcer would miss it too, one round
            # trip and one scan of the announcers each (issue 22, wan17).
            del self._fetching[tx_id]
            return
        for peer_id, state in self._sources(fetch, failed):
            if self._assign(tx_id, fetch, peer_id, state):
                return
        del self._fetching[tx_id]  # a later announcement starts again
        if fetch.refusals:  # a refetch every holder missed: its back-off goes on
            self._remember_refusals(tx_id, fetch.refusals)

    def _sources(self, fetch: _Fetch, skip: str) -> Iterator[tuple[str, _PeerTxs]]:
        """The connected announcers of `fetch` not tried yet, save `skip`, in order: the
        ones not late first (rev14b)."""
        now = asyncio.get_running_loop().time()
        late: list[tuple[str, _PeerTxs]] = []
        for peer_id in fetch.announcers:
            if peer_id == skip or peer_id in fetch.tried:
                continue
            peer = self._peers.get(peer_id)
            if peer is None or peer.closing:
                continue
            state = self._peer_state(peer)
            if self._is_late(state, now):
                late.append((peer_id, state))
            else:
                yield peer_id, state
        yield from late

    def _hedge(self, tx_id: bytes, slow: str) -> None:
        """`slow` has not delivered `tx_id` within `tx_fetch_retry_after` of a retry, or of
        its answer cut for size: ask the next announcer too, leaving `slow`'s request open
        (its answer is still taken, its silence still scored at its deadline). With no
        other announcer, `slow` stays the one asked."""
        fetch = self._fetching.get(tx_id)
        if fetch is None or fetch.asking != slow or fetch.handed is not None:
            return
        for peer_id, state in self._sources(fetch, slow):
            if self._assign(tx_id, fetch, peer_id, state):
                fetch.tried.add(slow)
                return

    def _assign(self, tx_id: bytes, fetch: _Fetch, peer_id: str, state: _PeerTxs) -> bool:
        """Make `peer_id` the one asked for `tx_id`: now if it has room under
        max_tx_fetch_inflight, else when it has (its waiting ids); False if it has
        more waiting than it could have announced. (An id moving on to its next
        announcer may take that one past its share: the fetch exists already.)"""
        if state.inflight < self._limits.max_tx_fetch_inflight:
            state.ask.append(tx_id)
            state.inflight += 1
        elif len(state.waiting) < self._limits.known_txs_per_peer:
            state.waiting.append(tx_id)
        else:
            return False
        fetch.asking = peer_id
        fetch.deferred = False
        return True

    # -- the batching timer ------------------------------------------------------------------

    def _schedule_flush(self, delay: float | None = None) -> None:
        """A flush within `delay` (default `tx_announce_wait`): an earlier one stands."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + (self._limits.tx_announce_wait if delay is None else delay)
        timer = self._flush_timer
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        self._flush_timer = loop.call_at(due, self._flush)

    def _schedule_trickle(self) -> None:
        """A flush at the earliest peer's next trickle, if any trickle waits."""
        due = min((s.next_trickle for s in self._state.values() if s.trickle), default=None)
        if due is not None:
            self._schedule_flush(max(0.0, due - asyncio.get_running_loop().time()))

    def _trickle_delay(self) -> float:
        spread = (1.0 - TRICKLE_MIN_FACTOR) * self._random.expovariate(1.0)
        return self._limits.tx_trickle_interval * min(
            TRICKLE_MIN_FACTOR + spread, TRICKLE_MAX_FACTOR
        )

    def _release(self, state: _PeerTxs, pending: dict[bytes, bool]) -> None:
        """A peer's trickle time: its waiting ids join its next TX_IDS, save the ones it
        is known to hold by now (it announced, sent or asked for them) and the txs no
        longer in our mempool (committed or evicted: no news to anyone). `pending`
        remembers the mempool's answers for this flush."""
        trickle, state.trickle = state.trickle, []
        pool = self._pool
        if pool is None:  # no pool: nothing was admitted, nothing to announce
            return
        # Per id, in C but for the mempool's answer, asked once an id a flush: the ids it
        # holds left out (most, on a dense mesh), then the ones no longer waiting.
        news = list(filterfalse(state.known.__contains__, trickle))
        try:
            for tx_id in filterfalse(pending.__contains__, news):
                pending[tx_id] = pool.in_mempool(tx_id)
        except Exception as exc:
            raise P2PError(PeerReason.HOST_ERROR, f"in_mempool: {exc!r}") from exc
        state.announce.extend(state.known.add_all(filter(pending.__getitem__, news)))

    def _queue_announcements(self, state: _PeerTxs, pending: dict[bytes, bool], now: float) -> None:
        """The window's end: a fast peer's ids join its next TX_IDS, less those it is
        known to hold by now; so does its trickle, when due (`_release`)."""
        if state.fast:
            state.announce.extend(state.known.add_all(state.fast))
            state.fast = []
        if state.trickle and state.next_trickle <= now + TIMER_SLACK:
            self._release(state, pending)
            state.next_trickle = now + self._trickle_delay()

    def _flush(self) -> None:
        """Send every peer its waiting announcements (with its trickle, when due) and
        requests."""
        self._flush_timer = None
        self._fast_order = None  # a new draw for the next window
        now = asyncio.get_running_loop().time()
        pending: dict[bytes, bool] = {}
        self._refetch_refused(now)
        more = False  # something left for a live peer: an inbox or queue full, budgets
        for peer_id, state in list(self._state.items()):
            peer = self._peers.get(peer_id)
            if peer is None or peer.closing:
                state.trickle.clear()  # it is leaving: a due trickle must not spin the timer
                state.fast.clear()
                continue
            # Most peers, most flushes, have nothing deferred, parked or backlogged.
            if state.deferred:
                self._release_deferred(peer_id, state, now)
            if state.unqueued:
                state.unqueued = self._enqueue(peer, state, state.unqueued)
                state.unqueued_bytes = sum(len(tx) for _, tx in state.unqueued)
            if state.parked:
                self._serve_parked(peer, state)
            if state.fast or state.trickle:
                self._queue_announcements(state, pending, now)
            if state.announce:
                self._send_announcements(peer, state, now)
            if state.backlog:
                self._take_backlog(peer_id, state)
            if state.waiting or state.ask:
                self._send_requests(peer, state, now)
            else:  # most peers, most flushes: nothing to ask
                state.held_since = None
            more = more or bool(
                state.unqueued or state.waiting or state.parked or state.announce or state.ask
            )
        self._schedule_after_flush(now, more)

    def _schedule_after_flush(self, now: float, more: bool) -> None:
        """The timers a flush leaves: another flush if `more` is left for a live peer, at
        the next deferred id, refused id's cool-down or trickle; the requests' expiry."""
        if more:
            self._schedule_flush()
        self._schedule_deferred(now)
        if self._refetch:  # the next refused id's cool-down, or a window for the ones due
            due = self._refetch[0][0] - now
            self._schedule_flush(due if due > TIMER_SLACK else None)
        self._schedule_trickle()
        if (
            self._expiry_timer is None
            and not self._closed
            and any(s.requests for s in self._state.values())
        ):
            self._expiry_timer = asyncio.get_running_loop().call_later(
                self._limits.tx_fetch_timeout / 4, self._expire
            )

    def _send_announcements(self, peer: Peer, state: _PeerTxs, now: float) -> None:
        """The peer's waiting announcements in TX_IDS frames, within its budgets."""
        # Within the id rate it applies to us; the rest at the next flush (rev13a: a
        # burst past it cost an honest relay points and the ids were never announced).
        most = state.out_ids.take_most(now, len(state.announce))
        announce, state.announce = state.announce[:most], state.announce[most:]
        excess = len(state.announce) - self._limits.known_txs_per_peer
        if excess > 0:
            # Admitting faster than it lets us announce, for seconds: the oldest are
            # left to its other peers (no longer "known" to it, so not forgotten).
            for tx_id in state.announce[:excess]:
                state.known.discard(tx_id)
            del state.announce[:excess]
        for start in range(0, len(announce), MAX_TX_IDS_PER_ANNOUNCE):
            chunk = announce[start : start + MAX_TX_IDS_PER_ANNOUNCE]
            if not self._links.send_budgeted(
                peer, Kind.TX_IDS, encode(TxIds(b"".join(chunk))), now
            ):
                # Over its byte budget or its queue full: the ids wait for the next
                # flush, first in line (rev14a: they stayed "known" to it and were never
                # announced again, and a peer with no other neighbour never got them).
                state.announce[:0] = announce[start:]
                break
            self.counts.announced_out += len(chunk)
            self._offer(state, chunk)

    def _schedule_deferred(self, now: float) -> None:
        """A flush when the first deferred id of a live peer is due, if any."""
        due = min(
            (
                state.deferred[0][0]
                for peer_id, state in self._state.items()
                if state.deferred and (peer := self._peers.get(peer_id)) and not peer.closing
            ),
            default=None,
        )
        if due is not None:
            self._schedule_flush(max(0.0, due - now))

    def _release_deferred(self, peer_id: str, state: _PeerTxs, now: float) -> None:
        """The ids a late peer announced first, due now, that no other announcer took
        meanwhile: asked of it after all."""
        deferred = state.deferred
        while deferred and deferred[0][0] <= now + TIMER_SLACK:
            _, tx_id = deferred.popleft()
            fetch = self._fetching.get(tx_id)
            if fetch is None or fetch.asking != peer_id or not fetch.deferred:
                continue  # fetched, or asked of another announcer, meanwhile
            if not self._assign(tx_id, fetch, peer_id, state):
                self._next_announcer(tx_id, peer_id)

    def _offer(self, state: _PeerTxs, tx_ids: list[bytes]) -> None:
        """`tx_ids` were announced to the peer of `state`: it may ask for each body
        SERVE_TIMES."""
        offered = state.offered
        for tx_id in tx_ids:
            if tx_id in offered:  # rare: announced again; a test, not a pop, per new id
                offered.move_to_end(tx_id)
            offered[tx_id] = SERVE_TIMES
        while len(offered) > self._limits.known_txs_per_peer:
            offered.popitem(last=False)

    def _send_requests(self, peer: Peer, state: _PeerTxs, now: float) -> None:
        """Ask `peer` for the ids waiting on it, as far as its in-flight bound allows."""
        peer_id = peer.peer_id
        while state.waiting and state.inflight < self._limits.max_tx_fetch_inflight:
            tx_id = state.waiting.popleft()
            fetch = self._fetching.get(tx_id)
            if fetch is not None and fetch.asking == peer_id and fetch.handed is None:
                state.ask.append(tx_id)
                state.inflight += 1
        if state.ask:
            self._drop_received(state)
        # Asked within the id rate it applies to us, while its byte budget above the
        # consensus reserve (answers are bulk: rev16b 2) has room for an answer to each
        # request open (answers spend it, `_charge`; rev13a), and while the txs kept for
        # its inbox have room for them too (UNQUEUED_BYTES); the rest wait for the next
        # flush. The last answer may find only part of its room: its sender keeps it until
        # the rest is back (`Links.send_answer`), so that it never takes the reserve.
        bulk = peer.in_bytes.available(now) - self._links.budget_reserve
        budget = math.ceil(bulk / (answer_bytes(self._limits) + ANSWER_OVERHEAD)) if bulk > 0 else 0
        kept = (UNQUEUED_BYTES - state.unqueued_bytes) // MAX_BLOCKS_RESPONSE_BYTES
        room = min(budget, kept) - self._open_requests(state, now)
        want = min(room * MAX_TXS_PER_FETCH, len(state.ask)) if room > 0 else 0
        # Whole requests: ids wait until the id budget covers them all or a full request,
        # rather than leave in many small ones, each holding a whole answer's reserve.
        whole = min(want, MAX_TXS_PER_FETCH, int(_out_rate(self._limits).burst))
        most = 0
        if want and state.out_asked.available(now) >= whole:
            most = state.out_asked.take_most(now, want)
        ask, state.ask = state.ask[:most], state.ask[most:]
        # Ids a first announcer failed to deliver (or refetches of refused txs) are
        # retries, asked in their own requests, and first: they are late already; the next
        # announcer is asked after `tx_fetch_retry_after`, not after a whole timeout, if
        # this one is silent too.
        firsts: list[bytes] = []
        retries: list[bytes] = []
        for tx_id in ask:
            (retries if self._is_retry(tx_id) else firsts).append(tx_id)
        for ids, retry in ((retries, True), (firsts, False)):
            for start in range(0, len(ids), MAX_TXS_PER_FETCH):
                self._request(peer, state, ids[start : start + MAX_TXS_PER_FETCH], now, retry)
        # Ids held back by its budgets a whole `tx_fetch_timeout` (a peer keeping its byte
        # budget spent holds up what only it was asked for) go to their next announcers
        # too, still asked of it once its budgets allow.
        if not state.ask:
            state.held_since = None
        elif state.held_since is None:
            state.held_since = now
        elif now - state.held_since >= self._limits.tx_fetch_timeout:
            state.held_since = now
            for tx_id in state.ask:
                self._hedge(tx_id, peer_id)

    def _drop_received(self, state: _PeerTxs) -> None:
        """Leave out of the next request the ids whose fetch ended since they were queued
        because their body came (the origin's push admitted within the batching window:
        issue 22, wan19, 0.4 fetches a tx a node at pinned WAN 500 tx/s, each a GET_TXS id
        and a 1 KB body sent for nothing). An id whose fetch ended otherwise (every other
        announcer missed it) is still asked, as before."""
        fetching, received = self._fetching, self._received
        ask = [t for t in state.ask if t in fetching or t not in received]
        dropped = len(state.ask) - len(ask)
        if dropped:
            state.ask = ask
            state.inflight -= dropped
            self.counts.unasked += dropped

    def _open_requests(self, state: _PeerTxs, now: float) -> int:
        """Its requests open: unanswered in time, and, on a slow link, expired but held
        a while (EXPIRED_HOLD_TIMEOUTS: their answers are likely on their way)."""
        held = 0
        if state.slow:
            held = sum(1 for expired in state.expired.values() if expired.held_until > now)
        return len(state.requests) + held

    def _is_retry(self, tx_id: bytes) -> bool:
        """Whether `tx_id` was asked of an announcer that failed, or is a refetch of a
        refused tx (delivered and checked once: rev15c, a silent Sybil ranked first held
        its holder back a whole `tx_fetch_timeout`)."""
        fetch = self._fetching.get(tx_id)
        return fetch is not None and (bool(fetch.tried) or fetch.refusals > 0)

    def _request(
        self, peer: Peer, state: _PeerTxs, tx_ids: list[bytes], now: float, retry: bool
    ) -> None:
        request_id = state.next_id
        state.next_id = (request_id + 1) % (MAX_REQUEST_ID + 1)
        frame = encode(GetTxs(request_id, b"".join(tx_ids)))
        if not self._links.send_budgeted(peer, Kind.GET_TXS, frame, now):
            # Not sent (our budget for it, or its queue): the next announcer, no points.
            state.inflight -= len(tx_ids)
            for tx_id in tx_ids:
                self._next_announcer(tx_id, peer.peer_id)
            self._schedule_flush()
            return
        self.counts.asked += len(tx_ids)
        mark = peer.send_queue.queued[_GET_TXS_LANE]
        request = _Request(tx_ids, now + self._limits.tx_fetch_timeout, mark)
        state.requests[request_id] = request
        if retry and self._limits.tx_fetch_retry_after < self._limits.tx_fetch_timeout:
            # Rare (a first announcer failed): a timer of its own, to the millisecond.
            asyncio.get_running_loop().call_later(
                self._limits.tx_fetch_retry_after, self._move_on, peer.peer_id, request_id, request
            )

    def _move_on(self, peer_id: str, request_id: int, request: _Request) -> None:
        """A retry unanswered after `tx_fetch_retry_after`: its ids are asked of their next
        announcers too; it stays open until its deadline."""
        state = self._state.get(peer_id)
        if state is None or state.requests.get(request_id) is not request:
            return  # answered, expired, or the peer left
        self._hedge_all(request.ids, peer_id)

    def _hedge_all(self, tx_ids: list[bytes], slow: str) -> None:
        """`_hedge` each of `tx_ids` that `slow` has still not delivered."""
        if self._closed:
            return
        for tx_id in tx_ids:
            self._hedge(tx_id, slow)
        self._schedule_flush(0.0)  # the txs are late already: no batching window

    def _expire(self) -> None:
        """Requests unanswered in time: their ids go to the next announcer."""
        self._expiry_timer = None
        now = asyncio.get_running_loop().time()
        for peer_id, state in list(self._state.items()):
            late = [rid for rid, req in state.requests.items() if req.deadline <= now]
            peer = self._peers.get(peer_id)
            if peer is not None and not peer.closing:
                late = [rid for rid in late if self._left(peer, state, rid, now)]
            hold = now + EXPIRED_HOLD_TIMEOUTS * self._limits.tx_fetch_timeout
            for request_id in late:
                request = state.requests.pop(request_id)
                state.inflight -= len(request.ids)
                live = peer is not None and not peer.closing
                points = POINTS_UNDELIVERED_TX * len(request.ids) if live else 0.0
                state.expired[request_id] = _Expired(tuple(request.ids), points, now, hold)
                while len(state.expired) > EXPIRED_KEPT:
                    state.expired.popitem(last=False)
                if peer is not None and live:
                    state.late_until = now + self._limits.tx_fetch_late_for
                    self._undelivered(peer, request.ids)
                else:
                    for tx_id in request.ids:
                        self._next_announcer(tx_id, peer_id)
        if any(s.ask or s.waiting or s.unqueued or s.backlog for s in self._state.values()):
            self._schedule_flush()
        if not self._closed and any(s.requests for s in self._state.values()):
            self._expiry_timer = asyncio.get_running_loop().call_later(
                self._limits.tx_fetch_timeout / 4, self._expire
            )

    def _left(self, peer: Peer, state: _PeerTxs, request_id: int, now: float) -> bool:
        """Whether a request past its deadline had left our send queue; if not (it waits
        behind our own frames to a slow link), its time starts again, not charged to the
        peer (rev14a), and its ids are asked of their next announcers too."""
        request = state.requests[request_id]
        if peer.send_queue.taken[_GET_TXS_LANE] >= request.mark:
            return True
        request.deadline = now + self._limits.tx_fetch_timeout
        # Not its fault, but not timely either: it is asked after other announcers for a
        # while (rev14b: a peer that stopped reading held every tx it announced first).
        state.late_until = now + self._limits.tx_fetch_late_for
        self._hedge_all(request.ids, peer.peer_id)
        return False

    def _peer_state(self, peer: Peer) -> _PeerTxs:
        state = self._state.get(peer.peer_id)
        if state is None:
            state = self._state[peer.peer_id] = _PeerTxs(
                self._limits, asyncio.get_running_loop().time()
            )
        return state

    def open(self) -> None:
        """The switch is (re)starting: frames may leave again."""
        self._closed = False

    def close(self) -> None:
        """Stop the timers (the switch is stopping): no frame leaves after this."""
        self._closed = True
        for timer in (self._flush_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._expiry_timer = None


__all__ = ["TX_ID_SIZE", "TxFetcher", "TxPool"]
