"""rev25p2 3: a host spelled as a number is the IPv4 address it spells, or refused.

The resolver (inet_aton) and aiohttp read `0x7f.1`, `127.1`, `0177.0.0.1` and
`2130706433` as 127.0.0.1; taken as names, each spelling was a peer-book and outbound
group of its own. `parse_address` gives the dotted quad for each, refuses a host whose
last label is a number but which spells no IPv4, and leaves host names alone; a wire
address must still be in canonical form."""

from __future__ import annotations

import pytest

from p2p.errors import FrameError
from p2p.messages import Peers, decode, encode, parse_address
from p2p.netgroup import Netgroups


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0x0.1", "127.0.0.1"),
        ("127.0.0.0x1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("10.0.258", "10.0.1.2"),
        ("0XCB.0.113.7", "203.0.113.7"),
        ("203.0.113.7", "203.0.113.7"),
    ],
)
def test_a_numeric_host_is_the_ipv4_it_spells(host: str, ip: str) -> None:
    assert parse_address(f"{host}:26600") == (ip, 26600)
    assert Netgroups().group(f"{host}:26600") == Netgroups().group(f"{ip}:26600")


@pytest.mark.parametrize(
    "host", ["1.2.3.256", "1.2.3.4.5", "08.1.1.1", "0x7g.1", "node.1", "4294967296", "1.2.65536"]
)
def test_a_numeric_host_that_spells_no_ipv4_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an IPv4 address"):
        parse_address(f"{host}:26600")


@pytest.mark.parametrize("host", ["node3", "seed.example.org", "1a.example", "x0x1"])
def test_a_host_name_stays_a_name(host: str) -> None:
    assert parse_address(f"{host}:26600") == (host, 26600)


def test_peers_on_the_wire_carry_only_the_canonical_spelling() -> None:
    assert decode(encode(Peers(addresses=("127.0.0.1:26600",)))) == Peers(
        addresses=("127.0.0.1:26600",)
    )
    with pytest.raises(FrameError, match="canonical"):
        decode(encode(Peers(addresses=("0x7f.1:26600",))))
