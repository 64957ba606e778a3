"""The consensus write-ahead log: what the engine took in at the current height.

Why: a validator that crashes after prevoting may hold the only proof of lock (2/3+
prevotes) for a value, and the locked block's bytes; if it forgot them, a restarted network
could stall at that height. Every proposal, vote and fired timeout the engine takes in at
the current height is appended here (timeouts too, as CometBFT's receive loop logs them:
replaying them walks the engine through the same rounds again). Safety does not rest on
this log: the signer record alone is enough for that (docs/consensus.md, section 1).

A proposal or vote of the next height that arrives during the commit wait is not logged
then (the log is still the decided height's): the engine buffers it, and `NewHeight`
steps it and hands it back as `Replayed`, first among its outputs, which the host logs
here before it performs anything after it. So the block and proof of lock a validator
took during the wait survive a crash like any other input (review rev13b).

Format: records of `length (4 bytes, big-endian) + canonical msgpack`, the first being
`[0, height]`; then `[1, proposal_fields, block_bytes]`, `[2, vote_fields]` or
`[3, height, round, step]` (a timeout that fired). A torn last record (crash mid-write)
ends the replay. Each input is logged once. The log holds one height: nothing of an
earlier height is needed once a later one starts (its block is stored, synced, before
the driver starts the next height; safety rests on the signer record alone).

Durability: appends are not synced one by one; `flush` (fsync) runs before each signature,
so whatever led to a signature is on disk before the signature exists. A higher height of
a running node truncates the open log to nothing and appends its `[0, height]` record,
and syncs nothing then: the fsync before its first signature makes the truncation and the
records durable together. A crash before that leaves the old log (its height record is an
earlier height's: nothing replayed), an empty or torn file (nothing replayed), or the new
records; nothing of this height was signed yet. A restart (the log not yet open) or a
height not above the open log's rewrites the file atomically instead: the records kept
go to a new file, which is fsynced, renamed over the log, and the directory fsynced; a
crash at any instant leaves the old log or the new one, whole. Before, every height paid
that rewrite (two fsyncs, a file created and renamed: ~0.6 ms of CPU and ~11 ms of the
event loop a height on the WAN testnet's box; issue 22, idle22). Between issue 22's
1faf8aa and review rev22w a new height appended instead, and the log kept up to 4 MiB of
earlier heights: one damaged byte among them ended the replay before the current
height's records. A log of several heights (left by that build) is still read: a
height's records are those after its last height record.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from consensus.events import Input, NewHeight, ProposalReceived, TimeoutFired, VoteReceived
from consensus.signer import SignerGuard
from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import U64, as_int, as_list, pack, unpack
from fluxchain.core.errors import DecodeError
from fluxchain.core.validators import ValidatorSet

_HEIGHT: Final = 0
_PROPOSAL: Final = 1
_VOTE: Final = 2
_TIMEOUT: Final = 3
MAX_RECORD: Final = 16 * 1024 * 1024

WalRecord = ProposalReceived | VoteReceived | TimeoutFired


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


# Each logged input is its kind and then its own record's fields.
_ENTRIES: Final[dict[int, type[WalRecord]]] = {
    _PROPOSAL: ProposalReceived,
    _VOTE: VoteReceived,
    _TIMEOUT: TimeoutFired,
}
_KINDS: Final = {cls: kind for kind, cls in _ENTRIES.items()}


def _encode(item: WalRecord) -> bytes:
    return pack([_KINDS[type(item)], *item.to_fields()])


def _height_of(item: WalRecord) -> int:
    if isinstance(item, VoteReceived):
        return item.vote.height
    if isinstance(item, ProposalReceived):
        return item.proposal.height
    return item.height


class ConsensusWal:
    """Append-only log of one height's consensus inputs.

    `fsync` is `os.fsync` in the node; the simulator passes its own, which notes how much
    of the file a power cut would leave (`synced_size`) instead of paying for a disk flush.
    """

    def __init__(self, path: Path, fsync: Callable[[int], None] | None = None) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._fsync = fsync if fsync is not None else os.fsync
        self._fd = -1
        self._logged: set[bytes] = set()  # digests of the records in the file
        self.height = 0
        self.size = 0  # bytes in the file
        self.synced_size = 0  # bytes that the last fsync made durable

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def start_height(self, height: int) -> list[WalRecord]:
        """Begin `height`, or resume it after a restart; return what was logged for it.

        A higher height of an open log: the log is truncated and its height record
        written (both durable with the first `flush`), and nothing was logged for it.
        Otherwise the file is rewritten atomically with just those records (another
        height's are no longer needed; a torn tail is dropped), durable before this returns.
        """
        marker = _frame(pack([_HEIGHT, height]))
        if self._fd >= 0 and height > self.height:
            # O_APPEND: the record goes at the new end, offset 0.
            os.ftruncate(self._fd, 0)
            self.size = self.synced_size = 0  # a power cut may leave the file empty
            self._append(marker)
            self.height = height
            self._logged = set()
            return []
        kept = self._read(height)
        data = marker + b"".join(_frame(_encode(item)) for item in kept)
        self.close()
        self._write_atomically(data)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.height = height
        self.size = self.synced_size = len(data)
        self._logged = {sha256(_encode(item)) for item in kept}
        return kept

    def record(self, item: Input) -> None:
        """Log an input of this height that a restarted engine must see again (once)."""
        if not isinstance(item, ProposalReceived | VoteReceived | TimeoutFired):
            return  # the rest comes from the host again (validation) or from the record
        if self._fd < 0 or _height_of(item) != self.height:
            return
        body = _encode(item)
        digest = sha256(body)
        if digest in self._logged:
            return
        self._logged.add(digest)
        self._append(_frame(body))

    def _append(self, framed: bytes) -> None:
        view = memoryview(framed)
        while view:
            view = view[os.write(self._fd, view) :]
        self.size += len(framed)

    def flush(self) -> None:
        """Make every record so far durable (called before each signature).

        Nothing appended since the last fsync: nothing to sync (the proposer's prevote of
        its own proposal, a signature asked again), so one fsync covers them all."""
        if self._fd >= 0 and self.size != self.synced_size:
            self._fsync(self._fd)
            self.synced_size = self.size

    def replay(self, height: int) -> list[WalRecord]:
        """The inputs logged for `height` (none if the log is for another height)."""
        return self._read(height)

    def _read(self, height: int) -> list[WalRecord]:
        """The records after the log's last height record, if that record is `height`'s
        (up to a torn tail); none otherwise."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out: list[WalRecord] = []
        current = -1  # the height of the last height record read; -1: none yet
        offset = 0
        while offset + 4 <= len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "big")
            body = raw[offset + 4 : offset + 4 + size]
            if size > MAX_RECORD or len(body) < size:
                break  # torn tail
            try:
                fields = as_list(unpack(body, max_bytes=MAX_RECORD), "wal")
                kind = as_int(fields[0], "wal.kind", hi=_TIMEOUT)
                if kind == _HEIGHT:
                    current = as_int(fields[1], "wal.height", hi=U64)
                    out = []
                elif current < 0:
                    break  # a log starts with a height record
                elif current == height and kind in _ENTRIES:
                    out.append(_ENTRIES[kind].from_fields(fields[1:], "wal"))
            except (DecodeError, IndexError):
                break
            offset += 4 + size
        return out if current == height else []

    def _write_atomically(self, data: bytes) -> None:
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._fsync(fd)  # the new log's bytes are durable before it takes the name
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)  # atomic: a reader sees the old log or the new one
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            self._fsync(dir_fd)  # the rename is durable: no crash brings the old log back
        finally:
            os.close(dir_fd)


def height_inputs(
    height: int,
    validators: ValidatorSet,
    next_validators: ValidatorSet | None,
    guard: SignerGuard | None,
    wal: ConsensusWal | None,
) -> list[Input]:
    """The inputs that start `height` on an engine: the node's one path, restart or not.

    In order: `NewHeight` with the signer's `Resume` (the round, step, lock and valid value
    of its last signature at this height, if any), every input the WAL logged at this
    height, then our last signed vote (it may have been signed just before a crash and
    sent nowhere). On a height reached normally only the first is there. The WAL is
    rewritten for `height` as a side effect (`ConsensusWal.start_height`).
    """
    logged: list[WalRecord] = wal.start_height(height) if wal is not None else []
    resume = guard.resume_for(height) if guard is not None else None
    inputs: list[Input] = [NewHeight(height, validators, resume, next_validators), *logged]
    if guard is not None:
        last = guard.last_vote()
        if last is not None and last.height == height:
            inputs.append(VoteReceived(last))
    return inputs
