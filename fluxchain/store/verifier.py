"""Signature checks for block import, in worker processes beside execution.

libsecp256k1 runs outside the GIL, but a *thread* that verifies needs the GIL back after
every call, and the importing thread holds it while it executes the block: measured,
verifier threads running next to execution were slower than verifying first and executing
after. Worker processes have interpreters of their own.

The importer sends every worker the block's raw txs, first thing, and decodes and
executes the block meanwhile. The signatures are one shared queue of small chunks: each
worker takes the next chunk, checks it (`tx.signature_verdicts` reads just the fields a
signature needs) and writes one verdict byte per tx into shared memory, until none is
left. The importer joins in as soon as it has executed the block, with the txs it has
decoded. So the work splits itself by how fast each process turns out to be, whatever
the machine, the load or the block, and no core idles while signatures remain.

Workers are forked once, when the pool is made: make it before the process starts
threads or opens files it cares about (the node makes it first thing). A worker exits when
its pipe closes. If one dies, the block in flight is checked in this process and the pool
retires (`healthy`); the importer goes on without it. A worker that raises on a block
(which hostile input must never make it do: `signature_verdicts` refuses, not raises)
reports it and serves the next block; the importer redoes that block's verdicts.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Final

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import MAX_ARRAY, as_list, pack, unpack
from fluxchain.core.errors import BlockError, Reason
from fluxchain.core.tx import signature_verdicts

log = logging.getLogger("fluxchain.verifier")

# Below this many signatures a block is checked in process: a round trip to the workers
# costs about as much as a few verifications.
MIN_BATCH: Final = 16
# Signatures per claim: about 2 ms of work, so the last chunk delays the block little,
# while a claim (one semaphore round trip) costs a thousandth of that.
CHUNK: Final = 32
_DONE: Final = b"done"
_FAILED: Final = b"fail"  # the worker raised on this block: its verdicts are not to be trusted
_LOCK_TIMEOUT_S: Final = 5.0


class PendingSignatures:
    """The signatures of one block, out at the workers until `check` or `drain`."""

    def __init__(
        self, pool: VerifierPool, raws: Sequence[bytes], workers: list[Connection]
    ) -> None:
        self._pool = pool
        self._raws = raws
        self._workers = workers  # those that got the block, and owe an answer
        self._collected = False

    def join(self, check: Callable[[int, int], bytearray]) -> None:
        """Take chunks off the queue and check them here until the queue is empty:
        `check(start, end)` gives the verdicts of the txs submitted at [start, end)."""
        pool, verdicts = self._pool, self._pool.verdicts
        while (claim := pool.claim(len(self._raws))) is not None:
            start, end = claim
            verdicts[start:end] = check(start, end)
            pool.joined += end - start

    def check(self) -> None:
        """Wait for every verdict; raise BlockError(invalid_tx) naming the first bad tx."""
        bad = bytes(self._collect()[: len(self._raws)]).find(0)
        if bad >= 0:
            tx_id = sha256(self._raws[bad])
            raise BlockError(Reason.INVALID_TX, f"tx {tx_id.hex()[:16]}: bad_signature")

    def drain(self) -> None:
        """Let the workers finish and drop the verdicts (the block failed for another reason)."""
        self._pool.claim_all()
        self._collect()

    def _collect(self) -> memoryview:
        if not self._collected:
            self._collected = True
            if not self._pool.wait_idle(self._workers):
                # A worker died with chunks it may not have finished: check them all here.
                self._pool.verdicts[: len(self._raws)] = signature_verdicts(self._raws)
        return self._pool.verdicts


class VerifierPool:
    """Forked processes that verify batches of signatures, with the importer's help."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("fork")
        self._importer = os.getpid()  # the workers share this object's code, not its role
        self._lock = context.Lock()
        # Shared with the workers through the fork: the queue's next unclaimed index, and
        # a verdict byte per tx of the block in flight.
        self._next = context.RawValue("l", 0)
        self._shared = context.RawArray("B", MAX_ARRAY)
        self.verdicts = memoryview(self._shared).cast("B")
        self._conns: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._healthy = True
        # Signatures the importer checked itself while joining (bench/import.py reports
        # the split): the workers checked the rest of what was submitted.
        self.joined = 0
        for index in range(workers):
            ours, theirs = context.Pipe()
            # A worker gets copies of our ends of its pipe and of the pipes before it, and
            # closes them: when we go away, our ends must be gone for it to see EOF.
            process = context.Process(
                target=_serve,
                args=(theirs, [*self._conns, ours], self),
                name=f"verify-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._conns.append(ours)
            self._processes.append(process)

    def __len__(self) -> int:
        return len(self._conns)

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (for accounting their CPU time)."""
        return [process.pid for process in self._processes if process.pid is not None]

    @property
    def healthy(self) -> bool:
        """False once a worker has died: the importer then verifies in process."""
        return self._healthy and bool(self._conns)

    def submit(self, raws: Sequence[bytes]) -> PendingSignatures:
        """Queue the signatures of the txs encoded as `raws` (at most MAX_ARRAY); don't wait."""
        if len(raws) > MAX_ARRAY:
            raise ValueError(f"{len(raws)} txs is more than a block can hold")
        if not self._lock.acquire(timeout=_LOCK_TIMEOUT_S):
            self._retire("a verifier process died holding the queue's lock")
            return PendingSignatures(self, raws, [])
        self._next.value = 0
        self._lock.release()
        batch, sent = pack(list(raws)), []
        for conn in self._conns:
            try:
                conn.send_bytes(batch)
            except OSError:
                self._retire("a verifier process is gone")
            else:
                sent.append(conn)
        return PendingSignatures(self, raws, sent)

    def claim(self, count: int) -> tuple[int, int] | None:
        """The next chunk of the queue of `count` signatures, or None once it is empty."""
        # The lock is held for a few hundred nanoseconds per claim; a process killed in
        # there would leave it held, so a claim gives up after a while and the pool
        # retires: the importer then redoes the block's verdicts itself.
        if not self._lock.acquire(timeout=_LOCK_TIMEOUT_S):
            self._retire("the signature queue's lock is held by a process that does not run")
            return None
        try:
            start = self._next.value
            if start >= count:
                return None
            end = min(count, start + CHUNK)
            self._next.value = end
        finally:
            self._lock.release()
        return start, end

    def claim_all(self) -> None:
        """Empty the queue: the workers stop after the chunk they are on."""
        if self._lock.acquire(timeout=_LOCK_TIMEOUT_S):
            self._next.value = MAX_ARRAY
            self._lock.release()

    def wait_idle(self, workers: list[Connection]) -> bool:
        """Wait until `workers` are done with the block; False if their verdicts cannot be
        trusted: the pool lost a worker, or one failed on this block (it lives on)."""
        trusted = True
        for conn in workers:
            try:
                answer = conn.recv_bytes()
            except (EOFError, OSError):
                self._retire("a verifier process died")
                continue
            if answer == _FAILED:
                trusted = False
            elif answer != _DONE:
                self._retire("a verifier process answered out of turn")
        return trusted and self._healthy

    def _retire(self, why: str) -> None:
        if os.getpid() != self._importer:
            # A worker's claim timed out: it leaves the block, and the importer, waiting on
            # the same lock, retires the pool in its own process.
            log.warning("%s; verifier process %d stops on this block", why, os.getpid())
            return
        if self._healthy:
            log.error("%s; verifying signatures in the importing process from now on", why)
        self._healthy = False

    def close(self) -> None:
        """Stop the workers (each exits when its pipe closes)."""
        for conn in self._conns:
            conn.close()
        for process in self._processes:
            join_or_kill(process)
        self._conns, self._processes = [], []


def detach_worker_signals() -> None:
    """In a checking process forked from the node: the parent's asyncio loop may have
    pointed signal wakeups at its own pipe; Ctrl-C is the parent's to handle, and the
    parent (SIGTERM, or closing our pipe) is what stops us."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def join_or_kill(process: multiprocessing.process.BaseProcess, timeout: float = 5.0) -> None:
    """Wait for a checking process asked to stop; kill it if it has not within `timeout`."""
    process.join(timeout=timeout)
    if process.is_alive():
        process.kill()
        process.join()


def _serve(conn: Connection, inherited: list[Connection], pool: VerifierPool) -> None:
    """A worker: for each block that arrives, check chunks of it until none is left."""
    for other in inherited:
        other.close()
    detach_worker_signals()
    verdicts = pool.verdicts
    while True:
        try:
            batch = conn.recv_bytes()
        except EOFError:
            return
        try:
            # Our own packing on a private pipe: bounded by what arrived, nothing else.
            raws = as_list(unpack(batch, max_bytes=len(batch), max_array=len(batch)), "batch")
            while (claim := pool.claim(len(raws))) is not None:
                start, end = claim
                verdicts[start:end] = signature_verdicts(raws[start:end])
        except Exception:
            # `signature_verdicts` refuses what it cannot read rather than raising; should
            # a block still find a way, the worker says so and lives on for the next one
            # (a hostile block must not take the pool down), and the importer redoes this
            # block's verdicts itself.
            log.exception("verifier process %d failed on a block", os.getpid())
            pool.claim_all()
            conn.send_bytes(_FAILED)
            continue
        conn.send_bytes(_DONE)
