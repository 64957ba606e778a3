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

import asyncio
import logging
import multiprocessing
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Final

from fluxchain.core import vrf
from fluxchain.core.crypto import HASH_SIZE, NOTHING_VERIFIED, PUBKEY_SIZE, Verified, verify
from fluxchain.core.encoding import as_list, pack, unpack
from fluxchain.core.errors import DecodeError

log = logging.getLogger("fluxchain.sync")

Triple = tuple[bytes, bytes, bytes]  # key, message (digest), signature
_VRF_KEY_SIZE: Final = vrf.VRF_KEY_SIZE


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
    """A forked process that verifies (key, message, signature) triples for block sync."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(theirs, ours), name="sync-checks", daemon=True
        )
        self._process.start()
        theirs.close()
        self._conn = ours
        # One request on the pipe at a time: the thread that sends one reads its answer.
        self._io = threading.Lock()
        self._healthy = True

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def verified(self, triples: Sequence[Triple]) -> Verified:
        """The triples of `triples` that verify (the others are left out); nothing if
        the process is gone. Waits on a thread, so the event loop runs meanwhile."""
        unique = list(dict.fromkeys(triples))
        if not unique or not self._healthy:
            return NOTHING_VERIFIED
        payload = pack([list(triple) for triple in unique])
        try:
            verdicts = await asyncio.to_thread(self._roundtrip, payload)
        except (OSError, EOFError, ValueError):
            self._retire("the sync check process is gone")
            return NOTHING_VERIFIED
        if len(verdicts) != len(unique):
            self._retire("the sync check process answered out of turn")
            return NOTHING_VERIFIED
        return frozenset(t for t, ok in zip(unique, verdicts, strict=True) if ok == 1)

    def _roundtrip(self, payload: bytes) -> bytes:
        with self._io:
            self._conn.send_bytes(payload)
            return self._conn.recv_bytes()

    def _retire(self, why: str) -> None:
        if self._healthy:
            log.warning("%s; synced blocks' headers are verified at import only", why)
        self._healthy = False

    def close(self) -> None:
        """End the process (a thread waiting on it sees EOF) and close the pipe."""
        self._healthy = False
        self._process.terminate()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        with self._io:
            self._conn.close()


def _serve(conn: Connection, parents_end: Connection) -> None:
    """The process: answer each batch of triples with one verdict byte per triple."""
    parents_end.close()  # so that the parent's death closes the pipe for us
    # Ctrl-C is the parent's to handle; the parent ends us (SIGTERM) or closes the pipe.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
