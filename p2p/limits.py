"""Limits of the p2p layer: connection counts, queues, rates, misbehaviour scores, bans.

Every knob is a field of `Limits` with its default and the reason for it; tests and
devnets shrink the timers, nothing else needs to change. The misbehaviour points are
protocol policy, not configuration, so they are module constants.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from p2p.handshake import HANDSHAKE_TIMEOUT
from p2p.messages import MAX_BATCH_FRAMES, Kind, MiB

# -- misbehaviour points (a peer is banned when its score reaches `ban_threshold`) ----
# An honest implementation never sends these: the encoding is deterministic and the
# protocol version was agreed in the handshake. One is enough to ban.
POINTS_INVALID_FRAME: Final = 100
POINTS_UNEXPECTED_MESSAGE: Final = 100
# An answer we did not ask for, or more blocks than asked: a confused or hostile peer.
POINTS_UNSOLICITED: Final = 20
POINTS_BAD_RESPONSE: Final = 50
# Each frame over a rate limit is dropped and costs 2 points: a short burst from a
# honest but busy peer decays away, a sustained flood is banned after 50 frames.
POINTS_RATE_LIMITED: Final = 2
# A ROUND_STATE that goes back in height or round, or names validators beyond the set:
# an honest node never sends one, but it costs us nothing worse than a wasted send.
POINTS_BAD_ROUND_STATE: Final = 20
# Tx relay by id (p2p/tx_fetch.py): each id of a request a peer left unanswered past
# `tx_fetch_timeout`. A miss inside an answer costs nothing: an honest peer misses
# hundreds a block at load (txs committed between its announcement and our request). A
# peer announcing ids it then never answers for, at its id rate, is banned within seconds.
POINTS_UNDELIVERED_TX: Final = 0.01


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: `per_second` sustained, `burst` at once."""

    per_second: float
    burst: float


def default_rates() -> Mapping[Kind, Rate]:
    # Sized against the targets: 2,000 confirmed tx/s at 1 s blocks, up to 100
    # validators voting twice per round over a few rounds, one proposal per round.
    return MappingProxyType(
        {
            Kind.TX: Rate(5000, 10000),  # 2.5x the target tx rate, a 2 s burst
            Kind.TXS: Rate(200, 400),  # batches: a node sends one per loop turn that got txs
            Kind.VOTE: Rate(2000, 4000),  # 100 validators x 2 votes x rounds, relayed
            Kind.PROPOSAL: Rate(20, 40),  # one per round; re-gossip after a new round
            Kind.COMPACT_PROPOSAL: Rate(20, 40),  # the same proposals, by tx id
            # One per compact proposal that missed txs, to the peer that sent it.
            Kind.GET_PROPOSAL_TXS: Rate(20, 40),
            Kind.EVIDENCE: Rate(20, 50),  # rare; a burst after an equivocation
            Kind.STATUS: Rate(20, 40),  # one per committed block plus a heartbeat
            Kind.GET_BLOCKS: Rate(20, 40),  # 2,000 blocks/s served to one syncing peer
            Kind.GET_PEERS: Rate(0.1, 3),  # peer exchange asks every 30 s at most
            # State sync: a joining node asks for the list once per attempt, then for
            # parts of up to ~1 MiB (store/snapshots.py): 10 MiB/s served to one peer.
            Kind.GET_SNAPSHOTS: Rate(1, 5),
            Kind.GET_SNAPSHOT_PART: Rate(10, 20),
            # Sent on every step change (3 a round) and as a heartbeat: 10/s covers
            # rounds of 300 ms; the burst covers a node skipping several rounds at once.
            Kind.ROUND_STATE: Rate(25, 50),
            # Tx relay by id: a node sends each peer at most one announcement and a few
            # requests per batching window (`tx_announce_wait`, 100 ms): 10/s; trickled
            # (wan23t), about one a second to a peer not drawn for the window. Retries
            # after a silent announcer leave at once, one per `tx_fetch_retry_after` and
            # request at most. Ample room for chunked frames and a peer running a
            # shorter window.
            Kind.TX_IDS: Rate(200, 400),
            Kind.GET_TXS: Rate(200, 400),
        }
    )


def default_relay_fanout() -> Mapping[Kind, int]:
    # A vote goes on to one peer (issue 22, wan23v): its signer sends it to every peer, so
    # on a full mesh a fan-out of 4 put each vote on every node ~5 times, most of an idle
    # node's frames. The rest of our peers get it from consensus gossip if their vote bits
    # still lack it once `RELAYED_HOLD_MS` passed (CometBFT's reactor gossips votes only
    # so). Not 0: a split equivocator sends each half of the network its own twin, and
    # vote bits cannot tell the twins apart; the one random relay is what lets an honest
    # node see both and report the evidence (tests/consensus/test_real_gossip.py), and
    # it is a fast path past a slow signer or across a sparse network.
    return MappingProxyType(
        {Kind.PROPOSAL: 4, Kind.COMPACT_PROPOSAL: 4, Kind.TX: 4, Kind.TXS: 4, Kind.VOTE: 1}
    )


def default_relay_gather() -> Mapping[Kind, float]:
    # 50 ms: the votes of one step reach a node over about a WAN one-way trip (45-80 ms
    # on the testnet), so a window holds several; a relay is a vote's second path (its
    # signer sends it to every peer), and 50 ms is small beside the 600 ms repair hold.
    return MappingProxyType({Kind.VOTE: 0.05})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one Network; the defaults are for production."""

    # CometBFT's defaults: many inbound slots for the network, few outbound ones that
    # this node chose itself (harder for an attacker to fill).
    max_inbound: int = 40
    max_outbound: int = 10
    # A node whose inbound slots are full still takes this many more connections, only
    # to answer one GET_PEERS and close (`too_many_peers`): every node keeps its seed as
    # a persistent peer, so a seed's slots fill up, and a node joining through it must
    # still learn where the rest of the network is.
    full_answers: int = 4
    # Seed mode (CometBFT's): every inbound node is answered as a full node answers
    # (its GET_PEERS, then a close, `seed_mode`) and its own address kept for the next
    # ones; no peer is kept and no other address dialed, so the seed holds no slot of
    # anyone's and sees no gossip. Only the configured peers are dialed (other seeds,
    # which answer it the same way).
    seed_mode: bool = False
    # Eclipse: node keys are free, addresses in one network cheap, so inbound slots are
    # shared out by network (p2p/netgroup.py). One IP gets 3 of the 40 (a few operators
    # run several nodes behind one address; CometBFT allows one), one /24 (IPv6 /48)
    # gets 8: an attacker needs five networks to take all slots, and outbound peers,
    # chosen by this node one per group, are out of its reach anyway.
    max_inbound_per_ip: int = 3
    max_inbound_per_subnet: int = 8
    # ... and one address group (IPv4 /16, IPv6 /32: one provider, the unit the peer
    # book treats as one attacker) gets 16: a tunnel broker hands out several /48s per
    # account inside one /32, so without this five of them fill all 40 slots; with it an
    # attacker needs three providers, and honest peers elsewhere keep 24 slots.
    max_inbound_per_group: int = 16
    # Networks (CIDR) whose peers are exempt from the per-IP, subnet and group caps and
    # from the one-outbound-per-group rule, each address counting as a group of its own:
    # for devnets and tests, where every node is 127.0.0.1 (`fluxchain devnet` sets
    # 127.0.0.0/8 and ::1), and for an operator's own private network. Empty in
    # production: a public node treats every network alike.
    uncapped_networks: tuple[str, ...] = ()
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    connect_timeout: float = 5.0  # TCP + websocket upgrade to a dialed address
    close_timeout: float = 2.0  # wait this long for a peer to acknowledge our close
    # aiohttp pings a peer silent for `heartbeat` seconds and drops it if no pong comes
    # within half of that: a dead link (or a stale connection that keeps a restarted
    # peer's new one out as a duplicate) is gone in 15 s, not at the TCP timeout.
    heartbeat: float = 10.0
    # Per-peer send queue. Gossip that does not fit is dropped for that peer (it will
    # be re-gossiped or fetched by sync); a response or request that does not fit, or
    # a frame the peer takes longer than `write_timeout` to accept, disconnects it.
    # 24 MiB holds two maximal frames plus small ones; broadcast frames are shared
    # between queues, so the real cost per peer is far lower.
    send_queue_frames: int = 2048
    send_queue_bytes: int = 24 * MiB
    write_timeout: float = 10.0
    # The writer sends the small frames it finds queued for a peer as one BATCH of at most
    # this many (p2p/connection.py); 1 sends every frame alone (measurements compare).
    batch_frames: int = MAX_BATCH_FRAMES
    # Frames waiting for the host (gossip, GET_BLOCKS, GET_PEERS). Gossip arriving at a
    # full inbox is dropped and forgotten, so another peer's copy can still deliver it.
    inbox_frames: int = 512
    # A COMPACT_PROPOSAL that finds at least this many frames waiting in its peer's inbox
    # goes ahead of them (`p2p.peer.Inbox`): under a flood it waited 0.7-4 s behind txs
    # to admit, past the propose timeout (issue 24, conc20). Behind fewer it keeps its
    # place, so the txs its proposer flushed just before it are admitted first, unfetched.
    compact_ahead_frames: int = 16
    # Gossip ids remembered for duplicate suppression: 100,000 x ~100 bytes = ~10 MiB,
    # more than a minute of traffic at the target rate, far longer than a message
    # takes to cross the network.
    seen_cache_size: int = 100_000
    # A proposal or vote seen this long ago is delivered to the host again when a peer
    # sends it again: a peer's consensus gossip re-sends only what our ROUND_STATE says
    # we lack, so the first copy was lost or refused by the engine (too far ahead, a
    # full inbox). Flood duplicates arrive within milliseconds and are still dropped.
    consensus_redeliver_after: float = 1.0
    # Ids each peer sent us (never sent back to it): a few seconds of its traffic.
    known_per_peer: int = 8192
    rates: Mapping[Kind, Rate] = field(default_factory=default_rates)
    # A payload a node relays (not its own: that goes to every peer) goes to this many of
    # its other peers, chosen at random, by kind; kinds not named are flooded to every
    # peer. Flooding made each block and each tx cross a dense network once per link: on
    # the WAN testnet's full mesh 18 copies per node, when the origin had sent every node
    # its own already. Fanned out to 4 (an epidemic), a payload still reaches a sparse
    # network in a few hops; what misses a node comes by repair: consensus gossip sends a
    # proposal to a peer whose ROUND_STATE lacks it, and a node re-sends its own pending
    # txs (node/service.py REGOSSIP_BLOCKS). Votes are small and urgent: flooded.
    relay_fanout: Mapping[Kind, int] = field(default_factory=default_relay_fanout)
    # Relays of these kinds wait up to this many seconds and leave together, to the same
    # `relay_fanout` picks where they may lack them (p2p/relay.py): one message a peer for
    # the lot instead of one each. An idle WAN testnet node relayed ~30 votes a height, one
    # websocket message (a seal, a send through the kernel, a read and an open at the
    # peer) each, to peers that nearly always had them from the signer (issue 22, idle22).
    relay_gather: Mapping[Kind, float] = field(default_factory=default_relay_gather)
    # All frames but solicited responses share a byte budget: two maximal frames a
    # second sustained, four at once; a proposal a second at max block size fits.
    bytes_per_second: float = 16 * MiB
    bytes_burst: float = 32 * MiB
    # Bulk tx frames (messages.BULK_KINDS: TXS, TX_BODIES...) may use only this share of
    # that budget and of the send queue (bytes and slots); the rest is kept for consensus
    # frames. A proposer flushes up to ~1 MiB of txs just before its proposal: on a link
    # near its limit the flush took the last room and the proposal was the frame
    # dropped, resent only 1.5 s later (fix16b). The quarter kept, 8 MiB of the budget
    # and 6 MiB of the queue by default, holds a full proposal of the largest block.
    bulk_share: float = 0.75
    # Consensus frames are written before queued bulk frames (messages.Lane); after this
    # many writes in a row took no bulk frame while one waited, the next write starts
    # with one. A count of writes, not a share of bytes: bulk needs progress (a GET_TXS
    # must leave for its request's clock to start, an asker waits on a TX_BODIES), and
    # consensus traffic is rate-limited, so bulk has most of a busy link anyway; it
    # waits only behind a burst (block sync answers), for at most this many writes,
    # and a consensus frame waits for at most one bulk write.
    bulk_turn_after: int = 4
    # Misbehaviour: Bitcoin Core's 100-point scale. Points decay by one a minute, so
    # an honest peer that relays an occasional invalid tx is not banned by accumulation.
    ban_threshold: float = 100.0
    score_decay_per_second: float = 1 / 60
    ban_duration: float = 24 * 3600.0
    # IP bans are skipped for loopback addresses: every node of a devnet shares
    # 127.0.0.1, and one misbehaving local process must not cut off the others.
    # Node-key bans apply everywhere.
    ban_loopback: bool = False
    max_inflight_requests: int = 8  # GET_BLOCKS awaiting an answer, per peer
    # Timers of the maintenance loop.
    dial_interval: float = 1.0
    pex_interval: float = 30.0
    status_interval: float = 10.0
    save_interval: float = 60.0
    # Dial backoff: 1 s, 2 s, 4 s … capped at 60 s, times a jitter in [0.5, 1).
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    # A discovered address is forgotten after this many failed dials in a row.
    max_dial_failures: int = 8
    # The peer book's tables (p2p/peerbook.py): buckets of `book_bucket_size` addresses.
    book_new_buckets: int = 64
    book_tried_buckets: int = 32
    book_bucket_size: int = 16
    max_bans: int = 4096
    # Tx relay by id (issue 22, wan22n; p2p/tx_fetch.py, docs/p2p.md). Tx ids each peer is
    # known to hold (it sent or announced them, or we did to it): never announced to it
    # again. 16,384 is eight seconds of the 2,000 tx/s target.
    known_txs_per_peer: int = 16_384
    # Announcements and requests wait this long for others to share their frame. 100 ms:
    # more than the WAN testnet's longest one-way delay (80 ms), so the origin's push
    # reaches a peer before a neighbour's announcement of the same tx (no needless fetch),
    # and a third fewer TX_IDS frames than at 20 ms (docs/performance.md, wan22n); it
    # delays only nodes that had no push, by 100 ms a hop.
    tx_announce_wait: float = 0.1
    # Trickled announcements (issue 22, wan23t; Bitcoin's inv trickling): the txs a node
    # took from a peer are announced at the next window to `tx_announce_fanout` peers
    # chosen at random (a sparse network still relays at once), and to every other peer at
    # its own next trickle time, a random delay of mean about `tx_trickle_interval` (from
    # half of it to 2.5 times it, p2p/tx_fetch.py), leaving out then every id it announced to us
    # meanwhile and every tx no longer in the mempool (committed). On the WAN testnet's
    # full mesh every peer has each tx from the origin's push, so the announcements to
    # the other peers were all useless; see docs/performance.md (wan23t) for the values.
    tx_announce_fanout: int = 2
    tx_trickle_interval: float = 1.0
    # Ids a peer may announce to us, and ask of us, per second: five times the target
    # tx rate; ids over it are ignored and the frame scored as rate-limited.
    tx_ids_rate: Rate = Rate(10_000, 20_000)
    # Ids we ask of one peer at a time; more wait for an answer, or go to another announcer.
    max_tx_fetch_inflight: int = 4096
    # A request unanswered this long is given up: its ids go to another announcer. Several
    # WAN round trips, well inside the 2 s confirmation target's slack.
    tx_fetch_timeout: float = 1.0
    # After a first announcer failed (silent past `tx_fetch_timeout`, or a miss), each
    # next announcer is asked this long after the previous one if that one has not
    # answered yet, its request still open until its own `tx_fetch_timeout` (a late
    # answer is still news; silence is still scored): eight silent announcers delay a
    # tx ~2.75 s instead of 8 s, and each announcer is still asked at most once per id.
    tx_fetch_retry_after: float = 0.25
    # A peer whose request expired (answered late or never, or still in our send queue at
    # its deadline) is "late" until it answers one in time, at most this long: the ids it
    # announces first are asked of it `tx_fetch_retry_after` later, so that another
    # announcer arriving meanwhile is asked first (rev14b: a first announcer answering
    # every request just late, each forgiven, delayed every tx a whole timeout, for free;
    # Bitcoin Core's tx request scheduling delays peers with requests outstanding too).
    tx_fetch_late_for: float = 60.0
    # Announcers remembered per id being fetched: the ones asked next, in order. Room for
    # every peer a node may have (max_inbound + max_outbound): with less, silent peers that
    # announce first crowd out an honest one, which never announces again (rev12b). More
    # peers connected than this (persistent peers past the slots, a larger max_inbound)
    # raise it to their number (fix16a).
    tx_fetch_announcers: int = 50
    # Ids being fetched at once, from all peers (rev13a): each holds its announcers
    # (up to `tx_fetch_announcers`), so without a bound 40 peers announcing junk at their
    # id rate, each with its waiting ids, held a gigabyte. 100,000 is fifty seconds of the
    # 2,000 tx/s target. A peer is asked for at most its slot's share of it (over
    # max_inbound + max_outbound: 2,000) for the ids it announced; past that, or past
    # the bound, they wait in its backlog (rev13c, p2p/tx_fetch.py).
    max_tx_fetching: int = 100_000
    # A tx the host refused as `mempool_full` (`Network.forget_txs`) is not fetched again
    # for this long, from anyone, nor ever again from the peer that delivered it (rev13c:
    # an attacker re-announcing a low-fee tx had it downloaded and its signature checked at
    # every announcement, free; every holder's trickled announcement fetched it again).
    # An announcement carries no fee to judge it by against the mempool's floor. 3 s: the
    # trickled announcements of all its holders arrive within 2.5 `tx_trickle_interval`s,
    # and the origin re-sends its pending txs by body every REGOSSIP_BLOCKS (3) blocks.
    # Announcers heard during it (one per peer slot, `tx_fetch_announcers`) are asked once
    # it ends (p2p/tx_fetch.py, rev14b: honest holders announce once, and were all
    # ignored; rev15a: eight, first come, let eight Sybil keys turn them away).
    tx_refused_cooldown: float = 3.0
    # A tx refused again waits twice its last cool-down, up to this long (rev15a: under a
    # full mempool's floor, each of its holders had it downloaded and checked again every
    # `tx_refused_cooldown`, nine times in 27 s). Its origin's re-push by body, every
    # REGOSSIP_BLOCKS, is not held back: it reaches the host unasked.
    tx_refused_cooldown_max: float = 60.0

    def consensus_reserve(self) -> tuple[float, int, int]:
        """What bulk frames leave to consensus frames (`bulk_share`): bytes of the byte
        budget, then slots and bytes of the send queue."""
        kept = 1.0 - self.bulk_share
        return (
            self.bytes_burst * kept,
            int(self.send_queue_frames * kept),
            int(self.send_queue_bytes * kept),
        )


class TokenBucket:
    """`rate.burst` tokens, refilled at `rate.per_second`; a frame spends some."""

    __slots__ = ("_rate", "_tokens", "_updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self._rate = rate
        self._tokens = rate.burst
        self._updated = now

    def take(self, now: float, amount: float = 1.0, keep: float = 0.0) -> bool:
        """Spend `amount` tokens if that leaves `keep`; False (and spend nothing) otherwise."""
        # No min()/max() calls: a bucket is taken from per frame and per announcement.
        tokens = self._tokens
        elapsed = now - self._updated
        if elapsed > 0.0:
            rate = self._rate
            tokens += elapsed * rate.per_second
            if tokens > rate.burst:  # noqa: PLR1730 - min() is a call, this is not
                tokens = rate.burst
        self._updated = now
        if tokens < amount + keep:
            self._tokens = tokens
            return False
        self._tokens = tokens - amount
        return True

    def available(self, now: float) -> float:
        """The tokens there are now (spending none)."""
        self.take(now, 0.0)
        return self._tokens

    def take_most(self, now: float, amount: int) -> int:
        """Spend as many whole tokens as there are, up to `amount`; how many."""
        most = min(amount, int(self.available(now)))
        self._tokens -= most
        return most


def decayed(points: float, decay_per_second: float, elapsed: float) -> float:
    """What is left of `points` after `elapsed` seconds of linear decay (never below zero)."""
    return max(0.0, points - max(0.0, elapsed) * decay_per_second)


class Score:
    """Misbehaviour points that decay linearly over time."""

    __slots__ = ("_decay", "_updated", "_value")

    def __init__(self, decay_per_second: float, now: float) -> None:
        self._decay = decay_per_second
        self._value = 0.0
        self._updated = now

    def value(self, now: float) -> float:
        """The current score."""
        self._value = decayed(self._value, self._decay, now - self._updated)
        self._updated = now
        return self._value

    def add(self, points: float, now: float) -> float:
        """Add `points`; return the new score."""
        self._value = self.value(now) + points
        return self._value

    def take_back(self, points: float, now: float) -> None:
        """Remove `points` earned for a fault made good since (never below zero)."""
        self._value = max(0.0, self.value(now) - points)


class LeftScores:
    """Misbehaviour points that outlive a connection, by ban key, until they decay. A node
    key's are the points its peer left with: it starts with them when it reconnects, so
    that leaving before the ban threshold sheds nothing (rev13a: a key left 8,192 ids
    unanswered per connection, three times, and was never banned). An IP's are the sum of
    what every connection from it earned (`add`): keys are free, so they ban the address
    of an attacker that changes keys, but never pass to a key (rev13c: an honest key behind
    an attacker's NAT took its points for good). At most `capacity` keys; past it the one
    with the fewest points now is forgotten (the oldest of those first): rev14a, forgetting
    the oldest let throwaway keys worth 0.01 each push out a key worth 80.

    Every key decays at the same rate, so the order of two keys' points never changes:
    each entry is ranked once, by its points plus its time times the decay, in a heap
    (a stored key's old ranks stay in it until they come up, and are skipped then)."""

    __slots__ = ("_capacity", "_decay", "_heap", "_points", "_seq")

    def __init__(self, decay_per_second: float, capacity: int) -> None:
        self._decay = decay_per_second
        self._capacity = capacity
        self._points: dict[str, tuple[float, float, int]] = {}  # key -> (points, when, seq)
        self._heap: list[tuple[float, int, str]] = []  # (rank, seq, key)
        self._seq = 0

    def remember(self, key: str, points: float, now: float) -> None:
        """`key` left with `points` (kept if more than what it had left with before)."""
        self._store(key, max(points, self.recall(key, now)), now)

    def add(self, key: str, points: float, now: float) -> float:
        """`key` earned `points` more; return its points now."""
        points += self.recall(key, now)
        self._store(key, points, now)
        return points

    def take_back(self, key: str, points: float, now: float) -> None:
        """`key` earned `points` for a fault it made good (a late answer delivered)."""
        if key in self._points:
            self._store(key, max(0.0, self.recall(key, now) - points), now)

    def _store(self, key: str, points: float, now: float) -> None:
        self._points.pop(key, None)
        if points <= 0:
            return
        self._seq += 1
        self._points[key] = (points, now, self._seq)
        heapq.heappush(self._heap, (points + now * self._decay, self._seq, key))
        while len(self._points) > self._capacity:
            _, seq, evicted = heapq.heappop(self._heap)
            kept = self._points.get(evicted)
            if kept is not None and kept[2] == seq:
                del self._points[evicted]
        if len(self._heap) > 2 * self._capacity + 16:
            # Old ranks of keys stored again: rebuilt from the live entries, O(capacity)
            # once per `capacity` stores.
            self._heap = [(p + w * self._decay, s, k) for k, (p, w, s) in self._points.items()]
            heapq.heapify(self._heap)

    def recall(self, key: str, now: float) -> float:
        """The points `key` left with, decayed since."""
        kept = self._points.get(key)
        if kept is None:
            return 0.0
        points, when, _ = kept
        return decayed(points, self._decay, now - when)
