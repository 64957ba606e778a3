"""rev25p2 2: every address an outbound peer reached over IPv6 sends in PEERS is refused,
so an IPv6-only node behind NAT64 (the case rev25p 2 grouped by its IPv4) learns no
address from the peers it dials.

Since p2p25 2 an outbound link's `remote_ip` is the IP its socket reached
(`Network.connect`: `peername[0]`), no longer the host it was dialed by. PEERS answers go
to the book with that as their source (`PeerExchange.on_peers`:
`add_discovered(address, source=peer.remote_ip)`), and the book groups the source as
`f"{source}:1"` (`PeerBook.add_discovered`): for a bare IPv6 address that is no
"host:port" (`2001:db8::7:1`), `parse_address` raises, and `add_discovered` answers
False for every address.

Attack / case: no attacker is needed. A node dials its seeds and peers by name; behind
DNS64/NAT64 each socket reaches `64:ff9b::a.b.c.d`, on a dual-stack host an AAAA record
gives a plain IPv6 address. Before this branch the source was the dialed name and the
addresses went in; now none does (an inbound IPv6 peer's were refused already).
Now: `add_discovered(..., source=<IPv6 socket IP>)` is False, the book stays empty.
Should: the address is kept, its source grouped as the IPv6 (or embedded IPv4) network."""

from __future__ import annotations

import random

import pytest

from p2p.peerbook import PeerBook


def _book() -> PeerBook:
    return PeerBook(clock=lambda: 0.0, rng=random.Random(7))


@pytest.mark.parametrize(
    "source",
    [
        "64:ff9b::cb00:7107",  # an outbound peer reached through NAT64 (203.0.113.7)
        "2001:db8::7",  # an outbound peer dialed by a name whose AAAA record won
        "fe80::1%eth0",  # a link-local neighbour, as the socket names it
    ],
)
def test_rev25p2_addresses_from_a_peer_reached_over_ipv6_go_into_the_book(source: str) -> None:
    # As before this branch, the same answer from a peer dialed by name goes in.
    before = _book()
    assert before.add_discovered("198.51.100.20:26600", source="seed.example.org")
    book = _book()
    added = book.add_discovered("198.51.100.20:26600", source=source)
    assert added and "198.51.100.20:26600" in book, (
        f"an address a peer at {source} sent was refused: its source is no host:port"
    )
