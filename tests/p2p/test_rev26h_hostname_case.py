"""rev26h: a host name in another letter case is a second book entry, and a second dial.

hard26 3 keys the peer book by `canonical_address` ("two spellings of one address are one
entry, one backoff, one dial", docs/p2p.md, operations.md). A host name is read as it is
written: `Seed.Example.org:p` and `seed.example.org:p` are one host (DNS names are
case-blind, RFC 4343; the netgroups already lowercase a name, `p2p/netgroup.py`) but two
keys of the book. A peer's PEERS frames can name one host under many case spellings
(each accepted by the wire as canonical), each a new entry (up to the 64 slots its source
group reaches) backed off apart and dialed in turn: the node dials a host as often as a
liar spells it; a config listing a peer as its DNS record spells it, beside peers
advertising it in lower case, holds it twice and dials it twice (`duplicate_peer`).

Now: one entry per spelling. Should: one entry for the name whatever its letter case.
fix26p2: the canonical spelling of a name is its lower case, the only one the wire
takes (as for numeric spellings, hard26 3); the book keys any other, from the config or
a stored book, by it.
"""

from __future__ import annotations

import random

import pytest

from p2p.errors import FrameError, PeerReason
from p2p.messages import Peers, decode, encode
from p2p.peerbook import PeerBook


def test_one_host_name_in_several_letter_cases_is_one_book_entry() -> None:
    book = PeerBook(clock=lambda: 1_700_000_000.0, rng=random.Random(26))
    book.add_persistent("Seed.Example.org:26600")  # as the operator wrote it
    spellings = ["seed.example.org:26600", "SEED.EXAMPLE.ORG:26600", "sEeD.example.ORG:26600"]
    # Only the lower-case spelling passes the wire's canonical-form check in PEERS.
    assert decode(encode(Peers(tuple(spellings[:1])))) == Peers(tuple(spellings[:1]))
    for spelling in spellings[1:]:
        with pytest.raises(FrameError) as refused:
            decode(encode(Peers((spelling,))))
        assert refused.value.reason is PeerReason.BAD_FIELD, spelling
    for spelling in spellings:
        book.add_discovered(spelling, source="203.0.113.9")
    addresses = [entry.address for entry in book.entries()]
    assert len(addresses) == 1, f"one host, {len(addresses)} entries: {addresses}"
