"""Block sync at the node: fetch finalized blocks from peers, check them, import in order.

The decisions (which range to ask which peer, how to judge an answer, who rests) are
`p2p.sync.SyncSchedule`'s; this module is its edge. It sends the schedule's requests
through `Network.request_blocks`, checks every answer here before anything is executed,
hands contiguous blocks to the consensus driver (the only writer of the chain) and
punishes the peer the schedule names. The checks, cheapest first:

1. each pair decodes (block and commit);
2. the block has the height that was asked for its position;
3. its commit is for this block: the same height and the block's hash (MISMATCH);
4. the block's txs are the ones its header names (tx_root), so the header the commit
   signs covers the body that will be executed (MISMATCH);
5. at import, before execution: the commit's signatures, by the validator set of that
   height, carry more than 2/3 of its power (`Chain.import_block`, BAD_COMMIT).

With a `SyncChecker` (more than one core), the signatures of step 5 and of the header
(the VRF reveal, the parent commit) of every block held are verified on that process
while earlier blocks import, lowest heights first; import then finds them verified
(`crypto.Verified`) and verifies only the rest itself, with the same verdicts.

A block refused at import names the peer that served it; everything that peer holds is
dropped and asked of other peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from fluxchain.core import vrf
from fluxchain.core.block import Block
from fluxchain.core.crypto import NOTHING_VERIFIED, Verified
from fluxchain.core.encoding import unpack
from fluxchain.core.errors import BlockError, DecodeError, Reason, StoreError
from fluxchain.core.execute import Execution
from fluxchain.core.params import Params
from fluxchain.core.tx import Tx
from fluxchain.core.validators import MAX_VALIDATORS_HARD
from fluxchain.core.votes import Commit
from fluxchain.node.sync_checks import SyncChecker, Triple
from fluxchain.store.chain import NOTHING_CHECKED, Chain
from p2p.errors import P2PError, PeerReason
from p2p.network import PeerInfo
from p2p.sync import BlockRequest, Fault, Penalty, SyncSchedule

log = logging.getLogger("fluxchain.sync")

SYNC_INTERVAL_S: Final = 0.5  # the loop looks at its peers at least this often
REQUEST_TIMEOUT_S: Final = 10.0  # an answer later than this is a fault (and ignored)
# One batch imports in one turn of the driver, and the event loop waits for it (requests'
# timers included): about a second of work at most, so that an honest peer's answer is
# read before its request times out.
IMPORT_BATCH_BLOCKS: Final = 100
IMPORT_BATCH_TXS: Final = 20_000
# …and, measured, about this long: a batch is cut to the blocks the last one imported in
# that time. On a loaded machine the counts above took tens of seconds (load 36, 500-tx
# blocks): every request timed out behind it and the only honest peer was banned.
IMPORT_BATCH_S: Final = 0.5
# A commit's encoding: per validator a 33-byte key and a 64-byte signature with framing.
_COMMIT_BYTES_PER_SIGNER: Final = 33 + 64 + 8
# Refusals at import that prove the serving peer altered a finalized block. Any other
# refusal of a block whose commit verified means this node disagrees with the chain: the
# peer is not to blame, so it only rests while another is asked.
_PEER_FAULTS: Final = {
    Reason.BAD_COMMIT: Fault.BAD_COMMIT,
    Reason.BAD_TX_ROOT: Fault.INVALID_BLOCK,
    Reason.BAD_LAST_COMMIT: Fault.INVALID_BLOCK,
}


class SyncNetwork(Protocol):
    """What sync needs of `p2p.network.Network`."""

    def peers(self) -> list[PeerInfo]: ...

    async def request_blocks(
        self, peer_id: str, start_height: int, count: int, timeout: float = ...
    ) -> list[tuple[bytes, bytes]]: ...

    def punish(self, peer_id: str, points: float, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncedBlock:
    """A finalized block fetched by sync, with its commit and the peer that served it;
    `verified`: signatures of it already found valid by the sync checker."""

    peer_id: str
    block: Block
    commit: Commit
    verified: Verified = NOTHING_VERIFIED


@dataclass(frozen=True, slots=True)
class Refusal:
    """The block of a synced batch that was refused at import, and why."""

    peer_id: str
    height: int
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What became of a synced batch: how many were imported, and the refusal that
    stopped it, if one did."""

    imported: int
    refused: Refusal | None = None


SyncedPair = tuple[Block, Commit, bytes]  # block, its commit, the block's hash
Importer = Callable[[tuple[SyncedBlock, ...]], Awaitable[ImportOutcome]]


def max_pair_bytes(params: Params) -> int:
    """The largest (block, commit) pair a peer can serve on this chain."""
    return params.max_block_bytes + MAX_VALIDATORS_HARD * _COMMIT_BYTES_PER_SIGNER + 64


def check_answer(
    pairs: list[tuple[bytes, bytes]], start: int, params: Params
) -> tuple[tuple[SyncedPair, ...], tuple[Fault, str] | None]:
    """Decode and check the pairs of one BLOCKS answer to a request from `start`.

    Returns the pairs in order, or the first fault found (the answer is then refused as
    a whole: a peer that lies about one block is not trusted for the others).
    """
    out: list[SyncedPair] = []
    for index, (block_bytes, commit_bytes) in enumerate(pairs):
        height = start + index
        try:
            block = Block.decode(block_bytes, params.max_block_bytes, params.max_block_txs)
            commit = Commit.from_fields(unpack(commit_bytes))
        except DecodeError as exc:
            return (), (Fault.MALFORMED, f"height {height}: {exc.reason}: {exc.message}")
        if block.height != height:
            return (), (Fault.WRONG_HEIGHT, f"block {block.height} where {height} was asked")
        block_hash = block.hash()
        if commit.height != height or commit.block_hash != block_hash:
            return (), (Fault.MISMATCH, f"height {height}: the commit is for another block")
        mismatch = block.body_mismatch()
        if mismatch is not None:
            return (), (Fault.MISMATCH, f"height {height}: {mismatch}")
        if out and block.header.prev_hash != out[-1][2]:
            return (), (Fault.MISMATCH, f"height {height}: does not follow {height - 1}")
        out.append((block, commit, block_hash))
    return tuple(out), None


def header_triples(
    block: Block, commit: Commit, chain: Chain, parent_commit: Commit | None = None
) -> list[Triple]:
    """The signatures import will verify before executing `block`: its commit's, its
    parent commit's (unless it is `parent_commit`, the commit served with the block
    before, whose signatures are checked with that block) and its VRF reveal's (the
    proposer's key taken from the validator set of the moment: the set may change before
    the block's turn, and import then verifies the reveal itself)."""
    chain_id = chain.params.chain_id
    triples = commit.signed_triples(chain_id)
    if block.last_commit is not None and block.last_commit != parent_commit:
        triples += block.last_commit.signed_triples(chain_id)
    header = block.header
    vrf_key = chain.validators().vrf_key_of(header.proposer)
    if vrf_key is not None:
        triples.append((vrf_key, vrf.reveal_message(chain_id, header.height), header.reveal))
    return triples


def _import_batch(
    ready: list[tuple[str, SyncedPair]], max_blocks: int = IMPORT_BATCH_BLOCKS
) -> list[tuple[str, SyncedPair]]:
    """The first blocks of `ready` that make one import batch (at least one block, at
    most `max_blocks`)."""
    txs = 0
    for index, (_peer, (block, _commit, _hash)) in enumerate(ready[:max_blocks]):
        txs += len(block.txs)
        if txs > IMPORT_BATCH_TXS and index > 0:
            return ready[:index]
    return ready[:max_blocks]


def import_in_order(
    chain: Chain,
    blocks: tuple[SyncedBlock, ...],
    before_each: Callable[[], None] = lambda: None,
    after_each: Callable[[Block, Execution], None] = lambda block, execution: None,
    checked: Mapping[bytes, Tx] = NOTHING_CHECKED,
) -> ImportOutcome:
    """Import synced blocks that continue the chain; stop at the first refusal.

    Blocks at or below the head (consensus got there first) are skipped. Each block's
    commit is verified before it is executed (`Chain.import_block`); txs in `checked`
    (the node's admitted ones) are not checked again. A block's parent commit that is the
    commit just imported with its parent (as it usually is) is not verified twice: that
    commit's signatures all verified, by the same set, a moment ago.
    """
    imported = 0
    chain_id = chain.params.chain_id
    parent_commit: Commit | None = None  # the commit imported with the block before
    for index, synced in enumerate(blocks):
        block = synced.block
        if block.height <= chain.height:
            continue
        if block.height != chain.height + 1:
            break  # a gap: the schedule hands over contiguous blocks only
        before_each()
        upcoming = blocks[index + 1].block if index + 1 < len(blocks) else None
        verified = synced.verified
        if parent_commit is not None and block.last_commit == parent_commit:
            verified = verified | frozenset(parent_commit.signed_triples(chain_id))
        try:
            execution = chain.import_block(block, synced.commit, upcoming, checked, verified)
        except (BlockError, DecodeError) as exc:
            log.warning(
                "synced block refused height=%d peer=%s reason=%s: %s",
                block.height,
                synced.peer_id[:16],
                exc.reason,
                exc.message,
            )
            return ImportOutcome(
                imported, Refusal(synced.peer_id, block.height, exc.reason, exc.message)
            )
        after_each(block, execution)
        imported += 1
        parent_commit = synced.commit
    return ImportOutcome(imported)


class BlockSync:
    """The sync loop of one node: `run()` until cancelled.

    `importer` imports a batch in the chain's writer (the driver) and says how it went;
    `on_behind` is told how many heights the best peer in good standing claims ahead of
    us (a hint for the API's `syncing`); `checker` verifies held blocks' header
    signatures ahead of import (none: import verifies them all).
    """

    def __init__(
        self,
        chain: Chain,
        network: SyncNetwork,
        importer: Importer,
        *,
        schedule: SyncSchedule[SyncedPair] | None = None,
        request_timeout: float = REQUEST_TIMEOUT_S,
        interval: float = SYNC_INTERVAL_S,
        on_behind: Callable[[int], None] = lambda behind: None,
        checker: SyncChecker | None = None,
    ) -> None:
        self.chain = chain
        self.network = network
        self.importer = importer
        self.schedule: SyncSchedule[SyncedPair] = schedule or SyncSchedule(
            chain.height + 1, max_pair_bytes(chain.params)
        )
        self.request_timeout = request_timeout
        self.interval = interval
        self.on_behind = on_behind
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._importing = False
        self.checker = checker
        # By block hash: the height and the set the checker files the held block's valid
        # header signatures in (filled while it waits; dropped once the chain passes it).
        self._verified: dict[bytes, tuple[int, Verified]] = {}
        # Cut to IMPORT_BATCH_S of import, measured. The first batch is one block: a
        # first batch of 100 held a loaded loop past the honest peers' request timers.
        self._batch_blocks = 1

    async def run(self) -> None:
        """Fetch and import until cancelled; cancels its requests on the way out."""
        try:
            while True:
                try:
                    self.step()
                except Exception:  # a bug here must not end sync for good
                    log.exception("sync step failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def step(self) -> None:
        """Look at the peers, send what the schedule asks for, hand over what is ready."""
        schedule = self.schedule
        now = asyncio.get_running_loop().time()
        schedule.update_peers((p.peer_id, p.height, p.base) for p in self.network.peers())
        if not self._importing:
            schedule.advance(self.chain.height + 1)
        for request in schedule.next_requests(now):
            self._spawn(self._fetch(request), f"sync-fetch-{request.start}")
        if not self._importing:
            ready = _import_batch(schedule.ready(), self._batch_blocks)
            if ready:
                batch = tuple(
                    SyncedBlock(peer, blk, commit, self._verified_for(block_hash))
                    for peer, (blk, commit, block_hash) in ready
                )
                self._importing = True
                self._spawn(self._import(batch), f"sync-import-{batch[0].block.height}")
        self.on_behind(max(0, schedule.target(now) - self.chain.height))

    def _verified_for(self, block_hash: bytes) -> Verified:
        found = self._verified.get(block_hash)
        return NOTHING_VERIFIED if found is None else found[1]

    def _forget_checked(self) -> None:
        """Drop what concerns heights the chain has passed."""
        head = self.chain.height
        for block_hash in [h for h, (height, _) in self._verified.items() if height <= head]:
            del self._verified[block_hash]
        if self.checker is not None:
            self.checker.forget(head)

    def _queue_checks(self, items: tuple[SyncedPair, ...]) -> None:
        """Send the header signatures of newly held blocks to the checker."""
        checker = self.checker
        if checker is None or not checker.healthy:
            return
        parent_commit: Commit | None = None  # served with the block before, checked with it
        for block, commit, block_hash in items:
            if block.height > self.chain.height and block_hash not in self._verified:
                triples = header_triples(block, commit, self.chain, parent_commit)
                self._verified[block_hash] = (block.height, checker.submit(block.height, triples))
            parent_commit = commit

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, request: BlockRequest) -> None:
        try:
            penalty = await self._fetch_and_judge(request)
        except BaseException:
            self.schedule.on_lost(request)  # cancelled, or a bug: the range is asked again
            raise
        finally:
            self._wake.set()
        if penalty is not None:
            self._punish(penalty)

    async def _fetch_and_judge(self, request: BlockRequest) -> Penalty | None:
        schedule = self.schedule
        try:
            pairs = await self.network.request_blocks(
                request.peer_id, request.start, request.count, self.request_timeout
            )
        except P2PError as exc:
            now = asyncio.get_running_loop().time()
            if exc.reason is PeerReason.TIMEOUT:
                return schedule.on_timeout(request, now)
            if exc.reason is PeerReason.BAD_RESPONSE:
                return schedule.on_refused(request, now)
            schedule.on_lost(request)
            return None
        items, fault = check_answer(pairs, request.start, self.chain.params)
        size = sum(len(block) + len(commit) for block, commit in pairs)
        now = asyncio.get_running_loop().time()
        # A pruned peer's STATUS (its base) comes just ahead of its empty answer: judge
        # the answer by it.
        schedule.update_peers((p.peer_id, p.height, p.base) for p in self.network.peers())
        penalty = schedule.on_answer(request, items, size, now, fault)
        if fault is None and penalty is None:
            self._queue_checks(items)
        return penalty

    async def _import(self, batch: tuple[SyncedBlock, ...]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcome = await self.importer(batch)
        except StoreError:  # this node's storage, no peer's fault: the driver stops the node
            return
        except Exception:  # the importer's bug: log it, ask again next step
            log.exception("sync import failed")
            return
        finally:
            self._importing = False
            self._wake.set()
        if outcome.imported:
            per_block = (loop.time() - started) / outcome.imported
            self._batch_blocks = max(
                1, min(IMPORT_BATCH_BLOCKS, int(IMPORT_BATCH_S / max(per_block, 1e-6)))
            )
        refused = outcome.refused
        if refused is not None:
            fault = _PEER_FAULTS.get(refused.reason)
            if fault is None:
                log.error(
                    "a block with a valid commit does not import here height=%d reason=%s",
                    refused.height,
                    refused.reason,
                )
            now = asyncio.get_running_loop().time()
            penalty = self.schedule.on_import_failed(
                refused.peer_id,
                refused.height,
                fault or Fault.REFUSED,
                f"height {refused.height}: {refused.reason}: {refused.message}",
                now,
            )
            self._punish(penalty)
        self.schedule.advance(self.chain.height + 1)
        self._forget_checked()

    def _punish(self, penalty: Penalty) -> None:
        log.info(
            "sync fault peer=%s reason=%s points=%d detail=%r",
            penalty.peer_id[:16],
            penalty.fault.value,
            penalty.points,
            penalty.detail,
        )
        if penalty.points:
            self.network.punish(penalty.peer_id, penalty.points, penalty.fault.value)
