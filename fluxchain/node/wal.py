"""The consensus write-ahead log: the proposals and votes received at the current height.

Why: a validator that crashes after prevoting may hold the only proof of lock (2/3+
prevotes) for a value; if it forgot those votes, a restarted network could stall at that
height. Everything the engine took in at the current height is appended here, and the
log is fsynced before each signature, so after a restart the engine is rebuilt to at
least the state in which it last signed.

Format: records of `length (4 bytes, big-endian) + canonical msgpack`, the first being
`[0, height]`; then `[1, proposal_fields, block_bytes]` or `[2, vote_fields]`. A torn
last record (crash mid-write) ends the replay. A new height truncates the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from consensus.events import ProposalReceived, VoteReceived
from consensus.messages import Proposal
from fluxchain.core.encoding import as_bytes, as_int, as_list, pack, unpack
from fluxchain.core.errors import DecodeError
from fluxchain.core.votes import Vote

_HEIGHT: Final = 0
_PROPOSAL: Final = 1
_VOTE: Final = 2
MAX_RECORD: Final = 16 * 1024 * 1024


class ConsensusWal:
    """Append-only log of one height's consensus inputs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self.height = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def start_height(self, height: int) -> None:
        """Begin a new height: the old one's inputs are no longer needed."""
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.height = height
        self._append(pack([_HEIGHT, height]))
        self.flush()

    def record(self, item: ProposalReceived | VoteReceived) -> None:
        if isinstance(item, VoteReceived):
            self._append(pack([_VOTE, item.vote.to_fields()]))
        else:
            self._append(pack([_PROPOSAL, item.proposal.to_fields(), item.block_bytes]))

    def flush(self) -> None:
        """Make every record so far durable (called before each signature)."""
        if self._fd >= 0:
            os.fsync(self._fd)

    def _append(self, data: bytes) -> None:
        os.write(self._fd, len(data).to_bytes(4, "big") + data)

    def replay(self, height: int) -> list[ProposalReceived | VoteReceived]:
        """The inputs logged for `height` (none if the log is for another height)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out: list[ProposalReceived | VoteReceived] = []
        offset, first = 0, True
        while offset + 4 <= len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "big")
            body = raw[offset + 4 : offset + 4 + size]
            if size > MAX_RECORD or len(body) < size:
                break  # torn tail
            offset += 4 + size
            try:
                fields = as_list(unpack(body, max_bytes=MAX_RECORD), "wal")
                kind = as_int(fields[0], "wal.kind", hi=2)
                if first:
                    if kind != _HEIGHT or as_int(fields[1], "wal.height") != height:
                        return []
                    first = False
                elif kind == _VOTE:
                    out.append(VoteReceived(Vote.from_fields(fields[1])))
                elif kind == _PROPOSAL:
                    block = as_bytes(fields[2], "wal.block")
                    out.append(ProposalReceived(Proposal.from_fields(fields[1]), block))
            except (DecodeError, IndexError):
                break
        return out
