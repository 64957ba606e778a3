"""State sync: a new node takes the state at a trusted height from its peers' snapshots.

Instead of replaying every block from genesis, a node whose home is new and that was
given a trusted header (`TrustedHeader`: a height and that block's hash; today from the
operator, `fluxchain init --trust-height H --trust-hash X`, later from the light client)
fetches the snapshot of the state after block H in chunks, checks everything against
that header, writes it in one batch and block-syncs from H + 1 like any node.

What is checked, and the fault named when a peer fails it (`SnapshotFault`):

1. block H and its commit from any peer: the block's hash must be the trusted hash
   (WRONG_BLOCK); its header gives the state root and the validator-set hash;
2. the manifest (part 0) from a peer that offers a snapshot at H: its hash is the one
   offered (BAD_MANIFEST), it is for height H and the trusted state root (WRONG_ROOT),
   and its cut folds to that root (BAD_MANIFEST); an empty manifest answer (WITHHELD) or
   a timeout (UNRESPONSIVE) from a peer that offered it drops the peer from this sync;
3. each chunk, on arrival, against the manifest (BAD_CHUNK: malformed, or keys that do
   not build the cut's entries); an empty answer from a peer that offered the snapshot
   (WITHHELD) drops it from this sync; a timeout makes the chunk be asked of another
   peer, and a peer late TIMEOUTS_TOLERATED times in a row is UNRESPONSIVE;
4. once whole, the validator set that signed H, read from the verified state, must hash
   to the header's `validators_hash`, and H's commit must carry more than 2/3 of its
   power (BAD_COMMIT), because consensus at H + 1 needs that commit.

Every lie bans the peer at once (100 points, the stable reason as the ban's detail);
withholding and lateness cost fewer points (an honest peer may prune a snapshot or be
loaded), but a withholding peer is never asked again by this sync.

Snapshots are fetched in a random order, never ranked by how many peers offer them:
identities are free, so a count is the Sybils' to choose. Their manifests are then tried
fewest chunks still needed first, so that a valid manifest of 65,536 tiny chunks does not
keep the sync for hours. What the order costs is bounded further: every manifest whose
cut folds to the trusted root at one depth (with the same split nodes) has the very same
cut (the subtree hashes of one state), whatever its chunk boundaries, so the slots
verified are kept across peers, manifests and attempts, and a switch to another manifest
of that cut fetches only the slots missing. One cut only is kept (memory and disk):
Sybils each offering another cut leave one partial copy of the state, not one each. Idle
holders take the queued chunks of busy ones and ask again chunks long in flight, so a
holder answering just under the timeout does not hold the sync back.
Nothing of the state is written before all of it passed: an interrupted state sync
leaves the home's chain data as it was. What it verified is kept apart (`saved`: the
manifests of the cut in use and each verified chunk, under the store's `Y` prefix), so the next
start checks those again from disk and fetches only the chunks still missing; writing
the synced state removes them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from fluxchain.core.block import Block, Header
from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.errors import BlockError, DecodeError, Reason, StoreError
from fluxchain.core.history import validators_at
from fluxchain.core.params import Params
from fluxchain.core.records import META, VALIDATOR_HISTORY
from fluxchain.core.schema import new_state
from fluxchain.core.statetree import (
    ChunkRecords,
    CutAssembler,
    CutError,
    check_slots,
    restrict_chunk,
)
from fluxchain.core.votes import Commit
from fluxchain.store.db import ChainDB
from fluxchain.store.snapshots import Manifest, decode_chunk
from p2p.errors import P2PError
from p2p.messages import SnapshotOffer
from p2p.network import PeerInfo

log = logging.getLogger("fluxchain.statesync")

REQUEST_TIMEOUT_S: Final = 20.0  # one chunk of ~1 MiB, on a loaded peer
PEER_WAIT_S: Final = 1.0  # first wait before looking again for peers or offers (doubling)
PEER_WAIT_MAX_S: Final = 16.0
# Chunks asked of one peer at once: enough to hide a round trip behind the checking of
# the previous chunk, well under p2p's 8 requests in flight per peer.
PER_PEER: Final = 2
# Chunk requests to one peer are spaced by this much: 8 a second, under the 10 a second
# (burst 20) that peers allow (p2p/limits.py), whatever our own pace of checking.
REQUEST_SPACING_S: Final = 0.125


class SnapshotFault(StrEnum):
    """Why a peer's snapshot answer was refused; the value is the ban reason it gets."""

    WRONG_BLOCK = "statesync_wrong_block"  # not the trusted block, or a malformed one
    BAD_MANIFEST = "statesync_bad_manifest"  # not the offered hash, malformed, or a lying cut
    WRONG_ROOT = "statesync_wrong_root"  # a snapshot of another height or state root
    BAD_CHUNK = "statesync_bad_chunk"  # malformed, or keys that do not match the manifest
    BAD_COMMIT = "statesync_bad_commit"  # the trusted block's commit does not verify
    TIMEOUT = "statesync_timeout"  # no answer in time: the peer may be loaded
    WITHHELD = "statesync_withheld"  # offered a snapshot, then answered a chunk with nothing
    UNRESPONSIVE = "statesync_unresponsive"  # TIMEOUTS_TOLERATED late chunks in a row


POINTS: Final = {
    SnapshotFault.WRONG_BLOCK: 100,
    SnapshotFault.BAD_MANIFEST: 100,
    SnapshotFault.WRONG_ROOT: 100,
    SnapshotFault.BAD_CHUNK: 100,
    SnapshotFault.BAD_COMMIT: 100,
    SnapshotFault.TIMEOUT: 0,  # never punished (see `_punish`)
    # An honest peer answers nothing only if it pruned the snapshot since it offered it,
    # once per snapshot at most; a Sybil that does it is never asked again by this sync.
    SnapshotFault.WITHHELD: 20,
    # Lateness over several chunks: a loaded honest peer reaches it too, so it costs little
    # (points decay by one a minute) and the peer is only rested for the attempt.
    SnapshotFault.UNRESPONSIVE: 10,
}
# Late chunks from one peer, in a row, before its lateness is a fault (UNRESPONSIVE).
TIMEOUTS_TOLERATED: Final = 3


@dataclass(frozen=True, slots=True)
class TrustedHeader:
    """The header state sync starts from: a block height and that block's hash.

    The small interface between state sync and whoever vouches for the header: the
    operator's config today, the light client (fluxchain/light/) later."""

    height: int
    block_hash: bytes


class StateSyncNetwork(Protocol):
    """What state sync needs of `p2p.network.Network`."""

    def peers(self) -> list[PeerInfo]: ...

    async def request_blocks(
        self, peer_id: str, start_height: int, count: int, timeout: float = ...
    ) -> list[tuple[bytes, bytes]]: ...

    async def request_snapshots(
        self, peer_id: str, timeout: float = ...
    ) -> list[SnapshotOffer]: ...

    async def request_snapshot_part(
        self, peer_id: str, height: int, index: int, timeout: float = ...
    ) -> bytes: ...

    def punish(self, peer_id: str, points: float, reason: str) -> None: ...


class SyncProgressStore(Protocol):
    """Where a state sync keeps what it verified, to resume after a restart
    (`fluxchain.store.db.ChainDB`; emptied when the synced state is written)."""

    def save_sync_manifest(self, height: int, manifest_hash: bytes, data: bytes) -> None: ...

    def save_sync_chunk(
        self, height: int, manifest_hash: bytes, index: int, data: bytes
    ) -> None: ...

    def saved_sync_progress(self, height: int) -> list[tuple[bytes, list[tuple[int, bytes]]]]: ...

    def clear_sync_progress(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncedState:
    """A verified snapshot: everything a home needs to continue from block `header`."""

    block: Block
    commit: Commit
    chunks: list[list[tuple[bytes, bytes]]]  # the state's (key, value) pairs, by chunk
    tree_records: list[tuple[str, bytes, bytes | None]]  # as StateTree.records gives them
    signers: bytes  # the encoded validator set that signed the block (last_validators)

    @property
    def header(self) -> Header:
        return self.block.header

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the state."""
        for pairs in self.chunks:
            yield from pairs


class _HistoryBacking:
    """The records `validators_at` reads (the state's meta and validator history), from
    the verified chunks, as a State's backing."""

    def __init__(self, chunks: list[list[tuple[bytes, bytes]]]) -> None:
        self._records = {
            key: value
            for pairs in chunks
            for key, value in pairs
            if key.startswith((META, VALIDATOR_HISTORY))
        }

    def get(self, key: bytes) -> bytes | None:
        return self._records.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self._records if k.startswith(prefix)):
            yield key, self._records[key]


_Cut = tuple[int, tuple[tuple[int, int], ...]]  # (cut depth, split nodes)


class _CutProgress:
    """The verified part of the state at one cut (depth and splits): which slots are
    in, their pairs and tree records. Kept across peers, manifests and attempts (see the
    module docstring: every valid manifest of this depth and these splits has this cut)."""

    def __init__(self, assembler: CutAssembler) -> None:
        self.assembler = assembler
        self.have = bytearray(len(assembler.slots))  # 1 at each verified slot
        self.missing = len(assembler.slots)
        self.pairs: list[list[tuple[bytes, bytes]]] = []

    def needs(self, first: int, end: int) -> bool:
        """Whether any slot of [first, end) is still missing."""
        return self.have.find(0, first, end) != -1

    def chunks_needed(self, manifest: Manifest) -> list[int]:
        """The chunks of `manifest` (of this cut) that hold a missing slot."""
        return [i for i in range(manifest.chunks) if self.needs(*manifest.chunk_range(i))]

    def keep(
        self, first: int, end: int, checked: ChunkRecords, pairs: list[tuple[bytes, bytes]]
    ) -> None:
        """Take a chunk checked against this cut, for the slots of it still missing."""
        wanted = {slot: slot - first for slot in range(first, end) if not self.have[slot]}
        if not wanted:
            return
        if len(wanted) < end - first:
            checked = restrict_chunk(checked, self.assembler.slots[first:end], wanted)
            kept = {key for _, key in checked.paths}
            pairs = [(k, v) for k, v in pairs if k in kept]
        self.assembler.keep(checked)
        self.pairs.append(pairs)
        for slot in wanted:
            self.have[slot] = 1
        self.missing -= len(wanted)


class StateSync:
    """One state sync attempt loop: `run()` returns a verified state or keeps trying."""

    def __init__(
        self,
        network: StateSyncNetwork,
        params: Params,
        trust: TrustedHeader,
        *,
        timeout: float = REQUEST_TIMEOUT_S,
        rng: random.Random | None = None,
        checker: Executor | None = None,
        saved: SyncProgressStore | None = None,
    ) -> None:
        self._network = network
        self._params = params
        self._trust = trust
        self._timeout = timeout
        self._rng = rng if rng is not None else random.Random()
        # Where chunks are checked: other processes (each chunk hashes ~1 MiB of keys and
        # values), so that the node's cores work in parallel; None: in this process.
        self._checker = checker
        # Where verified chunks are kept so that a restart resumes (the node's ChainDB);
        # None: in memory only.
        self._saved = saved
        self._resumed = False
        self._excluded: set[str] = set()  # peers caught lying: never asked again
        self.faults: list[tuple[str, SnapshotFault, str]] = []  # (peer, fault, detail)
        # (cut depth, split nodes) -> what is verified of that cut: one cut at most (a
        # Sybil per cut must not make the sync hold a copy of the state per Sybil)
        self._progress: dict[_Cut, _CutProgress] = {}
        # The cut whose progress is on disk (`saved`); None: unknown, cleared before use.
        self._saved_cut: _Cut | None = None
        self._late: dict[str, int] = {}  # peer -> late chunks in a row

    def _punish(self, peer_id: str, fault: SnapshotFault, detail: str) -> None:
        log.warning("state sync: peer=%s fault=%s %s", peer_id[:16], fault.value, detail)
        self.faults.append((peer_id, fault, detail))
        if fault is SnapshotFault.TIMEOUT:
            # A late chunk is what a loaded honest peer sends too: no points (a few of them
            # would ban it, and its snapshot with it); the chunk is asked elsewhere.
            return
        self._excluded.add(peer_id)
        self._network.punish(peer_id, POINTS[fault], fault.value)

    def _peers(self) -> list[str]:
        return [p.peer_id for p in self._network.peers() if p.peer_id not in self._excluded]

    async def run(self) -> SyncedState:
        """Try until a snapshot at the trusted height verifies; return it."""
        attempts = 0
        while True:
            synced = await self.attempt()
            if synced is not None:
                return synced
            if attempts % 20 == 0:  # every ten seconds or so
                log.info(
                    "state sync: no snapshot of height %d completed yet (%d peers)",
                    self._trust.height,
                    len(self._peers()),
                )
            attempts += 1
            # Each attempt asks every peer for its snapshot list, which peers allow once a
            # second: wait longer than that, and longer still while nothing completes.
            await asyncio.sleep(min(PEER_WAIT_S * 2 ** min(attempts, 8), PEER_WAIT_MAX_S))

    async def attempt(self) -> SyncedState | None:
        """One pass over the connected peers; None if no snapshot could be completed."""
        peers = self._peers()
        if not peers:
            return None
        candidates = await self._trusted_block(peers)
        if not candidates:
            return None
        block = candidates[0][1]
        if self._saved is not None and not self._resumed:
            self._resumed = True
            await self._resume(block.header)
        offers = list((await self._offers(peers)).items())
        # A random order, not the most offered first: Sybils would be the most offered.
        self._rng.shuffle(offers)
        # Every manifest is fetched and checked first, then tried fewest chunks still
        # needed first (ties in that random order): a Sybil offering the true state in
        # 65,536 tiny chunks comes after the honest few dozen, and one offering fewer
        # chunks than the honest snapshot must serve the whole state in chunks of at most
        # a frame each. Only the best manifest is held meanwhile (one may be ~2 MiB);
        # the others are fetched again if their turn comes.
        ranked, best = await self._ranked(offers, block.header)
        for manifest_hash, holders in ranked:
            holders[:] = [p for p in holders if p not in self._excluded]
            if best is not None and best.hash() == manifest_hash:
                manifest, best = best, None
            else:
                refetched = await self._manifest(manifest_hash, holders, block.header)
                if refetched is None:
                    continue
                manifest = refetched
            progress = self._progress_of(manifest)
            if self._saved is not None and progress.missing:
                cut = _cut_of(manifest)
                if self._saved_cut != cut:
                    self._saved.clear_sync_progress()  # another cut's, or another height's
                    self._saved_cut = cut
                self._saved.save_sync_manifest(manifest.height, manifest_hash, manifest.encode())
            # (Whole already if an earlier attempt's commits all failed.)
            if progress.missing and (
                not holders  # all excluded since
                or not await self._chunks(manifest, manifest_hash, holders, progress)
            ):
                continue
            # None: every commit served was bad; start over (their peers are banned)
            return self._finish(candidates, progress)
        return None

    async def _ranked(
        self, offers: list[tuple[bytes, list[str]]], header: Header
    ) -> tuple[list[tuple[bytes, list[str]]], Manifest | None]:
        """The offers whose manifest verifies, fewest chunks still needed first (ties in
        the order given), each with the holders left; and the first one's manifest."""
        ranked: list[tuple[int, int, bytes, list[str]]] = []
        best: tuple[tuple[int, int], Manifest] | None = None
        for order, (manifest_hash, offered_by) in enumerate(offers):
            holders = [p for p in offered_by if p not in self._excluded]
            manifest = await self._manifest(manifest_hash, holders, header)
            if manifest is None:
                continue
            rank = (self._chunks_needed(manifest), order)
            ranked.append((*rank, manifest_hash, holders))
            if best is None or rank < best[0]:
                best = (rank, manifest)
        ranked.sort()
        return (
            [(manifest_hash, holders) for _, _, manifest_hash, holders in ranked],
            None if best is None else best[1],
        )

    async def _trusted_block(self, peers: list[str]) -> list[tuple[str, Block, Commit]]:
        """Block H with a commit naming it, from each peer that serves the trusted one.

        A peer serving another block at H is banned only if another peer served the
        trusted one: otherwise the trusted hash itself may be wrong (an operator's typo),
        and honest peers must not pay for it."""
        height = self._trust.height

        async def ask(peer_id: str) -> list[tuple[bytes, bytes]]:
            try:
                return await self._network.request_blocks(peer_id, height, 1, self._timeout)
            except P2PError:
                return []

        answers = await asyncio.gather(*(ask(p) for p in peers))
        found: list[tuple[str, Block, Commit]] = []
        others: list[str] = []
        for peer_id, pairs in zip(peers, answers, strict=True):
            if not pairs:
                continue
            block_bytes, commit_bytes = pairs[0]
            try:
                block = Block.decode(
                    block_bytes, self._params.max_block_bytes, self._params.max_block_txs
                )
                commit = Commit.from_fields(unpack(commit_bytes))
            except DecodeError as exc:
                self._punish(peer_id, SnapshotFault.WRONG_BLOCK, f"{exc.reason}: {exc.message}")
                continue
            if block.hash() != self._trust.block_hash or block.height != height:
                others.append(peer_id)
            elif (mismatch := block.body_mismatch()) is not None:
                # The trusted header with another body: only a liar serves that (the header
                # alone is hashed), and a forged block H would be stored and served on.
                self._punish(peer_id, SnapshotFault.WRONG_BLOCK, mismatch)
            elif commit.height != height or commit.block_hash != self._trust.block_hash:
                self._punish(peer_id, SnapshotFault.BAD_COMMIT, "the commit is for another block")
            else:
                found.append((peer_id, block, commit))
        if not found:
            if others:
                log.error(
                    "state sync: %d peers serve another block at height %d than the trusted "
                    "hash; check trust_hash in config.toml",
                    len(others),
                    height,
                )
            return []
        for other in others:
            self._punish(other, SnapshotFault.WRONG_BLOCK, f"block {height} is not trusted")
        return found

    async def _offers(self, peers: list[str]) -> dict[bytes, list[str]]:
        """Manifest hash -> the peers that offer a snapshot of it at the trusted height."""

        async def ask(peer_id: str) -> list[SnapshotOffer]:
            try:
                return await self._network.request_snapshots(peer_id, self._timeout)
            except P2PError:
                return []

        answers = await asyncio.gather(*(ask(p) for p in peers))
        offers: dict[bytes, list[str]] = {}
        for peer_id, listed in zip(peers, answers, strict=True):
            # A node takes one snapshot of a height: only its first offer at the trusted
            # height counts (a Sybil listing 8 would cost 8 manifest requests).
            for offer in listed:
                if offer.height == self._trust.height:
                    offers.setdefault(offer.manifest_hash, []).append(peer_id)
                    break
        return offers

    async def _manifest(
        self, manifest_hash: bytes, holders: list[str], header: Header
    ) -> Manifest | None:
        for peer_id in list(holders):
            try:
                data = await self._network.request_snapshot_part(
                    peer_id, header.height, 0, self._timeout
                )
            except P2PError as exc:
                holders.remove(peer_id)
                if exc.reason == "timeout":
                    # It offered this snapshot: a manifest it lets time out is a free
                    # stall per offer, so it is asked nothing more by this sync.
                    self._punish(peer_id, SnapshotFault.UNRESPONSIVE, "manifest not served")
                continue
            if not data:
                # An honest peer that pruned the snapshot since it offered it (once), or a
                # Sybil stalling the sync: either way it is asked nothing more.
                holders.remove(peer_id)
                self._punish(peer_id, SnapshotFault.WITHHELD, "manifest")
                continue
            fault = _manifest_fault(data, manifest_hash, header)
            if isinstance(fault, Manifest):
                return fault
            holders.remove(peer_id)
            self._punish(peer_id, *fault)
        return None

    async def _chunks(
        self,
        manifest: Manifest,
        manifest_hash: bytes,
        holders: list[str],
        progress: _CutProgress,
    ) -> bool:
        """The chunks of `manifest` that hold prefixes `progress` still lacks, checked as
        they come, from the peers in `holders` (those that fail are dropped); whether the
        cut is now whole."""
        # `holders` is not empty: the peer that served the manifest is in it.
        # Chunks are dealt round robin over the holders; one a peer fails goes to the next
        # holder in that order, so every holder is asked in turn (a withholder is found
        # whichever it is) and no race decides who is asked. A holder whose queue is
        # empty takes the last queued chunk of the busiest other holder, then asks again
        # (once) the chunk in flight longest at another: a holder answering just under
        # the timeout keeps only the chunks it is answering, and the sync never waits
        # for them while another holder is idle.
        dealer = _Dealer(holders, progress.chunks_needed(manifest))
        done = asyncio.Event()
        started = time.monotonic()
        next_request = dict.fromkeys(holders, started)

        failed: list[Exception] = []

        async def worker(peer_id: str) -> None:
            while progress.missing and peer_id in holders:
                index = dealer.take(peer_id)
                if index is None:
                    await asyncio.sleep(0.05)  # another holder may hand a failed chunk on
                    continue
                if not progress.needs(*manifest.chunk_range(index)):
                    continue  # came in with another manifest's chunk meanwhile
                await _paced(next_request, peer_id)
                dealer.asking(index, peer_id)
                fetched = await self._chunk(peer_id, manifest, manifest_hash, index, progress)
                dealer.answered(index, peer_id)
                if fetched:
                    if not progress.missing:
                        done.set()
                    continue
                dealer.drop(peer_id, index)
            if not holders:
                done.set()

        workers = [
            asyncio.create_task(_ending_on_error(worker(peer_id), failed, done))
            for peer_id in list(holders)
            for _ in range(PER_PEER)
        ]
        try:
            await done.wait()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        _raise_first(failed)
        if progress.missing:
            return False
        log.info(
            "state sync: cut of height %d whole (last manifest: %d chunks) in %.1f s",
            manifest.height,
            manifest.chunks,
            time.monotonic() - started,
        )
        return True

    async def _chunk(
        self,
        peer_id: str,
        manifest: Manifest,
        manifest_hash: bytes,
        index: int,
        progress: _CutProgress,
    ) -> bool:
        """Fetch and check chunk `index` (part index + 1) from one peer."""
        try:
            data = await self._network.request_snapshot_part(
                peer_id, manifest.height, index + 1, self._timeout
            )
        except P2PError as exc:
            if exc.reason == "timeout":
                self._punish(peer_id, SnapshotFault.TIMEOUT, f"chunk {index}")
                late = self._late[peer_id] = self._late.get(peer_id, 0) + 1
                if late >= TIMEOUTS_TOLERATED:
                    self._late[peer_id] = 0
                    self._punish(peer_id, SnapshotFault.UNRESPONSIVE, f"{late} late chunks")
            return False
        self._late.pop(peer_id, None)
        if not data:
            # It offered this snapshot: a peer that pruned it since (once) or a Sybil that
            # serves all but one chunk to waste our attempts; either way, never ask again.
            self._punish(peer_id, SnapshotFault.WITHHELD, f"chunk {index}")
            return False
        try:
            await self._check_and_keep(manifest, index, data, progress)
        except (DecodeError, CutError) as exc:
            self._punish(peer_id, SnapshotFault.BAD_CHUNK, f"chunk {index}: {exc.message}")
            return False
        if self._saved is not None:
            self._saved.save_sync_chunk(manifest.height, manifest_hash, index, data)
        return True

    async def _check_and_keep(
        self, manifest: Manifest, index: int, data: bytes, progress: _CutProgress
    ) -> None:
        """Check chunk `index` of `manifest` against its cut and keep what it adds;
        DecodeError or CutError if it does not verify."""
        first, end = manifest.chunk_range(index)
        pairs = decode_chunk(data)
        slots = progress.assembler.slots[first:end]
        if self._checker is None:
            checked = check_slots(slots, first, pairs)
        else:
            checked = await asyncio.get_running_loop().run_in_executor(
                self._checker, check_slots, slots, first, pairs
            )
        progress.keep(first, end, checked, pairs)

    async def _resume(self, header: Header) -> None:
        """Take back what an interrupted sync of this height verified and kept on disk:
        each kept manifest is checked against the header again, each kept chunk against
        it (a damaged record is only skipped: its chunk is fetched again)."""
        assert self._saved is not None
        resumed = 0
        cuts: set[_Cut] = set()
        for data, chunks in self._saved.saved_sync_progress(header.height):
            manifest = _manifest_fault(data, sha256(data), header)
            if not isinstance(manifest, Manifest):
                log.warning("state sync: a kept manifest does not verify: %s", manifest[1])
                continue
            progress = self._progress_of(manifest)
            cuts.add(_cut_of(manifest))
            for index, chunk in chunks:
                if not 0 <= index < manifest.chunks:
                    continue
                if not progress.needs(*manifest.chunk_range(index)):
                    continue
                try:
                    await self._check_and_keep(manifest, index, chunk, progress)
                except (DecodeError, CutError) as exc:
                    log.warning("state sync: kept chunk %d does not verify: %s", index, exc)
                    continue
                resumed += 1
        # Memory keeps the last cut read; if the disk held several, it is cleared before
        # the next save so that it holds one cut again.
        self._saved_cut = cuts.pop() if len(cuts) == 1 else None
        if resumed:
            log.info("state sync: resumed with %d chunks kept from before", resumed)

    def _progress_of(self, manifest: Manifest) -> _CutProgress:
        """The verified part of `manifest`'s cut, new if none is kept. The progress of any
        other cut is dropped: each Sybil may offer the true state under its own cut and
        withhold its last chunk, and a copy of the state kept per cut would be a copy
        per Sybil."""
        cut = _cut_of(manifest)
        progress = self._progress.get(cut)
        if progress is None:
            assembler = CutAssembler(
                manifest.state_root, manifest.depth, manifest.entries, manifest.splits
            )
            self._progress.clear()
            progress = self._progress[cut] = _CutProgress(assembler)
        return progress

    def _chunks_needed(self, manifest: Manifest) -> int:
        """How many chunks of `manifest` hold a slot not verified yet."""
        progress = self._progress.get(_cut_of(manifest))
        return manifest.chunks if progress is None else len(progress.chunks_needed(manifest))

    def _finish(
        self, candidates: list[tuple[str, Block, Commit]], progress: _CutProgress
    ) -> SyncedState | None:
        """The synced state with the first commit of block H that verifies against the set
        the verified state says signed H; None (and its servers banned) if none does."""
        block = candidates[0][1]
        chunks, assembler = progress.pairs, progress.assembler
        state = new_state(_HistoryBacking(chunks))
        signers = validators_at(state, block.height)
        if signers is None or signers.hash() != block.header.validators_hash:
            # The state matched the trusted root, so the chain itself disagrees with its
            # header: no peer is to blame, and nothing is written.
            raise StoreError(
                Reason.STORE_MISMATCH, f"the state at {block.height} lacks the set that signed it"
            )
        for peer_id, _, commit in candidates:
            try:
                commit.verify(self._params.chain_id, signers, block.height, block.hash())
            except BlockError as exc:
                self._punish(peer_id, SnapshotFault.BAD_COMMIT, exc.message)
                continue
            signed_by = pack(signers.to_fields())
            self._progress.clear()  # a later attempt starts afresh
            return SyncedState(block, commit, chunks, assembler.records(), signed_by)
        return None


def _cut_of(manifest: Manifest) -> _Cut:
    """Which cut a manifest has: all valid manifests of one depth and splits share it."""
    return manifest.depth, tuple((at, prefix) for at, prefix, _ in manifest.splits)


def _manifest_fault(
    data: bytes, manifest_hash: bytes, header: Header
) -> Manifest | tuple[SnapshotFault, str]:
    """The manifest in `data` if it checks out against the offer and the header."""
    if sha256(data) != manifest_hash:
        return SnapshotFault.BAD_MANIFEST, "not the manifest it offered"
    try:
        manifest = Manifest.decode(data)
    except DecodeError as exc:
        return SnapshotFault.BAD_MANIFEST, f"{exc.reason}: {exc.message}"
    if manifest.height != header.height or manifest.state_root != header.state_root:
        return SnapshotFault.WRONG_ROOT, f"a snapshot of height {manifest.height}, another root"
    try:
        CutAssembler(manifest.state_root, manifest.depth, manifest.entries, manifest.splits)
    except CutError as exc:
        return SnapshotFault.BAD_MANIFEST, exc.message
    return manifest


def write_synced_state(db: ChainDB, synced: SyncedState) -> None:
    """Store a verified state and its block as the home's chain data, atomically."""
    db.write_synced_state(
        height=synced.header.height,
        block_hash=synced.block.hash(),
        block_bytes=synced.block.encode(),
        commit_bytes=pack(synced.commit.to_fields()),
        state_items=synced.items(),
        tree_records=synced.tree_records,
        last_validators=synced.signers,
    )


class _Dealer:
    """Which holder fetches which chunk of one manifest (see `StateSync._chunks`).

    `holders` is the sync's own list: a holder `drop`ped leaves it, and its queued
    chunks go to the next holders in the first order."""

    def __init__(self, holders: list[str], needed: Iterable[int]) -> None:
        self.holders = holders
        self.order = list(holders)
        self.queues: dict[str, deque[int]] = {peer_id: deque() for peer_id in self.order}
        _deal(self.queues, self.order, needed)
        self.in_flight: dict[int, tuple[float, str]] = {}  # chunk -> (asked at, first asked)
        self.asked_twice: set[int] = set()

    def take(self, peer_id: str) -> int | None:
        """The next chunk for `peer_id`: its own, else the last queued of the busiest
        other holder, else (once each) the chunk in flight longest at another holder;
        None if there is none."""
        queues = self.queues
        if queues[peer_id]:
            return queues[peer_id].popleft()
        busiest = max(
            (p for p in self.holders if p != peer_id and queues[p]),
            key=lambda p: len(queues[p]),
            default=None,
        )
        if busiest is not None:
            return queues[busiest].pop()
        late = min(
            (
                (at, index)
                for index, (at, asked) in self.in_flight.items()
                if asked != peer_id and index not in self.asked_twice
            ),
            default=None,
        )
        if late is None:
            return None
        self.asked_twice.add(late[1])
        return late[1]

    def asking(self, index: int, peer_id: str) -> None:
        self.in_flight.setdefault(index, (time.monotonic(), peer_id))

    def answered(self, index: int, peer_id: str) -> None:
        if self.in_flight.get(index, (0.0, ""))[1] == peer_id:
            del self.in_flight[index]

    def drop(self, peer_id: str, index: int) -> None:
        """`peer_id` failed chunk `index`: it leaves, its chunks go to the next holders."""
        if peer_id in self.holders:
            self.holders.remove(peer_id)
        at = self.order.index(peer_id)
        after = [p for p in self.order[at + 1 :] + self.order[:at] if p in self.holders]
        _deal(self.queues, after, [index, *self.queues[peer_id]])
        self.queues[peer_id].clear()


def _deal(queues: dict[str, deque[int]], peers: list[str], indexes: Iterable[int]) -> None:
    """Give `indexes` to `peers` in turn (none if there is no peer left)."""
    for n, index in enumerate(indexes):
        if peers:
            queues[peers[n % len(peers)]].append(index)


async def _paced(next_request: dict[str, float], peer_id: str) -> None:
    """Wait until `peer_id` may be asked again (REQUEST_SPACING_S after the last ask)."""
    now = time.monotonic()
    wait, next_request[peer_id] = (
        next_request[peer_id] - now,
        max(now, next_request[peer_id]) + REQUEST_SPACING_S,
    )
    if wait > 0:
        await asyncio.sleep(wait)


async def _ending_on_error(
    work: Coroutine[Any, Any, None], failed: list[Exception], done: asyncio.Event
) -> None:
    """Run a chunk worker; if it breaks (the checker's pool lost a process), record why and
    end the sync, which would otherwise wait forever on the chunk it held."""
    try:
        await work
    except Exception as exc:
        failed.append(exc)
        done.set()


def _raise_first(failed: list[Exception]) -> None:
    if failed:
        raise RuntimeError(f"state sync: checking a chunk failed: {failed[0]!r}") from failed[0]
