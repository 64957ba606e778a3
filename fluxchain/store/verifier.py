"""Signature checks for block import, in worker processes beside execution.

libsecp256k1 runs outside the GIL, but a *thread* that verifies needs the GIL back after
every call, and the importing thread holds it while it executes the block: measured,
verifier threads running next to execution were slower than verifying first and executing
after. Worker processes have interpreters of their own. The importer packs each tx's
(digest, signature, public key) into one byte string per worker, sends it, executes the
block meanwhile, and then reads one verdict byte per signature back.

Workers are forked once, when the pool is made: make it before the process starts
threads or opens files it cares about (the node makes it first thing). A worker only
reads its pipe, calls `crypto.verify_records` and answers; it exits when the pipe closes.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Final

from fluxchain.core.crypto import SIGNED_RECORD_SIZE, signed_record, verify_records
from fluxchain.core.errors import BlockError, Reason
from fluxchain.core.tx import Tx

# Below this many signatures a block is checked in process: a round trip to the workers
# costs about as much as a few verifications.
MIN_BATCH: Final = 16


class PendingSignatures:
    """Signatures of one block out at the workers; `check` waits for the verdicts."""

    def __init__(self, txs: Sequence[Tx], shares: list[tuple[Connection, int, int]]) -> None:
        self._txs = txs
        self._shares = shares  # (worker, first tx index, end index)

    def check(self) -> None:
        """Wait for every verdict; raise BlockError(invalid_tx) naming the first bad tx."""
        first_bad: int | None = None
        for conn, start, _ in self._shares:
            verdicts = conn.recv_bytes()
            bad = verdicts.find(0)
            if bad >= 0 and first_bad is None:
                first_bad = start + bad
        self._shares = []
        if first_bad is not None:
            raise BlockError(
                Reason.INVALID_TX, f"tx {self._txs[first_bad].id.hex()[:16]}: bad_signature"
            )


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

    def submit(self, txs: Sequence[Tx]) -> PendingSignatures:
        """Send the signatures of `txs` out, split evenly over the workers; don't wait."""
        count = len(txs)
        shares = []
        for index, conn in enumerate(self._conns):
            start, end = count * index // len(self._conns), count * (index + 1) // len(self._conns)
            records = b"".join(
                [
                    signed_record(tx.signing_digest(), tx.signature, tx.sender)
                    for tx in txs[start:end]
                ]
            )
            conn.send_bytes(records)
            shares.append((conn, start, end))
        return PendingSignatures(txs, shares)

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
            records = conn.recv_bytes()
        except EOFError:
            return
        assert len(records) % SIGNED_RECORD_SIZE == 0
        conn.send_bytes(verify_records(records))
