"""Wire frames of the p2p protocol: one canonical msgpack array `[kind, field...]` each.

Every websocket binary message carries exactly one frame. The decoder is the only
place that turns peer bytes into objects, and it trusts nothing: the frame size, every
array length, every integer range and every byte-string size is checked, and the bytes
must be the canonical encoding of what they decode to (re-encoding reproduces them).
Anything else raises `FrameError` with a reason code; the network layer turns that
into misbehaviour points. Payloads of gossip and of block sync (txs, proposals, votes,
evidence, blocks, commits) are opaque bytes here: the host decodes and validates them.

docs/p2p.md describes each frame; the limits below carry their reasons.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Final

from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, SIGNATURE_SIZE
from fluxchain.core.encoding import (
    U64,
    as_bytes,
    as_chain_id,
    as_int,
    as_list,
    as_str,
    pack,
    unpack,
)
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.validators import MAX_VALIDATORS_HARD
from p2p.errors import FrameError, PeerReason

# Version 1 is the first protocol; a peer whose HELLO names a version outside
# [MIN_PROTOCOL_VERSION, PROTOCOL_VERSION] is refused with `incompatible_version`.
# Version 2 added TXS (batched tx gossip); a version-1 peer would take it for garbage.
# Version 3 added ROUND_STATE (per-peer consensus gossip); a version-2 peer would ban us
# for an unknown kind.
PROTOCOL_VERSION: Final = 3
MIN_PROTOCOL_VERSION: Final = 3

MiB: Final = 1024 * 1024

# The largest frame is a BLOCKS response or a PROPOSAL carrying a full block: the
# chain's max_block_bytes is 4 MiB (genesis/), a commit of 100 validators is ~10 KiB,
# so 8 MiB leaves the same headroom again. aiohttp refuses a bigger websocket message
# from its length header, before reading the payload.
MAX_FRAME: Final = 8 * MiB
# A BLOCKS frame spends at most 11 bytes of msgpack per pair (array header, two bin
# headers) and 16 bytes around the list: 16 KiB of framing headroom covers 100 pairs.
MAX_BLOCKS_RESPONSE_BYTES: Final = MAX_FRAME - 16 * 1024
# 100 blocks per request keeps one response to a few seconds of import work, so a
# syncing node can spread requests over several peers and notice a slow one early.
MAX_BLOCKS_PER_REQUEST: Final = 100
# Enough addresses for a fresh node to fill its outbound slots several times over,
# small enough that one PEERS frame cannot flood the peer book (bounded anyway).
MAX_PEERS_PER_MESSAGE: Final = 100
# A chain id is at most 64 characters everywhere in the core (tx, header).
# "host:port": a 253-character DNS name, or a bracketed IPv6 address, a colon, and a
# five-digit port; 300 leaves room without letting a peer send kilobytes of "address".
MAX_ADDRESS_LEN: Final = 300
CHALLENGE_SIZE: Final = 32
# ROUND_STATE: the vote sets a node announces are its current round's prevotes and
# precommits and the prevotes of the proof-of-lock round its proposal names (one per
# proposal; an equivocating proposer can make two): 6 leaves room and bounds the frame
# to a few hundred bytes. One bit per validator of the largest set a block may carry.
MAX_VOTE_SETS: Final = 6
MAX_VOTE_BITS_BYTES: Final = (MAX_VALIDATORS_HARD + 7) // 8
MAX_CONSENSUS_ROUND: Final = 2**31  # the bound of a vote's round
MAX_REQUEST_ID: Final = 2**32 - 1

# Structural bounds handed to msgpack so that hostile arrays and strings are refused
# before they are allocated; the per-kind checks below are tighter still.
_MAX_ARRAY_ITEMS: Final = max(MAX_BLOCKS_PER_REQUEST, MAX_PEERS_PER_MESSAGE) + 8
_MAX_STR_BYTES: Final = MAX_ADDRESS_LEN
_FRAME_REASONS: Final = {
    Reason.TOO_LARGE: PeerReason.TOO_LARGE,
    Reason.MALFORMED: PeerReason.MALFORMED,
    Reason.NON_CANONICAL: PeerReason.NON_CANONICAL,
}


class Kind(IntEnum):
    """Frame kinds of protocol version 1. Numbers are part of the protocol."""

    HELLO = 1
    AUTH = 2
    STATUS = 3
    TX = 10
    PROPOSAL = 11
    VOTE = 12
    EVIDENCE = 13
    TXS = 14  # several txs in one frame: per-frame costs dominate one small tx
    GET_BLOCKS = 20
    BLOCKS = 21
    GET_PEERS = 22
    PEERS = 23
    ROUND_STATE = 30  # the sender's consensus height, round, step and the votes it holds


# Kinds that are flooded through the network with duplicate suppression.
GOSSIP_KINDS: Final = frozenset({Kind.TX, Kind.TXS, Kind.PROPOSAL, Kind.VOTE, Kind.EVIDENCE})


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame of each side: who I am, which chain I follow, and a fresh challenge."""

    KIND: ClassVar[Kind] = Kind.HELLO
    version: int
    chain_id: str
    genesis_hash: bytes
    node_key: bytes
    listen_address: str  # "host:port" where I accept peers, or "" if I do not
    challenge: bytes

    def fields(self) -> list[Any]:
        return [
            self.version,
            self.chain_id,
            self.genesis_hash,
            self.node_key,
            self.listen_address,
            self.challenge,
        ]


@dataclass(frozen=True, slots=True)
class Auth:
    """Second frame of each side: a signature over the peer's challenge (handshake.py)."""

    KIND: ClassVar[Kind] = Kind.AUTH
    signature: bytes

    def fields(self) -> list[Any]:
        return [self.signature]


@dataclass(frozen=True, slots=True)
class Status:
    """The sender's latest confirmed height and block hash; sync picks peers by it."""

    KIND: ClassVar[Kind] = Kind.STATUS
    height: int
    head_hash: bytes

    def fields(self) -> list[Any]:
        return [self.height, self.head_hash]


@dataclass(frozen=True, slots=True)
class Gossip:
    """A tx, proposal, vote or evidence: opaque bytes the host decodes and validates."""

    kind: Kind
    payload: bytes

    def fields(self) -> list[Any]:
        return [self.payload]


@dataclass(frozen=True, slots=True)
class GetBlocks:
    """Ask for up to `count` confirmed blocks with their commits, from `start_height`."""

    KIND: ClassVar[Kind] = Kind.GET_BLOCKS
    request_id: int
    start_height: int
    count: int

    def fields(self) -> list[Any]:
        return [self.request_id, self.start_height, self.count]


@dataclass(frozen=True, slots=True)
class Blocks:
    """The answer to GET_BLOCKS with the same request id: consecutive (block, commit)."""

    KIND: ClassVar[Kind] = Kind.BLOCKS
    request_id: int
    blocks: tuple[tuple[bytes, bytes], ...]

    def fields(self) -> list[Any]:
        return [self.request_id, [[block, commit] for block, commit in self.blocks]]


@dataclass(frozen=True, slots=True)
class GetPeers:
    """Ask for addresses the peer knows (peer exchange)."""

    KIND: ClassVar[Kind] = Kind.GET_PEERS

    def fields(self) -> list[Any]:
        return []


@dataclass(frozen=True, slots=True)
class Peers:
    """Addresses ("host:port") the sender knows; only accepted in answer to GET_PEERS."""

    KIND: ClassVar[Kind] = Kind.PEERS
    addresses: tuple[str, ...]

    def fields(self) -> list[Any]:
        return [list(self.addresses)]


@dataclass(frozen=True, slots=True)
class VoteBits:
    """Which validators' votes of one (round, type) the sender holds: bit i = validator i.

    On the wire the bits are a little-endian byte string without trailing zero bytes
    (empty for none), so each set of bits has exactly one encoding.
    """

    round: int
    vote_type: int  # 1 prevote, 2 precommit (fluxchain.core.votes.VoteType)
    bits: int

    def fields(self) -> list[Any]:
        return [self.round, self.vote_type, bits_to_bytes(self.bits)]


@dataclass(frozen=True, slots=True)
class RoundState:
    """The sender's consensus position, sent on every change and as a heartbeat.

    `proposal` is the hash of the proposal (with its block) it holds for `round`, or
    empty; `votes` are the vote sets it holds for the rounds it needs, sorted by
    (round, type). A peer uses it to send exactly what the sender lacks
    (p2p/consensus_gossip.py); it replaces the sender's previous ROUND_STATE.
    """

    KIND: ClassVar[Kind] = Kind.ROUND_STATE
    height: int
    round: int
    step: int  # 1 propose, 2 prevote, 3 precommit (consensus.messages.Step)
    proposal: bytes
    votes: tuple[VoteBits, ...]

    def fields(self) -> list[Any]:
        return [
            self.height,
            self.round,
            self.step,
            self.proposal,
            [entry.fields() for entry in self.votes],
        ]


def bits_to_bytes(bits: int) -> bytes:
    """The canonical wire form of a bit set: little-endian, no trailing zero byte."""
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


Message = Hello | Auth | Status | Gossip | GetBlocks | Blocks | GetPeers | Peers | RoundState


def kind_of(message: Message) -> Kind:
    """The frame kind of `message`."""
    return message.kind if isinstance(message, Gossip) else message.KIND


def encode(message: Message) -> bytes:
    """The canonical frame of `message`."""
    return pack([int(kind_of(message)), *message.fields()])


def decode(data: bytes) -> Message:
    """Parse one frame; raise FrameError naming what is wrong with it."""
    try:
        obj = unpack(data, max_bytes=MAX_FRAME, max_str=_MAX_STR_BYTES, max_array=_MAX_ARRAY_ITEMS)
    except DecodeError as exc:
        raise FrameError(
            _FRAME_REASONS.get(exc.reason, PeerReason.MALFORMED), exc.message
        ) from None
    try:
        return _decode_fields(obj)
    except DecodeError as exc:
        raise FrameError(PeerReason.BAD_FIELD, exc.message) from None


def _decode_fields(obj: Any) -> Message:
    if type(obj) is not list or not obj:
        raise FrameError(PeerReason.MALFORMED, "a frame is a non-empty array")
    raw_kind = as_int(obj[0], "kind", 0, 255)
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise FrameError(PeerReason.UNKNOWN_KIND, f"unknown frame kind {raw_kind}") from None
    fields = obj[1:]
    if kind not in _DECODERS:  # pragma: no cover - every Kind has a decoder (a test checks)
        raise FrameError(PeerReason.UNKNOWN_KIND, f"no decoder for kind {kind}")
    count, decoder = _DECODERS[kind]
    _expect(fields, count, kind)
    return decoder(kind, fields)


def _as_hello(_kind: Kind, fields: list[Any]) -> Hello:
    return Hello(
        version=as_int(fields[0], "hello.version", 0, U64),
        chain_id=as_chain_id(fields[1], "hello.chain_id"),
        genesis_hash=as_bytes(fields[2], "hello.genesis_hash", size=HASH_SIZE),
        node_key=as_bytes(fields[3], "hello.node_key", size=PUBKEY_SIZE),
        listen_address=_as_listen_address(fields[4]),
        challenge=as_bytes(fields[5], "hello.challenge", size=CHALLENGE_SIZE),
    )


def _as_auth(_kind: Kind, fields: list[Any]) -> Auth:
    return Auth(as_bytes(fields[0], "auth.signature", size=SIGNATURE_SIZE))


def _as_status(_kind: Kind, fields: list[Any]) -> Status:
    return Status(
        height=as_int(fields[0], "status.height", 0, U64),
        head_hash=as_bytes(fields[1], "status.head_hash", size=HASH_SIZE),
    )


def _as_gossip(kind: Kind, fields: list[Any]) -> Gossip:
    payload = as_bytes(fields[0], "gossip.payload", max_len=MAX_FRAME)
    if not payload:
        raise FrameError(PeerReason.BAD_FIELD, "gossip.payload: empty")
    return Gossip(kind, payload)


def _as_get_blocks(_kind: Kind, fields: list[Any]) -> GetBlocks:
    return GetBlocks(
        request_id=as_int(fields[0], "get_blocks.request_id", 0, MAX_REQUEST_ID),
        start_height=as_int(fields[1], "get_blocks.start_height", 1, U64),
        count=as_int(fields[2], "get_blocks.count", 1, MAX_BLOCKS_PER_REQUEST),
    )


def _as_blocks(_kind: Kind, fields: list[Any]) -> Blocks:
    return Blocks(
        request_id=as_int(fields[0], "blocks.request_id", 0, MAX_REQUEST_ID),
        blocks=_as_block_pairs(fields[1]),
    )


def _as_get_peers(_kind: Kind, _fields: list[Any]) -> GetPeers:
    return GetPeers()


def _as_peers(_kind: Kind, fields: list[Any]) -> Peers:
    items = as_list(fields[0], "peers.addresses", max_len=MAX_PEERS_PER_MESSAGE)
    return Peers(tuple(_as_address(item, "peers.address") for item in items))


def _expect(fields: list[Any], count: int, kind: Kind) -> None:
    if len(fields) != count:
        raise FrameError(
            PeerReason.BAD_FIELD, f"{kind.name}: expected {count} fields, got {len(fields)}"
        )


def _as_round_state(_kind: Kind, fields: list[Any]) -> RoundState:
    proposal = as_bytes(fields[3], "round_state.proposal", max_len=HASH_SIZE)
    if len(proposal) not in (0, HASH_SIZE):
        raise FrameError(PeerReason.BAD_FIELD, "round_state.proposal: expected 0 or 32 bytes")
    entries: list[VoteBits] = []
    for item in as_list(fields[4], "round_state.votes", max_len=MAX_VOTE_SETS):
        round_, vote_type, raw = as_list(item, "round_state.votes[]", length=3)
        data = as_bytes(raw, "round_state.bits", max_len=MAX_VOTE_BITS_BYTES)
        if data and data[-1] == 0:
            raise FrameError(PeerReason.BAD_FIELD, "round_state.bits: trailing zero byte")
        entry = VoteBits(
            as_int(round_, "round_state.votes.round", 0, MAX_CONSENSUS_ROUND),
            as_int(vote_type, "round_state.votes.type", 1, 2),
            int.from_bytes(data, "little"),
        )
        if entries and (entries[-1].round, entries[-1].vote_type) >= (entry.round, entry.vote_type):
            raise FrameError(PeerReason.BAD_FIELD, "round_state.votes: not sorted or repeated")
        entries.append(entry)
    return RoundState(
        height=as_int(fields[0], "round_state.height", 1, U64),
        round=as_int(fields[1], "round_state.round", 0, MAX_CONSENSUS_ROUND),
        step=as_int(fields[2], "round_state.step", 1, 3),
        proposal=proposal,
        votes=tuple(entries),
    )


# Each frame kind: how many fields follow the kind, and the function that reads them.
_DECODERS: Final[dict[Kind, tuple[int, Callable[[Kind, list[Any]], Message]]]] = {
    Kind.HELLO: (6, _as_hello),
    Kind.AUTH: (1, _as_auth),
    Kind.STATUS: (2, _as_status),
    Kind.TX: (1, _as_gossip),
    Kind.TXS: (1, _as_gossip),
    Kind.PROPOSAL: (1, _as_gossip),
    Kind.VOTE: (1, _as_gossip),
    Kind.EVIDENCE: (1, _as_gossip),
    Kind.GET_BLOCKS: (3, _as_get_blocks),
    Kind.BLOCKS: (2, _as_blocks),
    Kind.GET_PEERS: (0, _as_get_peers),
    Kind.PEERS: (1, _as_peers),
    Kind.ROUND_STATE: (5, _as_round_state),
}


def _as_block_pairs(value: Any) -> tuple[tuple[bytes, bytes], ...]:
    items = as_list(value, "blocks.blocks", max_len=MAX_BLOCKS_PER_REQUEST)
    pairs: list[tuple[bytes, bytes]] = []
    total = 0
    for item in items:
        pair = as_list(item, "blocks.pair", length=2)
        block = as_bytes(pair[0], "blocks.block", max_len=MAX_FRAME)
        commit = as_bytes(pair[1], "blocks.commit", max_len=MAX_FRAME)
        if not block:
            raise FrameError(PeerReason.BAD_FIELD, "blocks.block: empty")
        total += len(block) + len(commit)
        pairs.append((block, commit))
    if total > MAX_BLOCKS_RESPONSE_BYTES:
        raise FrameError(
            PeerReason.TOO_LARGE, f"BLOCKS carries {total} bytes > {MAX_BLOCKS_RESPONSE_BYTES}"
        )
    return tuple(pairs)


def _as_listen_address(value: Any) -> str:
    text = as_str(value, "hello.listen_address", max_len=MAX_ADDRESS_LEN)
    return text if text == "" else _as_address(text, "hello.listen_address")


def _as_address(value: Any, field: str) -> str:
    text = as_str(value, field, max_len=MAX_ADDRESS_LEN)
    try:
        host, port = parse_address(text)
    except ValueError as exc:
        raise FrameError(PeerReason.BAD_FIELD, f"{field}: {exc}") from None
    if format_address(host, port) != text:
        raise FrameError(PeerReason.BAD_FIELD, f"{field}: {text!r} is not in canonical form")
    return text


# A DNS name: dot-separated labels of letters, digits and inner hyphens.
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME: Final = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def parse_address(text: str) -> tuple[str, int]:
    """Split "host:port" / "[ipv6]:port" into (host, port); raise ValueError if invalid."""
    if len(text) > MAX_ADDRESS_LEN:
        raise ValueError("address too long")
    if text.startswith("["):
        inner, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [ipv6]:port")
        host = str(ipaddress.IPv6Address(inner))
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not _HOSTNAME.match(host):
            raise ValueError(f"{text!r} is not host:port")
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
        raise ValueError(f"{text!r} has no valid port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside [1, 65535]")
    return host, port


def format_address(host: str, port: int) -> str:
    """The canonical "host:port" text of an address (IPv6 in brackets)."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{ipaddress.IPv6Address(host)}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"
