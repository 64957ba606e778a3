"""hard26 3: the peer book keyed an address by its spelling. `parse_address` reads
`0x7f.1`, `127.1` and `2130706433` as 127.0.0.1 (rev25p2 3: the resolver and aiohttp dial
them so), but the book kept the text it was given: `0x7f.1:p` from the config beside
`127.0.0.1:p` from peer exchange (or a stored book, or a self address) were two entries,
each backed off, failed and forgotten alone, each dialed: one node, two dials, the second
refused `duplicate_peer` and counted as a failure of an address that works.

Should: every address enters the book in its one canonical spelling (what the wire
carries), wherever it comes from (config peers and seeds, peer exchange, inbound
peers, a stored book, a dial), so two spellings of one address are one entry and one
dial."""

from __future__ import annotations

import random

import pytest

from fluxchain.core.encoding import pack
from p2p.network import Direction, Network
from p2p.peerbook import BOOK_FORMAT_VERSION, SECRET_SIZE, PeerBook
from tests.p2p.harness import cluster, link, run
from tests.support.ports import lease_ports
from tests.support.wait import wait_until_async


def _book() -> PeerBook:
    return PeerBook(clock=lambda: 1_700_000_000.0, rng=random.Random(26))


def test_two_spellings_of_one_address_are_one_book_entry() -> None:
    book = _book()
    book.add_persistent("0x7f.1:9000")  # the config's spelling
    assert book.add_discovered("127.0.0.1:9000", source="127.0.0.2")  # peer exchange
    assert book.add_discovered("2130706433:9000", source="127.0.0.2")
    assert [e.address for e in book.entries()] == ["127.0.0.1:9000"]
    entry = book.entry("127.1:9000")
    assert entry is not None and entry.persistent and "127.0.0.1:9000" in book
    book.record_failure("0x7f000001:9000")
    assert entry.failures == 1
    book.mark_self("127.0.0.1:9000")
    assert "0x7f.1:9000" not in book
    assert not book.add_discovered("127.1:9000"), "this node's own address, another spelling"


def test_a_stored_book_with_two_spellings_loads_as_one_entry() -> None:
    """A book stored before the fix may hold one address under several spellings."""
    records = [
        [address, b"", 0, 0, "", False] for address in ("127.1:9001", "127.0.0.1:9001", "x:0")
    ]
    stored = pack([BOOK_FORMAT_VERSION, bytes(SECRET_SIZE), records, []])
    book = _book()
    book.load_bytes(stored)
    assert [e.address for e in book.entries()] == ["127.0.0.1:9001"]


def test_two_spellings_of_a_persistent_peer_are_one_dial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dials: list[str] = []
    start_dial = Network._start_dial

    def counted(self: Network, address: str, *, one_per_group: bool = False) -> None:
        dials.append(address)
        start_dial(self, address, one_per_group=one_per_group)

    monkeypatch.setattr(Network, "_start_dial", counted)

    async def scenario() -> None:
        async with cluster() as nodes:
            listener = await nodes.add()
            port = listener.address.rsplit(":", 1)[1]
            dials.clear()
            target = await nodes.add(persistent=[f"0x7f.1:{port}", f"127.0.0.1:{port}"])
            network = target.network

            def settled() -> bool:
                outbound = [p for p in network._peers.values() if p.direction is Direction.OUTBOUND]
                return bool(outbound) and not network._dialing

            await wait_until_async(settled, what="the target's first dials settled")
            # An inbound peer or a PEERS frame naming it again, in a third spelling.
            network.book.add_discovered(f"127.1:{port}", source="127.0.0.1")
            entries = [e.address for e in network.book.entries() if e.address.endswith(port)]
            print(f"dials={dials} entries={entries}")
            assert entries == [f"127.0.0.1:{port}"], entries
            assert dials == [f"127.0.0.1:{port}"], (
                f"one node dialed {len(dials)} times under its spellings: {dials}"
            )

    run(scenario, timeout=30.0)


def test_a_node_advertising_another_spelling_of_its_address_is_one_entry_of_it() -> None:
    """The config's `p2p_advertise` may spell the node's address as the operator wrote it
    (`127.1:p`): its HELLO carries the canonical spelling (the wire refuses any other),
    and its peers' books hold it once."""
    lease = lease_ports(1)
    port = lease.ports[0]

    async def scenario() -> None:
        async with cluster() as nodes:
            listener = await nodes.add(port=port, advertise=f"127.1:{port}")
            assert listener.address == f"127.0.0.1:{port}"
            dialer = await nodes.add()
            await link(listener, dialer)  # inbound at the dialer: the HELLO's address
            await wait_until_async(
                lambda: f"127.0.0.1:{port}" in dialer.network.book, what="the address learned"
            )
            spelled = [e.address for e in dialer.network.book.entries()]
            assert spelled.count(f"127.0.0.1:{port}") == 1, spelled

    try:
        run(scenario, timeout=30.0)
    finally:
        lease.release()
