"""The bounds of a compact proposal's rebuild from waiting TXS frames (rev19b 1, 2): each
block scans once, a few blocks a round, and the sender's inbox is read first, each other
peer's for its share, so that no peer's big frames starve the sender's txs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fluxchain.core.crypto import sha256
from fluxchain.node.inbox_scan import InboxScans, fill_from_inboxes


def _frames(*payloads: list[bytes]) -> Callable[[], Iterator[bytes]]:
    """An inbox holding one frame per list of tx bodies (a frame is its bodies joined,
    decoded back by `_decode`)."""
    return lambda: iter(b"|".join(raws) for raws in payloads)


def _decode(payload: bytes) -> list[bytes]:
    return payload.split(b"|")


def test_each_block_scans_once_and_at_most_two_a_round() -> None:
    scans = InboxScans(per_round=2)
    assert scans.take(5, 0, b"a")
    assert not scans.take(5, 0, b"a")  # the same block again
    assert scans.take(5, 0, b"b")
    assert not scans.take(5, 0, b"c")  # a third block of the round
    assert scans.take(5, 1, b"c")  # another round
    assert scans.take(6, 0, b"a")  # the next height starts afresh


def test_the_senders_inbox_is_read_first_and_a_big_peer_gets_only_its_share() -> None:
    wanted_raw, other_raw = b"w" * 10, b"o" * 10
    flooder = _frames([b"x" * 60], [other_raw])  # a frame past its share, then a small one
    sender = _frames([wanted_raw])
    wanted = {sha256(wanted_raw): 0, sha256(other_raw): 1}
    found = fill_from_inboxes(wanted, [sender, flooder], _decode, max_tx_bytes=100, budget=50)
    # The flooder's big frame is not read (it exceeds the 40 bytes left), its small one is.
    assert found == {0: wanted_raw, 1: other_raw}
    assert wanted == {}


def test_a_scan_reads_no_more_than_its_budget() -> None:
    raws = [bytes([i]) * 10 for i in range(12)]
    inboxes = [_frames(*([raw] for raw in raws[i : i + 4])) for i in (0, 4, 8)]
    wanted = {sha256(raw): i for i, raw in enumerate(raws)}
    found = fill_from_inboxes(wanted, inboxes, _decode, max_tx_bytes=100, budget=60)
    # The sender: half of 60 (three frames); the next, half of the 30 left (one); the
    # last, the 20 left (two): 60 bytes read in all.
    assert sorted(found) == [0, 1, 2, 4, 8, 9]


def test_a_height_scans_at_most_per_height_blocks_whatever_their_rounds() -> None:
    """rev19d 1: a byzantine proposer signs two blocks for each of its rounds; the scans
    of a height stop at `per_height`, and a new height starts afresh."""
    scans = InboxScans(per_round=2, per_height=4)
    taken = [scans.take(5, r, bytes([r, n])) for r in range(10) for n in range(2)]
    assert sum(taken) == 4
    assert scans.take(6, 0, b"a")
