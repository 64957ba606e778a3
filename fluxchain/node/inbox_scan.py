"""A compact proposal's rebuild from the TXS frames still waiting in peers' inboxes.

A compact proposal is read ahead of the txs in its sender's inbox (`p2p.peer.Inbox`), so
the txs its proposer pushed just before it are still there, unchecked: the rebuild reads
them by the hash of each body (~1 µs a tx, where admission costs ~50 µs) rather than
fetching them (diag19). Reading costs the host's loop, so it is bounded three ways
(rev19b, rev19d): only a proposal of a round the engine can use now (its round or an
earlier one, or the next) signed by that round's proposer scans, at most SCANS_PER_ROUND
blocks a round and SCANS_PER_HEIGHT a height, once a block (a byzantine proposer signs
any number of blocks for any of its rounds, up to 2^31); a scan reads at most
INBOX_SCAN_BYTES; and the sender's inbox is read first (up to half of that), then each
other peer's for its share of what is left, so that no peer's big frames starve the
others' (the sender's own txs above all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from fluxchain.core.crypto import sha256
from fluxchain.core.errors import DecodeError

# Bytes of waiting TXS frames a rebuild reads: a few seconds of a flood's frames, ~16 ms
# of hashing, and no peer filling its inbox makes a rebuild read more.
INBOX_SCAN_BYTES: Final = 16 * 1024 * 1024
# Blocks of one (height, round) whose rebuild may scan: one is honest; a second lets a
# proposer's equivocation (or a stale copy) not cost the honest block its scan.
SCANS_PER_ROUND: Final = 2
# Scans of one height: a few rounds' worth, so that a byzantine proposer's blocks for its
# rounds cost a bounded read a height (and the honest rounds past them fetch, as before).
SCANS_PER_HEIGHT: Final = 8


class InboxScans:
    """Which proposed blocks' rebuilds have scanned the inboxes, for the next height only
    (at most `per_height` records)."""

    def __init__(
        self, per_round: int = SCANS_PER_ROUND, per_height: int = SCANS_PER_HEIGHT
    ) -> None:
        self._per_round = per_round
        self._per_height = per_height
        self._height = 0
        self._scanned: dict[bytes, int] = {}  # block hash scanned -> its round

    def take(self, height: int, round_: int, block_hash: bytes) -> bool:
        """Whether a rebuild of `block_hash` (proposed at `height`, `round_`, the next
        height) may scan now; counted if so. A block scans once."""
        if height != self._height:
            self._height, self._scanned = height, {}
        scanned = self._scanned
        if (
            block_hash in scanned
            or len(scanned) >= self._per_height
            or sum(r == round_ for r in scanned.values()) >= self._per_round
        ):
            return False
        scanned[block_hash] = round_
        return True


def fill_from_inboxes(
    wanted: dict[bytes, int],
    inboxes: Iterable[Callable[[], Iterator[bytes]]],
    decode: Callable[[bytes], list[bytes]],
    max_tx_bytes: int,
    budget: int = INBOX_SCAN_BYTES,
) -> dict[int, bytes]:
    """The bodies of the `wanted` txs (id -> position) found in the waiting TXS payloads
    of `inboxes` (the sender's first), by position; `wanted` keeps the ones not found.
    The first inbox reads at most half the `budget`, each other one its share of what is
    left (a payload read only if it fits in it). Not checked here: the block check verifies
    every tx it did not admit."""
    found: dict[int, bytes] = {}
    sources = list(inboxes)
    for n, payloads in enumerate(sources):
        if not wanted:
            break
        share = budget // 2 if n == 0 and len(sources) > 1 else budget // (len(sources) - n)
        read = 0
        for payload in payloads():
            if read + len(payload) > share:
                continue  # a smaller one behind it may fit
            read += len(payload)
            try:
                raws = decode(payload)
            except DecodeError:
                continue  # its sender is punished when the frame is handled
            for raw in raws:
                if len(raw) <= max_tx_bytes:
                    i = wanted.pop(sha256(raw), None)
                    if i is not None:
                        found[i] = raw
            if not wanted:
                break
        budget -= read
    return found
