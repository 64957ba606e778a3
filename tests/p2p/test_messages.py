"""Frames: every kind round-trips, and the decoder refuses anything else with a reason."""

from __future__ import annotations

import random

import msgpack
import pytest

from fluxchain.core.encoding import pack
from p2p.errors import FrameError, PeerReason
from p2p.messages import (
    MAX_BLOCKS_PER_REQUEST,
    MAX_BLOCKS_RESPONSE_BYTES,
    MAX_FRAME,
    MAX_PEERS_PER_MESSAGE,
    MAX_TX_IDS_PER_ANNOUNCE,
    TX_ID_SIZE,
    Auth,
    Blocks,
    GetBlocks,
    GetPeers,
    Gossip,
    Hello,
    Kind,
    Message,
    Peers,
    Status,
    decode,
    encode,
    format_address,
    parse_address,
    parse_peer_address,
    split_ids,
)

pytestmark = pytest.mark.filterwarnings("error")

KEY = b"\x02" + b"\x11" * 32
SAMPLES: list[Message] = [
    Hello(1, "chain", b"\x01" * 32, KEY, "127.0.0.1:26656", b"\x09" * 32),
    Hello(1, "chain", b"\x01" * 32, KEY, "", b"\x09" * 32),
    Auth(b"\x05" * 64),
    Status(42, b"\xaa" * 32, 1),
    Gossip(Kind.TX, b"tx bytes"),
    Gossip(Kind.TXS, b"\x92\xc4\x01a\xc4\x01b"),
    Gossip(Kind.PROPOSAL, b"p" * 70_000),
    Gossip(Kind.VOTE, b"v"),
    Gossip(Kind.EVIDENCE, b"e"),
    GetBlocks(7, 1, MAX_BLOCKS_PER_REQUEST),
    Blocks(7, ((b"block1", b"commit1"), (b"block2", b""))),
    Blocks(8, ()),
    GetPeers(),
    Peers(("127.0.0.1:1", "node-1.example:26656", "[::1]:80")),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_frame_round_trips(message: Message) -> None:
    assert decode(encode(message)) == message


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.name)
def test_every_frame_kind_has_a_decoder(kind: Kind) -> None:
    """A known kind with too many fields is a bad field of that kind, never an unknown kind."""
    with pytest.raises(FrameError) as caught:
        decode(pack([int(kind), *([0] * 7)]))
    assert caught.value.reason is PeerReason.BAD_FIELD
    assert kind.name in str(caught.value)


def reason_of(data: bytes) -> PeerReason:
    with pytest.raises(FrameError) as caught:
        decode(data)
    return caught.value.reason


def test_garbage_is_malformed() -> None:
    assert reason_of(b"\xc1garbage") is PeerReason.MALFORMED
    assert reason_of(b"") is PeerReason.MALFORMED
    # Two objects back to back are not one frame.
    assert reason_of(encode(GetPeers()) + encode(GetPeers())) is PeerReason.MALFORMED


def test_non_canonical_encodings_are_refused() -> None:
    # The integer 22 written as a uint16 instead of a fixint: same value, other bytes.
    assert reason_of(b"\x91\xcd\x00\x16") is PeerReason.NON_CANONICAL
    # A 4-byte string behind a str8 header instead of a fixstr header.
    assert reason_of(b"\x92\x0a\xd9\x04text") is PeerReason.NON_CANONICAL
    # Payload bytes sent as a str instead of bin: canonical, but the wrong type.
    assert reason_of(msgpack.packb([10, "text"], use_bin_type=False)) is PeerReason.BAD_FIELD


def test_unknown_kind_and_wrong_shapes() -> None:
    assert reason_of(pack([99])) is PeerReason.UNKNOWN_KIND
    assert reason_of(pack([])) is PeerReason.MALFORMED
    assert reason_of(pack(7)) is PeerReason.MALFORMED
    assert reason_of(pack([int(Kind.GET_PEERS), 1])) is PeerReason.BAD_FIELD
    assert reason_of(pack([int(Kind.TX), b""])) is PeerReason.BAD_FIELD
    assert reason_of(pack([int(Kind.STATUS), 1, b"short"])) is PeerReason.BAD_FIELD
    assert reason_of(pack([int(Kind.AUTH), b"\x00" * 63])) is PeerReason.BAD_FIELD
    assert reason_of(pack([int(Kind.GET_BLOCKS), 1, 0, 10])) is PeerReason.BAD_FIELD
    too_many = MAX_BLOCKS_PER_REQUEST + 1
    assert reason_of(pack([int(Kind.GET_BLOCKS), 1, 1, too_many])) is PeerReason.BAD_FIELD
    hello = Hello(1, "c" * 65, b"\x01" * 32, KEY, "", b"\x09" * 32)
    assert reason_of(encode(hello)) is PeerReason.BAD_FIELD


def test_size_bounds() -> None:
    assert reason_of(b"\x00" * (MAX_FRAME + 1)) is PeerReason.TOO_LARGE
    pairs = [[b"b", b"c"]] * (MAX_BLOCKS_PER_REQUEST + 1)
    assert reason_of(pack([int(Kind.BLOCKS), 1, pairs])) is PeerReason.BAD_FIELD
    half = MAX_BLOCKS_RESPONSE_BYTES // 2 + 1
    big = pack([int(Kind.BLOCKS), 1, [[b"x" * half, b""], [b"y" * half, b""]]])
    assert len(big) <= MAX_FRAME
    assert reason_of(big) is PeerReason.TOO_LARGE
    addresses = ["127.0.0.1:1"] * (MAX_PEERS_PER_MESSAGE + 1)
    assert reason_of(pack([int(Kind.PEERS), addresses])) is PeerReason.BAD_FIELD


@pytest.mark.parametrize(
    "address",
    [
        "",
        "host",
        "host:",
        ":80",
        "host:0",
        "host:65536",
        "host:08",
        "ho st:1",
        "[::1]",
        "[zz]:1",
        "-bad.example:1",
        "a" * 254 + ":1",
    ],
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        host, port = parse_address(address)
        # "host:08" parses, but is not canonical: the wire refuses it.
        if format_address(host, port) == address:
            raise AssertionError(f"{address!r} accepted")
        raise ValueError("not canonical")
    assert reason_of(pack([int(Kind.PEERS), [address]])) is PeerReason.BAD_FIELD


def test_addresses_parse_and_format() -> None:
    assert parse_address("127.0.0.1:26656") == ("127.0.0.1", 26656)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    assert format_address("::1", 8080) == "[::1]:8080"
    assert format_address("node.example", 1) == "node.example:1"


def test_a_peer_address_may_name_the_node_key_it_must_answer_with() -> None:
    key = bytes.fromhex("02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    assert parse_peer_address("10.0.0.2:26600") == (None, "10.0.0.2:26600")
    assert parse_peer_address(f"{key.hex()}@10.0.0.2:26600") == (key, "10.0.0.2:26600")
    assert parse_peer_address(f"{key.hex()}@[::1]:26600") == (key, "[::1]:26600")
    for bad in (
        f"{key.hex()[:-2]}@10.0.0.2:26600",  # 32 bytes
        "zz@10.0.0.2:26600",  # not hex
        "04" + "00" * 32 + "@10.0.0.2:26600",  # not a compressed point
        f"{key.hex()}@10.0.0.2",  # no port
    ):
        with pytest.raises(ValueError):
            parse_peer_address(bad)


def test_split_ids_gives_each_32_byte_id_in_order_whatever_the_count() -> None:
    """The ids of TX_IDS and GET_TXS are split in one C call (wan16b): the same ids, in
    order, as slicing gives, for every count a frame allows, and a ragged tail is cut
    as before."""
    seed = 22
    rng = random.Random(seed)
    for count in (0, 1, 2, 3, 16, 300, MAX_TX_IDS_PER_ANNOUNCE):
        ids = [rng.randbytes(TX_ID_SIZE) for _ in range(count)]
        assert split_ids(b"".join(ids)) == ids, f"seed {seed} count {count}"
    ragged = rng.randbytes(2 * TX_ID_SIZE + 5)
    assert split_ids(ragged) == [ragged[:32], ragged[32:64], ragged[64:]]
