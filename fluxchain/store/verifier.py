"""Signature checks for block import, in worker processes beside execution.

libsecp256k1 runs outside the GIL, but a *thread* that verifies needs the GIL back after
every call, and the importing thread holds it while it executes the block: measured,
verifier threads running next to execution were slower than verifying first and executing
after. Worker processes have interpreters of their own. The importer sends each worker
its share of the block's raw txs as one msgpack array, first thing, then decodes and
executes the block meanwhile; a worker reads just the fields a signature check needs
(`tx.signature_verdicts`) and answers one verdict byte per tx.

Workers are forked once, when the pool is made: make it before the process starts
threads or opens files it cares about (the node makes it first thing). A worker only
reads its pipe, calls `tx.signature_verdicts` and answers; it exits when the pipe closes.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Final

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import as_list, pack, unpack
from fluxchain.core.errors import BlockError, Reason
from fluxchain.core.tx import signature_verdicts

# Below this many signatures a block is checked in process: a round trip to the workers
# costs about as much as a few verifications.
MIN_BATCH: Final = 16
# The importing process verifies the last (OWN_SHARE_PERCENT / workers) percent of a
# block itself once it has executed it, rather than wait idle for the workers: execution
# costs it about half a verification per tx. Measured best on 2 cores (bench.import: 30%
# against 0.8-0.9 of bare verify with no share, 0.95-1.05 with it); more workers, less.
OWN_SHARE_PERCENT: Final = 60


class PendingSignatures:
    """Signatures of one block out at the workers; `check` waits for the verdicts."""

    def __init__(self, raws: Sequence[bytes], shares: list[tuple[Connection, int]]) -> None:
        self._raws = raws
        self._shares = shares  # (worker, index of its first tx)

    def check(self) -> None:
        """Wait for every verdict; raise BlockError(invalid_tx) naming the first bad tx."""
        bad = self._collect()
        if bad is not None:
            tx_id = sha256(self._raws[bad])
            raise BlockError(Reason.INVALID_TX, f"tx {tx_id.hex()[:16]}: bad_signature")

    def drain(self) -> None:
        """Wait for every verdict and drop them (the block failed for another reason)."""
        self._collect()

    def _collect(self) -> int | None:
        first_bad: int | None = None
        for conn, start in self._shares:
            bad = conn.recv_bytes().find(0)
            if bad >= 0 and first_bad is None:
                first_bad = start + bad
        self._shares = []
        return first_bad


class VerifierPool:
    """Forked processes that verify batches of signatures."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("fork")
        self._conns: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for index in range(workers):
            ours, theirs = context.Pipe()
            # A worker gets copies of our ends of its pipe and of the pipes before it, and
            # closes them: when we go away, our ends must be gone for it to see EOF.
            process = context.Process(
                target=_serve,
                args=(theirs, [*self._conns, ours]),
                name=f"verify-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._conns.append(ours)
            self._processes.append(process)

    def __len__(self) -> int:
        return len(self._conns)

    def submit(self, raws: Sequence[bytes]) -> PendingSignatures:
        """Send the txs encoded as `raws` out, split evenly over the workers; don't wait."""
        count, workers = len(raws), len(self._conns)
        shares = []
        for index, conn in enumerate(self._conns):
            start, end = count * index // workers, count * (index + 1) // workers
            conn.send_bytes(pack(list(raws[start:end])))
            shares.append((conn, start))
        return PendingSignatures(raws, shares)

    def close(self) -> None:
        """Stop the workers (each exits when its pipe closes)."""
        for conn in self._conns:
            conn.close()
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        self._conns, self._processes = [], []


def _serve(conn: Connection, inherited: list[Connection]) -> None:
    """A worker: verify each batch that arrives, answer with its verdicts, until EOF."""
    for other in inherited:
        other.close()
    # The parent's asyncio loop may have pointed signal wakeups at its own pipe; Ctrl-C
    # is the parent's to handle, and the parent closing our pipe is what stops us.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            batch = conn.recv_bytes()
        except EOFError:
            return
        # Our own packing on a private pipe: bounded by what arrived, nothing else.
        raws = as_list(unpack(batch, max_bytes=len(batch), max_array=len(batch)), "batch")
        conn.send_bytes(signature_verdicts(raws))
