"""Block sync scheduling: which height range to ask which peer, and how to judge the answer.

Pure and sans-I/O, like the consensus engine: the caller passes the time in, sends the
requests this returns, and reports what came back. Nothing here touches a socket, so
every attack on sync is a unit test (tests/p2p/test_sync_schedule.py).

The rules it keeps (docs/p2p.md "Block sync"):

- A peer's STATUS height is a *hint* of what to ask it for, never a fact: a range is
  only ever judged by what the answer holds. A peer that claimed a height and then
  cannot serve it loses the claim while it rests, and points each time (two such
  failures ban it).
- Every answer is judged against the range it answers, not against the answers that
  came before it: a late answer to an old request is never "out of order" for another
  peer.
- Ranges rotate over the peers (the least busy first, then round robin), so no single
  peer, the highest claimer included, sits on the first range.
- A failed range goes back into the queue and is asked of another peer; the peer that
  failed rests for a while (doubling with each fault) and is punished by the caller with
  the points `Fault` names. Empty, short, late, malformed, mismatched and bad-commit
  answers are all faults. A peer that left is not: its ranges are simply asked again.

Items are opaque to the schedule (`T`): the node decodes and checks them, then says
whether the answer held a fault. CometBFT's blocksync pool (a requester per height,
peer timeouts, redoing every request of a removed peer) is the design it learned from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Generic, TypeVar

from p2p.messages import MAX_BLOCKS_PER_REQUEST, MAX_BLOCKS_RESPONSE_BYTES

T = TypeVar("T")

BATCH: Final = 50  # heights per request: a few seconds of import work at worst
WINDOW: Final = 400  # heights requested or held ahead of the chain: bounds memory
MAX_PER_PEER: Final = 4  # requests in flight to one peer (p2p allows 8)
REST_BASE_S: Final = 1.0  # a peer's first fault keeps it out of the rotation this long…
REST_CAP_S: Final = 60.0  # …doubling with each fault, up to this


class Fault(StrEnum):
    """Why an answer was refused; the value is the reason given to `Network.punish`."""

    EMPTY = "sync_empty"  # no block at all for a range the peer claimed to hold
    SHORT = "sync_short"  # fewer blocks than asked, and not because the frame was full
    TIMEOUT = "sync_timeout"  # no answer in time (a late one is ignored by p2p)
    BAD_RESPONSE = "sync_bad_response"  # refused by p2p itself (more than asked)
    MALFORMED = "sync_malformed"  # a block or commit that does not decode
    WRONG_HEIGHT = "sync_wrong_height"  # a block for a height that was not asked
    MISMATCH = "sync_mismatch"  # the block is not the one its commit finalizes
    BAD_COMMIT = "sync_bad_commit"  # the commit does not verify (caught at import)
    INVALID_BLOCK = "sync_invalid_block"  # a finalized block whose body fails its header
    # A block whose commit verified but that this node cannot import: the node, not the
    # peer, is out of step with the chain. The peer rests; no points.
    REFUSED = "sync_refused_block"


# Points per fault, on the 100-point ban scale. An honest peer never sends a wrong block
# or a bad commit (one is enough to ban), and never answers a range it claimed with
# fewer blocks than fit (two bans). A timeout may be load on an honest peer: four, with
# the usual decay, before a ban. p2p already charged BAD_RESPONSE itself.
POINTS: Final = {
    Fault.EMPTY: 50,
    Fault.SHORT: 50,
    Fault.TIMEOUT: 25,
    Fault.BAD_RESPONSE: 0,
    Fault.MALFORMED: 100,
    Fault.WRONG_HEIGHT: 100,
    Fault.MISMATCH: 100,
    Fault.BAD_COMMIT: 100,
    Fault.INVALID_BLOCK: 100,
    Fault.REFUSED: 0,
}
# Faults that prove the peer cannot serve what it claimed: its claim is cut below them.
_CLAIM_FAULTS: Final = frozenset({Fault.EMPTY, Fault.SHORT})


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """One GET_BLOCKS to send: `count` heights from `start` to `peer_id`."""

    token: int  # unique per schedule: answers are matched by it, never by height
    peer_id: str
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class Penalty:
    """A fault of one peer, for the caller to pass to `Network.punish`."""

    peer_id: str
    fault: Fault
    detail: str

    @property
    def points(self) -> int:
        return POINTS[self.fault]


@dataclass(slots=True)
class _Standing:
    """What the schedule knows of one connected peer."""

    claimed: int = 0  # its latest STATUS height: a hint
    base: int = 1  # its lowest stored block (STATUS): nothing below it is asked of it
    # A node's base never goes down while it stays connected (the blocks below it are
    # gone): a STATUS that lowers it lied, or the one before did. Such a peer's empty
    # answers are no longer excused as "pruned".
    lowered_base: bool = False
    ceiling: int | None = None  # it failed to serve above this height, last time it was asked
    in_flight: set[int] = field(default_factory=set)  # tokens of its open requests
    faults: int = 0
    resting_until: float = 0.0

    def usable_height(self, now: float) -> int:
        """The height it may be taken to hold. While it rests after failing to serve its
        claim, only what it served; after that its claim gets one more try, and a
        second failure costs it the rest of its score."""
        if self.ceiling is None or now >= self.resting_until:
            return self.claimed
        return min(self.claimed, self.ceiling)


@dataclass(slots=True)
class _Range(Generic[T]):
    """Heights [start, start + count) asked of one peer; `items` once it answered."""

    request: BlockRequest
    items: tuple[T, ...] | None = None

    @property
    def start(self) -> int:
        return self.request.start

    @property
    def end(self) -> int:
        """One past the last height this range covers."""
        count = self.request.count if self.items is None else len(self.items)
        return self.request.start + count


@dataclass(slots=True)
class SyncSchedule(Generic[T]):
    """The block sync plan of one node: ranges in flight, answers held, peer standing.

    `max_pair_bytes` is the largest (block, commit) pair the chain allows: an answer
    cut short with less than that left in its frame may have been cut by the server's
    byte budget, so it is not a fault.
    """

    next_height: int
    max_pair_bytes: int
    batch: int = BATCH
    window: int = WINDOW
    max_per_peer: int = MAX_PER_PEER
    rest_base_s: float = REST_BASE_S
    rest_cap_s: float = REST_CAP_S
    _peers: dict[str, _Standing] = field(default_factory=dict)
    _ranges: dict[int, _Range[T]] = field(default_factory=dict)  # by token
    _next_token: int = 0
    _turn: int = 0  # round-robin position among equally busy peers

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= MAX_BLOCKS_PER_REQUEST:
            raise ValueError(f"batch must be in [1, {MAX_BLOCKS_PER_REQUEST}]")

    # -- what the caller tells it ----------------------------------------------------

    def update_peers(self, claims: Iterable[tuple[str, int, int]]) -> None:
        """The connected peers, the height each last claimed and its base (lowest block
        stored). Peers not listed left: their requests in flight will fail as `lost`;
        answers they gave are kept."""
        current = {peer_id: (claimed, base) for peer_id, claimed, base in claims}
        for peer_id in list(self._peers):
            if peer_id not in current:
                del self._peers[peer_id]
        for peer_id, (claimed, base) in current.items():
            standing = self._peers.setdefault(peer_id, _Standing())
            if base < standing.base:
                standing.lowered_base = True
            # The highest base it named stands: nothing below it is asked of it again.
            standing.base = max(standing.base, base)
            # A base above the claimed height says it holds no block at all (a node with
            # only genesis: height 0, base 1): a height it cannot serve is never asked,
            # so never found false; it is not believed, and does not count as ahead.
            standing.claimed = claimed if standing.base <= claimed else 0

    def advance(self, next_height: int) -> None:
        """The chain now needs `next_height` next (imported, by sync or consensus)."""
        if next_height <= self.next_height:
            return
        self.next_height = next_height
        for token, held in list(self._ranges.items()):
            if held.items is None:
                continue  # in flight: trimmed when it answers
            if held.end <= next_height:
                del self._ranges[token]
            elif held.start < next_height:
                held.items = held.items[next_height - held.start :]
                held.request = _moved(held.request, next_height)

    # -- deciding --------------------------------------------------------------------

    def next_requests(self, now: float) -> list[BlockRequest]:
        """New requests to send now: the lowest heights nobody holds or is asked for,
        each to the least busy peer that may serve it."""
        requests: list[BlockRequest] = []
        limit = self.next_height + self.window
        height = self.next_height
        covered = sorted((r.start, r.end) for r in self._ranges.values())
        index = 0
        while height < limit:
            while index < len(covered) and covered[index][1] <= height:
                index += 1
            if index < len(covered) and covered[index][0] <= height:
                height = covered[index][1]
                continue
            gap_end = min(covered[index][0], limit) if index < len(covered) else limit
            peer_id = self._choose(height, now)
            if peer_id is None:
                break  # no peer may serve this height now; higher ones wait their turn
            standing = self._peers[peer_id]
            count = min(self.batch, gap_end - height, standing.usable_height(now) - height + 1)
            request = BlockRequest(self._next_token, peer_id, height, count)
            self._next_token += 1
            self._ranges[request.token] = _Range(request)
            standing.in_flight.add(request.token)
            requests.append(request)
            height += count
        return requests

    def _choose(self, height: int, now: float) -> str | None:
        candidates = sorted(
            peer_id
            for peer_id, standing in self._peers.items()
            if standing.resting_until <= now
            and standing.base <= height <= standing.usable_height(now)
            and len(standing.in_flight) < self.max_per_peer
        )
        if not candidates:
            return None
        turn = self._turn
        self._turn += 1
        count = len(candidates)
        return min(
            candidates,
            key=lambda p: (
                len(self._peers[p].in_flight),
                self._peers[p].faults,
                (candidates.index(p) - turn) % count,
            ),
        )

    # -- judging answers -------------------------------------------------------------

    def on_answer(
        self,
        request: BlockRequest,
        items: tuple[T, ...],
        answer_bytes: int,
        now: float,
        fault: tuple[Fault, str] | None = None,
    ) -> Penalty | None:
        """Judge an answer to `request`. `items` are the pairs that passed the node's
        checks, in height order from `request.start`; `fault` is the first check one
        of them failed, if any (the whole answer is then refused). The range is held
        for import if the answer is good, and asked again of someone else if not."""
        held = self._ranges.get(request.token)
        self._finish(request)
        if held is None:
            return None  # the schedule forgot it (the chain moved past it)
        standing = self._peers.get(request.peer_id)
        if (
            fault is None
            and not items
            and standing is not None
            and request.start < standing.base
            and not standing.lowered_base
        ):
            # Pruned: it said (STATUS) that it holds nothing below its base, since it was
            # asked (a state-synced peer). No fault: the range goes to a peer that has it.
            del self._ranges[request.token]
            return None
        if fault is None and not items:
            fault = (Fault.EMPTY, f"no block of {request.start}..+{request.count}")
        elif (
            fault is None
            and len(items) < request.count
            and answer_bytes + self.max_pair_bytes <= MAX_BLOCKS_RESPONSE_BYTES
        ):
            fault = (
                Fault.SHORT,
                f"{len(items)} of {request.count} blocks from {request.start} "
                f"in {answer_bytes} bytes",
            )
        if fault is not None:
            del self._ranges[request.token]
            return self._penalize(request.peer_id, request.start + len(items), fault, now)
        held.items = items
        if held.end <= self.next_height:
            del self._ranges[request.token]
        elif held.start < self.next_height:
            held.items = items[self.next_height - held.start :]
            held.request = _moved(held.request, self.next_height)
        return None

    def on_timeout(self, request: BlockRequest, now: float) -> Penalty | None:
        """No answer in time: the range is asked again elsewhere; the peer rests."""
        if self._ranges.pop(request.token, None) is None:
            self._finish(request)
            return None
        self._finish(request)
        detail = f"no answer for {request.start}..+{request.count}"
        return self._penalize(request.peer_id, request.start, (Fault.TIMEOUT, detail), now)

    def on_refused(self, request: BlockRequest, now: float) -> Penalty | None:
        """p2p refused the answer (and punished the peer itself): ask again elsewhere."""
        self._ranges.pop(request.token, None)
        self._finish(request)
        return self._penalize(request.peer_id, request.start, (Fault.BAD_RESPONSE, ""), now)

    def on_lost(self, request: BlockRequest) -> None:
        """The request never reached an answer through no fault of the peer (it left,
        or had too many requests in flight): the range is simply asked again."""
        self._ranges.pop(request.token, None)
        self._finish(request)

    def on_import_failed(
        self, peer_id: str, height: int, fault: Fault, detail: str, now: float
    ) -> Penalty:
        """The block at `height` served by `peer_id` was refused at import (a bad
        commit, say). Everything that peer holds from there is dropped and asked of
        others."""
        for token, held in list(self._ranges.items()):
            if held.request.peer_id == peer_id and held.items is not None and held.end > height:
                del self._ranges[token]
        return self._penalize(peer_id, height, (fault, detail), now)

    def _finish(self, request: BlockRequest) -> None:
        standing = self._peers.get(request.peer_id)
        if standing is not None:
            standing.in_flight.discard(request.token)

    def _penalize(
        self, peer_id: str, failed_height: int, fault: tuple[Fault, str], now: float
    ) -> Penalty:
        kind, detail = fault
        standing = self._peers.get(peer_id)
        if standing is not None:
            if kind in _CLAIM_FAULTS:
                ceiling = failed_height - 1
                if standing.ceiling is not None and now < standing.resting_until:
                    ceiling = min(ceiling, standing.ceiling)  # failed twice in one rest
                standing.ceiling = ceiling
            standing.faults += 1
            rest = min(self.rest_cap_s, self.rest_base_s * 2 ** (standing.faults - 1))
            standing.resting_until = max(standing.resting_until, now + rest)
        return Penalty(peer_id, kind, detail)

    # -- handing over ----------------------------------------------------------------

    def ready(self) -> list[tuple[str, T]]:
        """The held items that continue the chain from `next_height`, in height order,
        each with the peer that served it. They stay held until `advance` passes them."""
        by_start = {r.start: r for r in self._ranges.values() if r.items is not None}
        out: list[tuple[str, T]] = []
        height = self.next_height
        while (held := by_start.get(height)) is not None and held.items:
            out.extend((held.request.peer_id, item) for item in held.items)
            height = held.end
        return out

    def target(self, now: float) -> int:
        """The highest height a peer claims, less the claims of peers resting after they
        failed to serve them (0 with no peer): a hint for "how far behind are we", never
        a promise."""
        return max((s.usable_height(now) for s in self._peers.values()), default=0)

    def in_flight(self) -> int:
        return sum(1 for r in self._ranges.values() if r.items is None)


def _moved(request: BlockRequest, start: int) -> BlockRequest:
    """`request` with the heights below `start` cut off (they were imported)."""
    cut = start - request.start
    return BlockRequest(request.token, request.peer_id, start, request.count - cut)
