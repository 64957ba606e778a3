"""The consensus driver: runs the sans-I/O engine against the real chain, clock and network.

One task owns the engine, and every input reaches it through one queue, so the engine is
never re-entered: network messages, timer expiries, and the driver's own answers (a block
built, a block validated, our own signed votes) all wait their turn. For each output:

    Broadcast       -> gossip the proposal (with its block) or vote
    SignVote/…      -> the signer guard (fsync before it returns), then gossip and feed back
    ScheduleTimeout -> a loop timer that enqueues TimeoutFired
    BuildProposal   -> build a block from the mempool on top of the head
    ValidateBlock   -> execute the block (its writes stay pending) and answer valid/invalid,
                       and timely/untimely: its time not beyond our clock + max_clock_drift_ms
    CommitBlock     -> persist the block with its commit; start the next height after the
                       rest of the block interval (Tendermint's timeout_commit)
    ReportEvidence  -> an EVIDENCE tx signed by this node, into the mempool and gossip,
                       offered again after each block until recorded (`own_reports`)
    Refused         -> tell the network to forget it was seen, so that it can come again

Every height starts through `wal.height_inputs`, the same path after a restart: the signer
record's round, lock and valid value, the WAL's proposals, votes and timeouts, our last
vote. Timeouts are logged in the WAL as they fire, like messages.

Blocks fetched by sync are imported through the same queue, so the chain is only ever
touched by this task. Logs follow a block from proposal to commit at info level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Final, Protocol

from consensus.engine import MAX_BUFFERED_STRANGER_VOTES, Engine, Fate
from consensus.errors import ConsensusError
from consensus.events import (
    BlockValidated,
    Broadcast,
    BuildProposal,
    CommitBlock,
    Input,
    NewHeight,
    NextSetKnown,
    Output,
    ProposalReceived,
    ProposeBlock,
    Refused,
    Replayed,
    ReportEvidence,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    StrangersDropped,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import Proposal
from consensus.signer import SignerGuard
from consensus.timeouts import TimeoutParams
from fluxchain.core import execute as ex
from fluxchain.core import vrf
from fluxchain.core.accounts import changed_accounts
from fluxchain.core.block import Block, Header
from fluxchain.core.crypto import NOTHING_VERIFIED, SigningKey
from fluxchain.core.encoding import as_bytes, as_list, pack, unpack
from fluxchain.core.errors import BlockError, DecodeError, Reason, StoreError, TxError
from fluxchain.core.tx import Evidence, Tx
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.service import NodeService
from fluxchain.node.sync import ImportOutcome, SyncedBlock, import_in_order
from fluxchain.node.wal import ConsensusWal, height_inputs
from fluxchain.store.chain import NOTHING_CHECKED, Chain

log = logging.getLogger("fluxchain.consensus")

INBOX_LIMIT: Final = 10_000  # gossip beyond this is dropped; consensus re-gossips what matters
WATCHDOG_S: Final = 1.0
# Rebuilt compact proposals whose tx ids are kept for their block check: a height's
# proposal and re-proposals of a few rounds; each is 32 bytes a tx.
TX_IDS_KEPT: Final = 4
# Precommit signatures kept a height as verified (`Driver._precommits`): a height's
# precommits the engine takes are bounded by its admission (a vote a validator a round,
# a few rounds); past this, more are simply verified again.
PRECOMMITS_KEPT: Final = 4096
PRECOMMIT_HEIGHTS_KEPT: Final = 3  # the last height's, this one's, the next one's (buffered)
STALL_MARGIN_S: Final = 2.0
# Votes of the next height by keys outside the current set (the engine's strangers' share,
# while that set is unknown) that one source (a peer's address group: `Driver.admit`) keeps
# however many others want places: a tenth of the share (a node's outbound peers, which it
# chose, are 10 by default). A source may take more while places are free; once they are
# full, a source under its part takes them back from the one most over its own (rev24p C),
# so that one attacker's throw-away keys cannot keep out the next epoch's new validators
# that others relay (rev24 1), and an honest relay is not cut while places are free.
PEER_STRANGER_VOTES: Final = MAX_BUFFERED_STRANGER_VOTES // 10


class Gossip(Protocol):
    """What the driver needs from the network."""

    def broadcast_proposal(self, payload: bytes) -> None: ...
    def broadcast_vote(self, payload: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncedBlocks:
    """Finalized blocks fetched from peers, to import in order; `done` learns the outcome
    (how many imported, which block was refused and from which peer)."""

    blocks: tuple[SyncedBlock, ...]
    done: asyncio.Future[ImportOutcome] | None = None


class _NextHeight:
    """Marker input: the block interval after a commit has passed."""


_NEXT_HEIGHT: Final = _NextHeight()

DriverInput = Input | SyncedBlocks | _NextHeight


def _wall_clock_ms() -> int:
    """This node's clock, in the unit of block times."""
    return time.time_ns() // 1_000_000


def encode_proposal(proposal: Proposal, block_bytes: bytes) -> bytes:
    return pack([proposal.to_fields(), block_bytes])


def proposal_of(payload: bytes) -> Proposal:
    """The proposal of a payload this node built and signed (`encode_proposal`): its block
    was built here, so nothing of it is decoded or hashed again."""
    return Proposal.from_fields(as_list(unpack(payload), "proposal", length=2)[0])


def decode_proposal(
    payload: bytes, max_block_bytes: int, max_block_txs: int
) -> tuple[Proposal, bytes]:
    """Parse a gossiped proposal; its block must hash to what the proposal names, and
    carry the txs and parent commit its header names (a relay cannot swap the body)."""
    proposal, block_bytes = decode_proposal_head(payload, max_block_bytes)
    check_proposal_block(proposal, block_bytes, max_block_bytes, max_block_txs)
    return proposal, block_bytes


def decode_proposal_head(payload: bytes, max_block_bytes: int) -> tuple[Proposal, bytes]:
    """A gossiped proposal and its block's bytes, the block not decoded nor checked yet
    (`check_proposal_block`): enough to tell a copy of a held proposal by its block hash
    before the costly part (fix17: a peer re-sending a 1 MiB proposal had it all done)."""
    fields, block_bytes = as_list(
        unpack(payload, max_bytes=max_block_bytes + 4096), "proposal", length=2
    )
    proposal = Proposal.from_fields(fields)
    return proposal, as_bytes(block_bytes, "proposal.block", max_len=max_block_bytes)


def check_proposal_block(
    proposal: Proposal, block_bytes: bytes, max_block_bytes: int, max_block_txs: int
) -> list[bytes]:
    """Check the block of `decode_proposal_head` against its proposal (see
    `decode_proposal`); the ids of its txs, checked against the header's tx_root: the
    block's check takes them (`Driver.note_tx_ids`) rather than hash every tx again."""
    block = Block.decode(block_bytes, max_block_bytes, max_block_txs)
    if block.hash() != proposal.block_hash:
        raise DecodeError(Reason.BAD_PROPOSAL, "the block does not hash to the proposal's")
    tx_ids = block.tx_ids()
    mismatch = block.body_mismatch(tx_ids)
    if mismatch is not None:
        raise DecodeError(Reason.BAD_PROPOSAL, mismatch)
    check_proposal_round(proposal, block.header)
    return tx_ids


def check_proposal_round(proposal: Proposal, header: Header) -> None:
    """A fresh proposal carries a block built for its own round, so the header names the
    proposal's signer as proposer (the header rules tie it to that round); a re-proposal
    carries a block built in a round no later than its proof-of-lock round.

    Raise DecodeError(bad_proposal) otherwise: a signer that wraps a block naming another
    proposer (say, to redirect the proposer's pay) is refused before the engine sees it.
    """
    if proposal.pol_round == -1:
        if header.round != proposal.round:
            raise DecodeError(
                Reason.BAD_PROPOSAL,
                f"a round {proposal.round} proposal of a block built for round {header.round}",
            )
    elif header.round > proposal.pol_round:
        raise DecodeError(
            Reason.BAD_PROPOSAL,
            f"a block of round {header.round} re-proposed on a lock of round {proposal.pol_round}",
        )


class Driver:
    """Owns the engine; the only writer of the chain while the node runs.

    It gets what it works with at construction: the chain it writes; the service, whose
    pooled txs it proposes (`candidates`), which it tells of every commit and dropped tx,
    and through which it submits evidence; and `checked_txs`, the txs whose signatures
    the node verified already (`TxAdmission.verified`: admitted, or verified by a block
    check or by admission and not held), which the chain's import need not check again.
    """

    def __init__(
        self,
        chain: Chain,
        service: NodeService,
        key: SigningKey,
        guard: SignerGuard | None,
        gossip: Gossip,
        timeouts: TimeoutParams | None = None,
        on_commit: Callable[[int], None] | None = None,
        wal: ConsensusWal | None = None,
        on_refused: Callable[[Proposal | Vote, bytes], None] | None = None,
        on_storage_failure: Callable[[StoreError], None] | None = None,
        checked_txs: Mapping[bytes, Tx] = NOTHING_CHECKED,
        on_failure: Callable[[ConsensusError], None] | None = None,
    ) -> None:
        self.service = service
        self.chain = chain
        self._checked_txs = checked_txs
        self.key = key
        # Derived from the node key as the wallet derived it to register the node (vrf.py).
        self._vrf_secret = vrf.derive_secret(key.secret)
        self.guard = guard
        self.gossip = gossip
        self.engine = Engine(self.chain.params.chain_id, guard.pubkey if guard else None, timeouts)
        # Unbounded: the driver's own inputs (timeouts, the next height) must never be lost;
        # `submit` bounds what the network may queue.
        self._inbox: asyncio.Queue[DriverInput] = asyncio.Queue()
        self._timers: list[asyncio.TimerHandle] = []
        self._pending: tuple[bytes, Block, ex.Execution] | None = None
        # The tx ids of rebuilt compact proposals (`note_tx_ids`), by block hash, with the
        # exact bytes they are of: a few a height at most.
        self._tx_ids: dict[bytes, tuple[bytes, Sequence[bytes]]] = {}
        self._height_started = time.monotonic()
        self._started_height = 0
        self._on_commit = on_commit or (lambda height: None)
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.wal = wal
        # Proposals the engine stored at its current height, with their blocks, for the
        # consensus gossip to offer peers that lack them (read-only outside this class).
        self.proposals_held: dict[bytes, tuple[Proposal, bytes]] = {}
        # The network's "seen" mark on a message the engine refused must go (Refused).
        self._on_refused = on_refused or (lambda message, block_bytes: None)
        # A StoreError ends the loop: told here, the node stops (docs/storage.md).
        self._on_storage_failure = on_storage_failure or (lambda error: None)
        self._storage_failed = False
        self._stop_asked = False  # a cancelled consensus task is a stop only after `stop`
        # Anything else that ends the consensus task: told here, the node stops (`_ended`).
        self._on_failure = on_failure or (lambda error: None)
        # Votes `admit` let into the inbox, by validator, until the engine steps them: the
        # engine's answer for the next vote must count them (the queue lags the network).
        self._queued_votes: dict[bytes, list[Vote]] = {}
        # The precommits the engine took, by height (the last, this one, the next), as verified
        # signatures (crypto.Verified): only those whose signature was checked, by the node
        # before `admit` (a gossiped one) or because we signed them here; never one read
        # back from the WAL or the signer record, which nobody checked (review rev22w).
        # Its height's commit (`commit_block`) and the next block's parent commit
        # (`_execute`) are made of them: each check verified ~14 signatures again a height
        # (issue 22, idle22).
        self._precommits: dict[int, set[tuple[bytes, bytes, bytes]]] = {}
        # The stranger votes (`Engine.buffers_as_stranger`) `admit` let in, by source, oldest
        # first, and each one's source, for the engine's next height `_strangers_height`
        # only (emptied when the engine's height moves): at most
        # MAX_BUFFERED_STRANGER_VOTES in all, as the engine's places (`_take_place`); a
        # vote the engine refused or let go leaves them (`_unshare`).
        self._strangers: dict[str, list[Vote]] = {}
        self._stranger_source: dict[Vote, str] = {}
        self._strangers_height = 0
        # The sources among `_strangers` whose links are all gone (`source_left`): their
        # part is nothing, their votes give way first.
        self._sources_left: set[str] = set()
        # Whether the loop waits on an empty inbox: a proposal queued then is the next
        # input stepped, on the engine as it is now (`submit_proposal`).
        self._idle = False
        # The verdict on the proposal queued into an idle loop, taken when it is stepped.
        self._prejudged: tuple[ProposalReceived, Fate, bool] | None = None
        # The node's questions "relay it?" on gossiped proposals queued behind other
        # inputs, by the id of the queued item (alive while queued): at most one a queued
        # proposal, so within INBOX_LIMIT; answered when the engine judges it.
        self._relay_asked: dict[int, asyncio.Future[bool]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="consensus")
        self._task.add_done_callback(self._ended)
        self._watchdog = loop.create_task(self._watch(), name="consensus-watchdog")

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The consensus task runs until `stop` cancels it. Whatever else ended it (an
        exception while a height starts, a bug past every handler) stops the node loudly:
        a validator whose consensus died while its API and gossip serve on looks alive and
        never votes again."""
        self._answer_relays()  # nothing queued will be stepped now
        if self._stop_asked or self._storage_failed:
            return  # stopped, or a storage failure the node was told of already
        # A CancelledError out of one input's step (a BaseException: past the loop's
        # handlers) also ends the task as cancelled; only `stop` makes that a stop.
        exc = None if task.cancelled() else task.exception()
        ended = "it was cancelled" if task.cancelled() else repr(exc) if exc else "it returned"
        error = ConsensusError(Reason.CONSENSUS_STOPPED, f"the consensus task ended: {ended}")
        log.error(
            "consensus stopped; stopping the node %s: %s",
            error.reason,
            error.message,
            exc_info=exc,
        )
        self._on_failure(error)

    async def _watch(self) -> None:
        """Liveness guard: a consensus state that outlives its own timeout is nudged.

        Firing a timeout late or twice is always safe (timeouts only decide when to give
        up waiting, never what to vote for); a lost timer or a height that was committed
        but never followed must not leave the node silent forever.
        """
        seen: tuple[int, int, int, int] | None = None
        since = time.monotonic()
        while True:
            await asyncio.sleep(WATCHDOG_S)
            engine = self.engine
            now_state = (self.chain.height, engine.height, engine.round, int(engine.step_))
            if now_state != seen:
                seen, since = now_state, time.monotonic()
                continue
            stalled = time.monotonic() - since
            if self._started_height != self.chain.height + 1:
                if stalled > STALL_MARGIN_S:
                    log.warning(
                        "next height not started; starting height=%d", self.chain.height + 1
                    )
                    self.submit(_NEXT_HEIGHT)
                    since = time.monotonic()
                continue
            limit = engine.timeouts.timeout_ms(engine.step_, engine.round) / 1000 + STALL_MARGIN_S
            if stalled > limit:
                log.warning(
                    "consensus stalled height=%d round=%d step=%s for %.1fs; re-firing its timeout",
                    engine.height,
                    engine.round,
                    engine.step_.name.lower(),
                    stalled,
                )
                self.submit(TimeoutFired(engine.height, engine.round, engine.step_))
                since = time.monotonic()

    async def stop(self) -> None:
        self._stop_asked = True
        for timer in self._timers:
            timer.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._task is not None and not self._task.done():  # a dead one was told (`_ended`)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._abort_pending()
        self._answer_relays()

    @property
    def round(self) -> int:
        return self.engine.round

    def note_tx_ids(self, block_hash: bytes, block_bytes: bytes, tx_ids: Sequence[bytes]) -> None:
        """`tx_ids` are the SHA-256 ids of `block_bytes`' txs in block order, and their
        Merkle root is its header's tx_root (both checked by the caller: a compact
        proposal's ids): the block's check takes them rather than hash every tx again."""
        self._tx_ids[block_hash] = (block_bytes, tx_ids)
        while len(self._tx_ids) > TX_IDS_KEPT:
            del self._tx_ids[next(iter(self._tx_ids))]

    def submit(self, item: DriverInput) -> None:
        """Queue an input. Gossip beyond INBOX_LIMIT is dropped (peers re-gossip what
        matters); timer and sync inputs always get in, or a height could never start.
        A vote's signature is checked by the caller (a precommit counts as verified)."""
        if isinstance(item, ProposalReceived | VoteReceived) and (
            self._inbox.qsize() >= INBOX_LIMIT
        ):
            log.warning("consensus inbox full; dropped %s", type(item).__name__)
            if isinstance(item, VoteReceived):
                self._on_refused(item.vote, b"")
            else:
                self._on_refused(item.proposal, item.block_bytes)
            return
        self._inbox.put_nowait(item)

    def submit_proposal(self, item: ProposalReceived) -> bool | asyncio.Future[bool]:
        """Queue a gossiped proposal (its signature checked); whether the engine keeps
        it, or buffers it for the next height, when it is stepped: only then may it be
        relayed (review rev24w). Answered at once if the loop waits on an empty inbox:
        the proposal is the next input stepped, on the engine as it is now, so the
        verdict is the one the step takes (no extra loop turn for an honest proposal).
        Behind other inputs (votes that move the round, a proposal of the same round)
        it is judged when it is stepped: a future, answered then."""
        running = self._task is not None and not self._task.done()
        if not running or self._inbox.qsize() >= INBOX_LIMIT:
            self.submit(item)  # queued before the start, or refused: the network forgets it
            return False
        if self._idle and self._inbox.empty():
            fate, relay = self._judge(item)
            self._prejudged = (item, fate, relay)
            self.submit(item)
            return relay
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._relay_asked[id(item)] = answer
        self.submit(item)
        return answer

    def _answer_relays(self) -> None:
        """No: the proposals still queued will not be stepped (the loop ended)."""
        asked, self._relay_asked = self._relay_asked, {}
        for answer in asked.values():
            if not answer.done():
                answer.set_result(False)

    async def _run(self) -> None:
        # None first: after a restart, this resumes the height where we stood.
        item: DriverInput | None = None
        while True:
            try:
                if item is None:
                    self._new_height()
                else:
                    self._handle(item)
            except (StoreError, OSError) as exc:
                # Not the input's fault: this node's disk failed or its data is damaged;
                # an OSError is the WAL's or the signer record's write or fsync (after a
                # failed fsync a retried one can report success for pages the kernel
                # dropped). Nothing more is decided on it (Bitcoin Core's AbortNode,
                # CometBFT's panic on a failed store): the node stops, loudly.
                error = (
                    exc
                    if isinstance(exc, StoreError)
                    else StoreError(Reason.STORE_WRITE_FAILED, f"consensus record: {exc}")
                )
                log.error(
                    "storage failed; stopping input=%s %s: %s",
                    type(item).__name__ if item is not None else "NewHeight",
                    error.reason,
                    error.message,
                )
                self._storage_failed = True
                self._answer_relays()
                self._on_storage_failure(error)
                return
            except Exception:  # one bad input must not stop consensus
                if item is None:
                    raise  # no height to decide on: the task ends, the node stops (`_ended`)
                log.exception("consensus input failed input=%s", type(item).__name__)
            self._idle = True
            item = await self._inbox.get()
            self._idle = False

    def _new_height(self) -> None:
        height = self.chain.height + 1
        self._height_started = time.monotonic()
        self._started_height = height
        # The set chosen in an epoch's first block signs the blocks after it: only then is
        # the next height's set unknown while this one is decided (core/epochs.py).
        validators = self.chain.validators()
        next_validators = validators if height % self.chain.params.epoch_length else None
        inputs = height_inputs(height, validators, next_validators, self.guard, self.wal)
        start = inputs[0]
        assert isinstance(start, NewHeight)
        if start.resume is not None or len(inputs) > 1:
            log.info(
                "consensus resumed height=%d round=%d replayed=%d",
                height,
                start.resume.round if start.resume else 0,
                len(inputs) - 1,
            )
        else:
            log.info("height started height=%d", height)
        self.proposals_held = {}
        # A proposal of this height that came during the last one's commit wait is stored
        # by `NewHeight` and comes out as `Replayed`: `_perform` logs it and holds it, or
        # our ROUND_STATE would say we lack it and every peer would send us its full
        # block (issue 22, wan23v).
        # The logged inputs and our last vote come from disk, their signatures unchecked:
        # the engine checks them, but none counts as verified for a commit (`_feed`).
        self._feed(start)
        for item in inputs[1:]:
            self._feed(item, checked=False)

    # -- inputs ----------------------------------------------------------------------------

    def _handle(self, item: DriverInput) -> None:
        if isinstance(item, SyncedBlocks):
            self._import_synced(item)
        elif isinstance(item, _NextHeight):
            if self._started_height != self.chain.height + 1:
                self._new_height()
        else:
            self._feed(item)

    def admit(self, vote: Vote, source: str | None = None) -> bool:
        """Queue a gossiped vote of the engine's height if the engine would keep it, and
        say so: only such a vote may be relayed (issue 17 #4). The engine's verdict counts
        the votes already queued, so a burst of votes is judged as the engine will see it.
        `source`: whom it came from, as the node counts sources (a peer's address group,
        which an attacker cannot mint as it can node keys), for the strangers' share of
        the next height while its set is unknown: free places go to whoever sends; once
        they are full, a source under its part (`_part`) takes them back from the one
        most over its own (`_take_place`).
        """
        if self._strangers_height != self.engine.height:
            self._strangers.clear()
            self._stranger_source.clear()
            self._sources_left.clear()
            self._strangers_height = self.engine.height
        stranger = source is not None and self.engine.buffers_as_stranger(vote)
        if stranger and source is not None:
            self._sources_left.discard(source)  # it sends: linked again
            if len(self._stranger_source) >= MAX_BUFFERED_STRANGER_VOTES and (
                vote in self._stranger_source or not self._take_place(source)
            ):
                return False  # the places are others' (forgotten: may come again)
        queued = self._queued_votes.get(vote.validator, [])
        if not self.engine.admits(vote, queued):
            return False
        if self._inbox.qsize() >= INBOX_LIMIT:
            self.submit(VoteReceived(vote))  # dropped, and the network told to forget it
            return False
        self._queued_votes.setdefault(vote.validator, []).append(vote)
        if stranger and source is not None and vote not in self._stranger_source:
            self._strangers.setdefault(source, []).append(vote)
            self._stranger_source[vote] = source
        self.submit(VoteReceived(vote))
        return True

    def source_left(self, source: str) -> None:
        """The last link of `source` (as `admit` names sources) is gone: the stranger votes
        it sent stay buffered, but its part of the share is nothing now, so they are the
        first to give way (one host cycling node keys, one link at a time: rev24p C)."""
        if source in self._strangers:
            self._sources_left.add(source)

    def _part(self, source: str, sources: int) -> int:
        """`source`'s part of the share among `sources` sources: PEER_STRANGER_VOTES, or
        an equal split of the share when more sources want places than it has parts (ten
        groups at their part must not shut out an eleventh: review rev24p2 2); nothing
        for a gone source."""
        if source in self._sources_left:
            return 0
        return min(PEER_STRANGER_VOTES, MAX_BUFFERED_STRANGER_VOTES // max(1, sources))

    def _take_place(self, source: str) -> bool:
        """The strangers' share is full and `source` sends one more: if it holds less than
        its part, the source most over its own part (a gone source's is nothing) gives
        back what it holds past it, its latest first, stepped by the engine already (a
        queued vote is not the engine's yet); whether a place is free now."""
        sources = len(self._strangers) + (source not in self._strangers)
        if len(self._strangers.get(source, ())) >= self._part(source, sources):
            return False
        over, most = None, 0
        for other, votes in self._strangers.items():
            excess = len(votes) - self._part(other, sources)
            if other != source and excess > most:
                over, most = other, excess
        if over is None:
            return False
        votes = self._strangers[over]
        part = self._part(over, sources)
        kept, given = votes[:part], []
        for vote in votes[part:]:
            if vote in self._queued_votes.get(vote.validator, ()):
                kept.append(vote)
            else:
                given.append(vote)
        if not given:
            return False
        for vote in given:
            self._unshare(vote)
        # Synchronous: the engine's verdict on the vote that takes the place counts it.
        self._feed(StrangersDropped(self.engine.height + 1, tuple(given)))
        return True

    def _unshare(self, vote: Vote) -> None:
        """`vote` holds no place of the strangers' share any more (given back, or the
        engine refused or let it go)."""
        source = self._stranger_source.pop(vote, None)
        if source is None:
            return
        votes = self._strangers[source]
        votes.remove(vote)
        if not votes:
            del self._strangers[source]
            self._sources_left.discard(source)

    def queued_votes(self) -> list[Vote]:
        """The votes `admit` queued that the engine has not stepped yet."""
        return [vote for votes in self._queued_votes.values() for vote in votes]

    def _unqueue(self, vote: Vote) -> None:
        queued = self._queued_votes.get(vote.validator)
        if queued is not None and vote in queued:
            queued.remove(vote)
            if not queued:
                del self._queued_votes[vote.validator]

    def _feed(self, first: Input, *, checked: bool = True) -> None:
        """Step the engine with `first` and with every input its outputs produce.

        `checked`: whether `first`, if a vote, had its signature checked (the network's
        before `admit`); the inputs its outputs produce are our own signed votes.
        A precommit counts as verified for a commit only if checked (`_note_precommit`).
        """
        queue: deque[tuple[Input, bool]] = deque([(first, checked)])
        while queue:
            item, verified = queue.popleft()
            if not self._worth_stepping(item):
                continue
            if verified and isinstance(item, VoteReceived) and item.vote.type == VoteType.PRECOMMIT:
                self._note_precommit(item.vote)
            if self.wal is not None:
                self.wal.record(item)  # proposals, votes and timeouts of this height, once
            for output in self.engine.step(item):
                follow_up = self._perform(output)
                if follow_up is not None:
                    queue.append((follow_up, True))  # signed here, or no vote at all
            if isinstance(item, ProposalReceived):
                self._note_proposal(item)

    def _worth_stepping(self, item: Input) -> bool:
        """Whether the engine would keep `item` (a vote or proposal of its height): only
        then is it logged and stepped. What it would refuse for now is handed back to
        the network (`on_refused`), to come again."""
        prejudged, self._prejudged = self._prejudged, None  # of the loop's next input only
        if isinstance(item, VoteReceived):
            self._unqueue(item.vote)
            vote = item.vote
            if vote.height == self.engine.height and not self.engine.admits(vote):
                # A copy, or a vote the engine would ignore: neither logged nor stepped.
                # One of a round beyond the validator's quota may come again later.
                if vote.round > self.engine.round:
                    self._on_refused(vote, b"")
                return False
        if isinstance(item, ProposalReceived):
            # Judged once, when queued into an idle loop or else now: the relay, the log
            # and the step (the engine takes `proposal_fate`'s answer) follow one verdict.
            if prejudged is not None and prejudged[0] is item:
                fate, relay = prejudged[1], prejudged[2]
            else:
                fate, relay = self._judge(item)
            answer = self._relay_asked.pop(id(item), None)
            if answer is not None and not answer.done():
                answer.set_result(relay)  # before the step: the relay waits for no check
            if fate is Fate.REFUSE:
                # A round beyond the next with no vote of it: junk, or real and early.
                # Handed back as the engine's `Refused` would be, to come again once we
                # get there; logged, one validator's re-proposals of every n-th round
                # grew the WAL by a block each without bound (rev23a 1).
                self._on_refused(item.proposal, item.block_bytes)
            if fate is not Fate.KEEP:
                # What the engine would drop (another signer, a copy, an equivocation,
                # decided) or refuse: neither logged nor stepped, its block (up to
                # max_block_bytes) kept out of the WAL (red23a 2, rev23a 1).
                return False
        return True

    def _judge(self, item: ProposalReceived) -> tuple[Fate, bool]:
        """The engine's fate for a proposal (whether to log and step it) and whether it
        may be relayed: one the engine keeps at its height (`Engine.proposal_fate`), or
        one of the next height it buffers and will keep (`Engine.keeps_next`); another
        height's is stepped (the engine buffers or refuses it) and not relayed."""
        p = item.proposal
        if p.height == self.engine.height:
            fate = self.engine.proposal_fate(p)
            return fate, fate is Fate.KEEP
        return Fate.KEEP, self.engine.keeps_next(p)

    def _note_precommit(self, vote: Vote) -> None:
        if not self.engine.height <= vote.height <= self.engine.height + 1:
            return  # not of a commit of ours nor of the next block's parent commit
        kept = self._precommits.setdefault(vote.height, set())
        while len(self._precommits) > PRECOMMIT_HEIGHTS_KEPT:
            del self._precommits[min(self._precommits)]
        if len(kept) < PRECOMMITS_KEPT:
            kept.add((vote.validator, vote.digest(self.chain.params.chain_id), vote.signature))

    def _verified_precommits(self, height: int) -> Set[tuple[bytes, bytes, bytes]]:
        return self._precommits.get(height, NOTHING_VERIFIED)

    def _note_proposal(self, item: ProposalReceived) -> None:
        """Keep a proposal the engine stored, for consensus gossip to peers lacking it."""
        p = item.proposal
        if p.height == self.engine.height and self.engine.proposal(p.round, p.block_hash):
            self.proposals_held.setdefault(p.signature, (p, item.block_bytes))

    def holds(self, message: Vote | Proposal) -> bool:
        """Whether the engine already holds this vote or proposal (a cheap duplicate test)."""
        return self.engine.holds(message)

    # -- outputs ---------------------------------------------------------------------------

    def _perform(self, output: Output) -> Input | None:
        if isinstance(output, Broadcast):
            self._broadcast(output)
            return None
        if isinstance(output, SignVote):
            return self._sign_vote(output)
        if isinstance(output, SignProposal):
            return self._sign_proposal(output)
        if isinstance(output, ScheduleTimeout):
            self._schedule(output)
            return None
        if isinstance(output, BuildProposal):
            return self._build(output)
        if isinstance(output, ValidateBlock):
            return self._validate(output)
        if isinstance(output, CommitBlock):
            self._commit(output)
            return None
        if isinstance(output, Refused):
            self._refused(output)
            return None
        if isinstance(output, Replayed):
            # Taken during the last height's commit wait, stepped by `NewHeight`: logged
            # now, before the outputs after it (a signature it led to) are performed.
            if self.wal is not None:
                self.wal.record(output.input)
            if isinstance(output.input, ProposalReceived):
                self._note_proposal(output.input)
            return None
        self._report(output)
        return None

    def _refused(self, output: Refused) -> None:
        """The engine refused or let go of a message: a vote holds no place of the
        strangers' share then, and the network lets the message come again."""
        if isinstance(output.message, Vote):
            self._unshare(output.message)
        self._on_refused(output.message, output.block_bytes)

    def _broadcast(self, output: Broadcast) -> None:
        if isinstance(output.message, Vote):
            self.gossip.broadcast_vote(pack(output.message.to_fields()))
        else:
            self.gossip.broadcast_proposal(encode_proposal(output.message, output.block_bytes))

    def _sign_vote(self, request: SignVote) -> Input | None:
        assert self.guard is not None
        if self.wal is not None:
            self.wal.flush()  # what led us here is durable before the signature exists
        try:
            vote = self.guard.sign_vote(request)
        except ConsensusError as exc:
            log.error(
                "signer refused vote height=%d round=%d: %s",
                request.height,
                request.round,
                exc.message,
            )
            return None
        log.info(
            "vote signed type=%s height=%d round=%d block=%s",
            request.vote_type.name.lower(),
            request.height,
            request.round,
            request.block_hash.hex()[:12] or "nil",
        )
        return VoteReceived(vote)

    def _sign_proposal(self, request: SignProposal) -> Input | None:
        assert self.guard is not None
        if self.wal is not None:
            self.wal.flush()
        try:
            proposal = self.guard.sign_proposal(request)
        except ConsensusError as exc:
            log.error("signer refused proposal height=%d: %s", request.height, exc.message)
            return None
        # Fed back, the engine emits Broadcast for it: only guarded messages go out.
        return ProposalReceived(proposal, request.block_bytes)

    def _schedule(self, request: ScheduleTimeout) -> None:
        loop = asyncio.get_running_loop()
        fired = TimeoutFired(request.height, request.round, request.step)
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(loop.call_later(request.delay_ms / 1000, self.submit, fired))

    def _build(self, request: BuildProposal) -> Input | None:
        if request.height != self.chain.height + 1:
            return None
        self._abort_pending()
        candidates = self.service.candidates()
        try:
            block, execution, rejected = self.chain.build_block(
                now_ms=_wall_clock_ms(),
                round_=request.round,
                last_commit=self.chain.get_commit(self.chain.height) if self.chain.height else None,
                candidates=candidates,
                reveal=vrf.make_reveal(
                    self._vrf_secret, self.chain.params.chain_id, request.height
                ),
                verified=self.service.admission.verified,
            )
        except BlockError as error:
            # The build undid its execution; the propose timeout moves the round on.
            log.error(
                "proposal not built height=%d: %s: %s", request.height, error.reason, error.message
            )
            return None
        if block.header.proposer != self.key.public_key:
            self.chain.abort(execution)
            log.error(
                "asked to propose height=%d round=%d out of turn", request.height, request.round
            )
            return None
        for tx, exc in rejected:
            if isinstance(exc, TxError):
                self.service.note_dropped(tx, exc)
        block_hash = block.hash()
        self._pending = (block_hash, block, execution)
        log.info(
            "proposal built height=%d round=%d txs=%d dropped=%d block=%s",
            request.height,
            request.round,
            len(block.txs),
            len(rejected),
            block_hash.hex()[:12],
        )
        return ProposeBlock(request.height, request.round, block_hash, block.encode())

    def _validate(self, request: ValidateBlock) -> Input:
        if self._pending is not None and self._pending[0] == request.block_hash:
            return BlockValidated(request.block_hash, True, True)
        # Validity is the chain's rule, the same on every honest node; timeliness is our
        # clock now, which the engine reads only for a fresh proposal (docs/consensus.md).
        now_ms = _wall_clock_ms()
        execution = self._execute(request.block_bytes, request.block_hash)
        valid = execution is not None
        timely = False
        if self._pending is not None and valid:
            try:
                ex.check_timely(self._pending[1].header, now_ms, self.chain.params)
                timely = True
            except BlockError as exc:
                log.warning(
                    "untimely proposal %s: %s: %s",
                    request.block_hash.hex()[:12],
                    exc.reason,
                    exc.message,
                )
        log.info(
            "proposal checked height=%d block=%s valid=%s timely=%s",
            request.height,
            request.block_hash.hex()[:12],
            valid,
            timely,
        )
        return BlockValidated(request.block_hash, valid, timely)

    def _execute(self, block_bytes: bytes, block_hash: bytes) -> ex.Execution | None:
        """Decode and execute a block on top of the head, its writes pending; None if it is
        invalid. No clock: whether a proposal was timely is judged apart (`_validate`)."""
        self._abort_pending()
        params = self.chain.params
        try:
            block = Block.decode(block_bytes, params.max_block_bytes, params.max_block_txs)
            if block.hash() != block_hash:
                return None
            noted = self._tx_ids.get(block_hash)
            # Only for the very bytes they were checked against: another body under the
            # same header is hashed and checked from scratch.
            tx_ids = noted[1] if noted is not None and noted[0] == block_bytes else None
            execution = self.chain.execute_proposal(
                block,
                self._checked_txs,
                verified=self._verified_precommits(block.height - 1),  # its parent commit
                tx_ids=tx_ids,
                on_verified=self.service.admission.note_verified,  # their copies: no 2nd check
            )
        except (BlockError, DecodeError) as exc:
            log.warning("invalid block %s: %s: %s", block_hash.hex()[:12], exc.reason, exc.message)
            return None
        self._pending = (block_hash, block, execution)
        return execution

    def _commit(self, decided: CommitBlock) -> None:
        fresh = self._pending is None or self._pending[0] != decided.block_hash
        if fresh and self._execute(decided.block_bytes, decided.block_hash) is None:
            log.error("decided block %s does not execute here", decided.block_hash.hex()[:12])
            return
        assert self._pending is not None
        _, block, execution = self._pending
        self._pending = None
        self.chain.commit_block(
            block, decided.commit, execution, self._verified_precommits(block.height)
        )
        # Keep the block interval (Tendermint's timeout_commit, without its late precommits:
        # the commit is the decided one; docs/consensus.md §3).
        # Scheduled before anything else can fail: the next height must always start.
        elapsed = time.monotonic() - self._height_started
        delay = max(0.0, self.chain.params.block_time_ms / 1000 - elapsed)
        asyncio.get_running_loop().call_later(delay, self.submit, _NEXT_HEIGHT)
        if self.engine.next_validators is None:
            # The block chose the next height's set: what the engine buffered of that
            # height is screened by it now, not at the replay (rev24 1).
            self._feed(NextSetKnown(block.height + 1, self.chain.validators()))
        self._after_commit(block, execution)

    def _after_commit(self, block: Block, execution: ex.Execution) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        try:
            self.service.on_committed(
                block, execution.events, execution.tx_ids, changed_accounts(execution.changes)
            )
            self._on_commit(block.height)
        except Exception:  # the block is committed; a listener's failure must not stop us
            log.exception("after-commit listener failed height=%d", block.height)

    def _report(self, output: ReportEvidence) -> None:
        evidence = output.evidence
        try:
            self.service.report_offence(self.key, Evidence(evidence.vote_a, evidence.vote_b))
        except TxError as exc:
            # Kept: offered again after each block until the chain records it (red23c).
            log.info("evidence not submitted: %s", exc.reason)
            return
        log.warning(
            "equivocation reported validator=%s height=%d",
            evidence.vote_a.validator.hex()[:12],
            evidence.vote_a.height,
        )

    # -- sync ------------------------------------------------------------------------------

    def _import_synced(self, synced: SyncedBlocks) -> None:
        done = synced.done
        try:
            outcome = import_in_order(
                self.chain,
                synced.blocks,
                self._abort_pending,
                self._after_commit,
                self._checked_txs,
            )
        except Exception as exc:  # the sync loop waits on `done`: it must always learn
            if done is not None and not done.done():
                done.set_exception(exc)
            raise
        if outcome.imported:
            log.info("synced blocks=%d height=%d", outcome.imported, self.chain.height)
            self._new_height()
        if done is not None and not done.done():
            done.set_result(outcome)

    def _abort_pending(self) -> None:
        if self._pending is not None:
            self.chain.abort(self._pending[2])
            self._pending = None
