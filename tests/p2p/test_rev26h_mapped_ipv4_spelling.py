"""rev26h: an IPv4 address spelled as IPv4-mapped IPv6 is a second book entry.

hard26 3 keys the peer book by `canonical_address` so that "two spellings of one address
are one entry, one backoff, one dial". But `[::ffff:127.0.0.1]:p` (canonical as
`[::ffff:7f00:1]:p`, which the wire accepts in PEERS and HELLO) is 127.0.0.1:p: the
netgroups count an IPv4-mapped address as its IPv4 everywhere (p2p/netgroup.py), and a
socket dialing it reaches the IPv4 listener. A peer that relays it, or an operator who
writes it, makes a second entry beside `127.0.0.1:p`: two entries, two backoffs, two
dials of one node (the second refused `duplicate_peer` and counted a failure).

Now: two entries. Should: one entry, `127.0.0.1:p`, under either spelling.
"""

from __future__ import annotations

import random

from p2p.peerbook import PeerBook


def test_an_ipv4_mapped_spelling_is_the_same_book_entry() -> None:
    book = PeerBook(clock=lambda: 1_700_000_000.0, rng=random.Random(26))
    book.add_persistent("127.0.0.1:9000")  # the config's spelling
    assert book.add_discovered("[::ffff:127.0.0.1]:9000", source="127.0.0.2")  # a PEERS frame
    book.add_persistent("[::ffff:127.0.0.1]:9000")  # or the config again, the other way
    addresses = [entry.address for entry in book.entries()]
    assert addresses == ["127.0.0.1:9000"], f"one node, {len(addresses)} entries: {addresses}"
