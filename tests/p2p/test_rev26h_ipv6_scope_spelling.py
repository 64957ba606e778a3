"""rev26h: an IPv6 address with a zone (scope id) is another canonical spelling of it.

hard26 3 keys the peer book by `canonical_address`, "one node is one entry, one backoff,
one dial". `parse_address` reads `[2001:db8::7%<anything>]:p` (Python's IPv6Address takes
any zone text without `%` or `/`) and `format_address` writes it back as it came, so each
zone is a canonical spelling the wire accepts in PEERS: `%1`, `%eth0`, `%x y`, even
`%x]@203.0.113.5:80?` (a "host:port" that no URL parser reads). A zone means nothing on
the network beyond the link (a peer's zone names its own interfaces, not ours), and the
socket dials the same address (`[::1%1]:p` reaches ::1). One liar's PEERS frames make one
IPv6 address as many entries as it writes zones (up to the slots its source group
reaches), each backed off apart and dialed in turn.

Now: one entry per zone. Should: one entry for the address (a zone dropped or refused).
fix26p2: refused, by the wire (`bad_field`) and the book alike.
"""

from __future__ import annotations

import random

import pytest

from p2p.errors import FrameError, PeerReason
from p2p.messages import Peers, decode, encode
from p2p.peerbook import PeerBook


def test_an_ipv6_address_under_several_zones_is_one_book_entry() -> None:
    book = PeerBook(clock=lambda: 1_700_000_000.0, rng=random.Random(26))
    book.add_persistent("[2001:db8::7]:9000")
    zoned = (
        "[2001:db8::7%1]:9000",
        "[2001:db8::7%eth0]:9000",
        "[2001:db8::7%x y]:9000",
        "[2001:db8::7%x]@203.0.113.5:80?]:9000",
    )
    for address in zoned:
        with pytest.raises(FrameError) as refused:
            decode(encode(Peers((address,))))
        assert refused.value.reason is PeerReason.BAD_FIELD, address
        assert not book.add_discovered(address, source="203.0.113.9"), address
    addresses = [entry.address for entry in book.entries()]
    assert addresses == ["[2001:db8::7]:9000"], f"one address, {len(addresses)} entries"
