"""Block sync's header signatures, verified on a process of their own ahead of import.

Every synced block costs the importing process a BLS pairing for its VRF reveal (about
1.3 ms, more than twenty transfers' signatures) and a secp256k1 verification per signer
of its commit and of its parent commit, one after the other, before it executes the
block; the transfers' signatures already go to the verifier processes
(fluxchain/store/verifier.py). A local import has nothing to overlap them with, but sync
holds the next few hundred blocks as soon as they arrive: it sends each answer's header
signatures here, and by the time a block's turn comes its (key, message, signature)
triples are known valid (`crypto.Verified`), and import looks them up instead.

The verdicts only spare work, they never decide: a triple absent from the set (not
checked yet, found invalid, this process gone) is verified at import exactly as without
it, so a forged commit or reveal is refused there with the same reason as before. The
validator set a block will be judged by may change before its turn; the triples are
guesses from the set of the moment and only ever used when import asks for exactly them.

The process is forked when the node starts, before it opens files or starts threads (as
the verifier pool is), and only on a machine with more than one core: on one it would
only take turns with the importer. It exits when its pipe closes or the node ends it.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Final

from fluxchain.core import vrf
from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, Verified, verify
from fluxchain.core.encoding import as_list, pack, unpack
from fluxchain.core.errors import DecodeError
from fluxchain.store.verifier import detach_worker_signals, join_or_kill

log = logging.getLogger("fluxchain.sync")

Triple = tuple[bytes, bytes, bytes]  # key, message (digest), signature
_VRF_KEY_SIZE: Final = vrf.VRF_KEY_SIZE
# Blocks whose triples go to the process in one round trip: about 15 ms of its work, so
# the lowest heights' verdicts come back long before the window's blocks are all held.
CHECK_BATCH_BLOCKS: Final = 10


def triple_verdicts(triples: Sequence[object]) -> bytes:
    """One byte per item: 1 if it is a (key, message, signature) triple that verifies,
    secp256k1 for a 33-byte key, the VRF for a 48-byte key; 0 for anything else."""
    verdicts = bytearray(len(triples))
    for index, item in enumerate(triples):
        if type(item) is not list or len(item) != 3:
            continue
        key, message, signature = item
        if type(key) is not bytes or type(message) is not bytes or type(signature) is not bytes:
            continue
        if len(key) == PUBKEY_SIZE and len(message) == HASH_SIZE:
            verdicts[index] = verify(key, message, signature)
        elif len(key) == _VRF_KEY_SIZE:
            try:
                verdicts[index] = vrf.verify(key, message, signature)
            except DecodeError:
                continue
    return bytes(verdicts)


class SyncChecker:
    """A forked process that verifies (key, message, signature) triples for block sync,
    fed by a thread of the node's process.

    `submit` queues a block's triples and returns the set their valid ones will appear
    in; the thread sends the lowest heights first, a few blocks per round trip, and fills
    the sets as verdicts come back. It does so while the event loop imports (an import
    batch holds the loop for up to a second): the thread waits on the pipe outside the
    GIL and takes it only to pack a request and file the answer.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(theirs, ours), name="sync-checks", daemon=True
        )
        self._process.start()
        theirs.close()
        self._conn = ours
        self._cond = threading.Condition()
        # (height, order, triples, the set their verdicts go to): lowest height first.
        self._queue: list[tuple[int, int, list[Triple], set[Triple]]] = []
        self._order = 0
        self._in_flight = 0  # blocks sent, answer not filed yet
        self._thread: threading.Thread | None = None  # started at the first submit
        self._healthy = True

    @property
    def healthy(self) -> bool:
        return self._healthy

    def submit(self, height: int, triples: Sequence[Triple]) -> Verified:
        """Queue the header triples of the block of `height`; the set returned receives
        those that verify, as their verdicts come back (it stays empty if the process
        is gone: import then verifies them all)."""
        verified: set[Triple] = set()
        if not triples or not self._healthy:
            return verified
        with self._cond:
            if self._thread is None:
                # After every fork of the node (the verifier processes, this one): a
                # forked child gets no copy of a thread, nor of a lock one holds.
                self._thread = threading.Thread(target=self._feed, name="sync-checks", daemon=True)
                self._thread.start()
            heapq.heappush(self._queue, (height, self._order, list(triples), verified))
            self._order += 1
            self._cond.notify()
        return verified

    def forget(self, up_to_height: int) -> None:
        """Drop the queued blocks at or below `up_to_height` (imported already)."""
        with self._cond:
            kept = [item for item in self._queue if item[0] > up_to_height]
            if len(kept) != len(self._queue):
                heapq.heapify(kept)
                self._queue = kept

    def idle(self) -> bool:
        """Nothing queued and no answer awaited."""
        with self._cond:
            return not self._queue and not self._in_flight

    def _feed(self) -> None:
        while True:
            with self._cond:
                while not self._queue and self._healthy:
                    self._cond.wait()
                if not self._healthy:
                    return
                chosen = [
                    heapq.heappop(self._queue)
                    for _ in range(min(CHECK_BATCH_BLOCKS, len(self._queue)))
                ]
                self._in_flight = len(chosen)
            triples = [t for _, _, block_triples, _ in chosen for t in block_triples]
            try:
                self._conn.send_bytes(pack([list(triple) for triple in triples]))
                verdicts = self._conn.recv_bytes()
            except (OSError, EOFError, ValueError):
                verdicts = b""
            with self._cond:
                self._in_flight = 0
                if len(verdicts) != len(triples):
                    self._retire("the sync check process is gone or answered out of turn")
                    return
                index = 0
                for _, _, block_triples, verified in chosen:
                    for triple in block_triples:
                        if verdicts[index] == 1:
                            verified.add(triple)
                        index += 1

    def _retire(self, why: str) -> None:
        if self._healthy:
            log.warning("%s; synced blocks' headers are verified at import only", why)
        self._healthy = False
        self._queue.clear()

    def close(self) -> None:
        """End the process (the thread waiting on it sees EOF and ends) and the pipe."""
        with self._cond:
            self._healthy = False
            self._queue.clear()
            self._cond.notify()
        self._process.terminate()
        join_or_kill(self._process)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._conn.close()


def _serve(conn: Connection, parents_end: Connection) -> None:
    """The process: answer each batch of triples with one verdict byte per triple."""
    parents_end.close()  # so that the parent's death closes the pipe for us
    detach_worker_signals()
    while True:
        try:
            batch = conn.recv_bytes()
        except EOFError:
            return
        try:
            # Our own packing on a private pipe: bounded by what arrived, nothing else.
            triples = as_list(unpack(batch, max_bytes=len(batch), max_array=len(batch)), "batch")
            verdicts = triple_verdicts(triples)
        except Exception:  # a verdict of 0 only means "verify at import"
            log.exception("sync check process failed on a batch")
            verdicts = b""  # not one verdict per triple: the parent stops asking
        conn.send_bytes(verdicts)
