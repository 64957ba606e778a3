"""Wire frames of the p2p protocol: one canonical msgpack array `[kind, field...]` each.

Every websocket binary message carries one frame, or a BATCH of frames sent together
(each still the canonical frame it would be alone). The decoder is the only
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
import socket
import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Final

from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, Hash, PubKey, Signature, is_valid_pubkey
from fluxchain.core.encoding import (
    U64,
    Bytes,
    ChainId,
    Check,
    Checked,
    Int,
    ListOf,
    Record,
    Tuple,
    Uint64,
    as_bytes,
    as_int,
    as_str,
    pack,
    record,
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
# Version 4 encrypts the link (p2p/noise.py): a Noise key exchange comes before HELLO,
# and every frame after it is sealed; a version-3 node's plaintext HELLO is recognised
# and refused with `incompatible_version`.
# Version 5 added BATCH (several frames in one sealed websocket message, issue 22): a
# version-4 peer would ban us for an unknown kind.
# Version 6 relays txs by id (issue 22, wan22n): TX_IDS announces, GET_TXS and TX_BODIES
# fetch; a version-5 peer would ban us for the unknown kinds, and would relay bodies.
# Version 7 (issue 22, wan23v; no new kind) changes what frames mean: a ROUND_STATE at
# height h says h - 1 is committed, and no STATUS follows a commit it already told; a
# node between its commit and its next height announces that next height. A version-6
# peer would miss our heights, and send us commits we decided.
# Version 8 (session 26; no new kind) takes only one spelling of an address: numeric
# IPv4 as dotted quads, IPv4-mapped IPv6 as its IPv4, names in lower case, no IPv6 zone.
# A version-7 peer may send another spelling (its config's) in PEERS or its HELLO, which
# we would refuse as an invalid frame and score it for: refused at the handshake instead.
# Version 9 (session 27; no new kind) marks new consensus rules: a fee-free tx carries fee 0
# (`fee_not_zero`), an uptime report's "up" about a node marked DOWN waits for its watch
# epoch. The chain has no activation height for rule changes: a version-8 node would
# accept blocks we refuse (and the reverse), so the two never share a chain. Its nodes
# also answer `/health` without the proof our uptime probes require (docs/state.md,
# "Whose /health answered"): a network upgrades together.
PROTOCOL_VERSION: Final = 9
MIN_PROTOCOL_VERSION: Final = 9

MiB: Final = 1024 * 1024

# The largest frame is a BLOCKS response or a PROPOSAL carrying a full block: the
# chain's max_block_bytes is 4 MiB (genesis/), a commit of 100 validators is ~10 KiB,
# so 8 MiB leaves the same headroom again. aiohttp refuses a bigger websocket message
# from its length header, before reading the payload. This bounds a frame's plaintext;
# on the wire each frame is sealed and MAX_WIRE_FRAME long at most.
MAX_FRAME: Final = 8 * MiB
MAX_WIRE_FRAME: Final = MAX_FRAME + 16  # the AEAD tag (p2p/noise.py TAG_LEN)
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
# State sync (fluxchain/store/snapshots.py): a node keeps a few snapshots, and a snapshot
# has a manifest (part 0) and at most 16**4 + 15 * 4096 chunks (a chunk holds at least one
# slot: a prefix of the deepest cut, or a child of one of at most 4096 split nodes;
# store/snapshots.py MAX_CHUNKS).
MAX_SNAPSHOTS_OFFERED: Final = 8
MAX_SNAPSHOT_PARTS: Final = 16**4 + 15 * 4096 + 1
# Compact proposals (docs/p2p.md): the txs of a proposed block a receiver lacks, asked of
# the peer that sent it the block's ids. 10,000 is mainnet's largest block, the devnet's
# is 12,000 (params.max_block_txs); a receiver missing more falls back to the full block. The
# ids go as one byte string of 32-byte ids (320 KB at most), not as an array.
MAX_PROPOSAL_TXS_PER_REQUEST: Final = 10_000
TX_ID_SIZE: Final = HASH_SIZE  # full SHA-256 ids: no short-id collisions to defend
# BATCH (issue 22, wan22k): the frames a link's writer finds queued for one peer go out as
# one sealed websocket message, so one websocket header, one AEAD seal and open, one read
# and one TCP push serve them all. Only small frames are batched (votes, round states,
# compact proposals, tx batches); a bigger one goes alone, so a batch never delays a block
# behind it and one read never holds more than MAX_BATCH_BYTES of frames. 256 frames are
# more than a turn queues for one peer (a vote of each of 100 validators, twice, plus a
# round state), and each is still rate-limited as its own kind by the reader.
MAX_BATCH_FRAMES: Final = 256
# Tx relay by id (issue 22, wan22n; docs/p2p.md): an announcement names at most 4,096 tx ids
# (128 KiB, two seconds of the 2,000 tx/s target at one peer); a request asks for at most
# 1,024 of them, so that its answer (1 KiB txs) stays near a MiB and one slow answer holds
# back few txs.
MAX_TX_IDS_PER_ANNOUNCE: Final = 4096
MAX_TXS_PER_FETCH: Final = 1024
MAX_BATCHED_FRAME: Final = 64 * 1024
MAX_BATCH_BYTES: Final = 256 * 1024

# Structural bounds handed to msgpack so that hostile arrays and strings are refused
# before they are allocated; the per-kind checks below are tighter still.
_MAX_ARRAY_ITEMS: Final = (
    max(MAX_BLOCKS_PER_REQUEST, MAX_PEERS_PER_MESSAGE, MAX_PROPOSAL_TXS_PER_REQUEST) + 8
)
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
    BATCH = 4  # several frames in one sealed message: per-frame costs of the link paid once
    TX = 10
    PROPOSAL = 11
    VOTE = 12
    EVIDENCE = 13
    TXS = 14  # several txs in one frame: per-frame costs dominate one small tx
    COMPACT_PROPOSAL = 15  # a proposal with its block's header and tx ids, not its txs
    TX_IDS = 16  # ids of txs the sender admitted from a peer: ask for the ones you lack
    GET_BLOCKS = 20
    BLOCKS = 21
    GET_PEERS = 22
    PEERS = 23
    GET_SNAPSHOTS = 24  # state sync: which snapshots do you serve?
    SNAPSHOTS = 25
    GET_SNAPSHOT_PART = 26  # one part of a snapshot: 0 its manifest, 1.. its chunks
    SNAPSHOT_PART = 27
    ROUND_STATE = 30  # the sender's consensus height, round, step and the votes it holds
    GET_PROPOSAL_TXS = 31  # the txs of a compact proposal the asker lacks, by id
    PROPOSAL_TXS = 32
    GET_TXS = 33  # the txs of announced ids the asker lacks
    TX_BODIES = 34  # the answer: the txs asked for that the sender holds


# Kinds that are flooded through the network with duplicate suppression.
GOSSIP_KINDS: Final = frozenset(
    {Kind.TX, Kind.TXS, Kind.PROPOSAL, Kind.COMPACT_PROPOSAL, Kind.VOTE, Kind.EVIDENCE}
)
# Tx traffic, which may use only `Limits.bulk_share` of a link's byte budget and send
# queue, the rest kept for consensus frames: a proposal or vote never loses its room to
# them. TX_BODIES answers carry most tx bytes of relay by id (rev16b 2); they are kept by
# their sender until they fit (`Links.send_answer`), never dropped.
BULK_KINDS: Final = frozenset({Kind.TX, Kind.TXS, Kind.TX_IDS, Kind.GET_TXS, Kind.TX_BODIES})


class Lane(IntEnum):
    """The lanes of a peer's send queue (p2p.peer.SendQueue), in the order its writer
    empties them: a proposal or vote queued behind megabytes of tx frames is written
    before them, not after (fix16f; CometBFT's MConnection has channel priorities)."""

    CONSENSUS = 0
    BULK = 1


def lane_of(kind: int) -> Lane:
    """The send-queue lane of frames of `kind`: BULK_KINDS bulk, every other kind
    (proposals, votes, ROUND_STATE, proposal txs answers, block sync...) consensus."""
    return Lane.BULK if kind in BULK_KINDS else Lane.CONSENSUS


class _Address(Check):
    """A peer address in canonical "host:port" form (or "" where `or_empty`)."""

    __slots__ = ("or_empty",)

    def __init__(self, *, or_empty: bool = False) -> None:
        self.or_empty = or_empty

    def decode(self, value: Any, where: str) -> str:
        text = as_str(value, where, max_len=MAX_ADDRESS_LEN)
        if text == "" and self.or_empty:
            return text
        try:
            canonical = canonical_address(text)
        except ValueError as exc:
            raise DecodeError(Reason.BAD_FIELD, f"{where}: {exc}") from None
        if canonical != text:
            raise DecodeError(Reason.BAD_FIELD, f"{where}: {text!r} is not in canonical form")
        return text


class _BitSet(Check):
    """A set of validator indexes as an int; on the wire little-endian bytes without a
    trailing zero byte, so that each set has exactly one encoding."""

    __slots__ = ()

    def decode(self, value: Any, where: str) -> int:
        data = as_bytes(value, where, max_len=MAX_VOTE_BITS_BYTES)
        if data and data[-1] == 0:
            raise DecodeError(Reason.BAD_FIELD, f"{where}: trailing zero byte")
        return int.from_bytes(data, "little")

    def encode(self, value: Any) -> bytes:
        return bits_to_bytes(value)


def _is_not_empty(data: bytes) -> bool:
    return data != b""


_PAYLOAD: Final = Checked(Bytes(max_len=MAX_FRAME), _is_not_empty, Reason.BAD_FIELD, "empty")


@record("hello")
@dataclass(frozen=True, slots=True)
class Hello(Record):
    """First frame of each side: who I am, which chain I follow, and a fresh challenge."""

    KIND: ClassVar[Kind] = Kind.HELLO
    version: Uint64
    chain_id: Annotated[str, ChainId()]
    genesis_hash: Hash
    node_key: PubKey
    listen_address: Annotated[str, _Address(or_empty=True)]  # where I accept peers, or ""
    challenge: Annotated[bytes, Bytes(CHALLENGE_SIZE)]


@record("auth")
@dataclass(frozen=True, slots=True)
class Auth(Record):
    """Second frame of each side: a signature over the link's handshake hash and the
    peer's challenge (handshake.py)."""

    KIND: ClassVar[Kind] = Kind.AUTH
    signature: Signature


@record("status")
@dataclass(frozen=True, slots=True)
class Status(Record):
    """The sender's latest confirmed height and block hash, and its lowest stored block
    (its base: above 1 once it was state-synced); sync picks peers by them."""

    KIND: ClassVar[Kind] = Kind.STATUS
    height: Uint64
    head_hash: Hash
    base: Annotated[int, Int(1, U64)]


@dataclass(frozen=True, slots=True)
class Gossip:
    """A tx, proposal, vote or evidence: opaque bytes the host decodes and validates.

    Not a declared record: its kind is the frame's, one of several (GOSSIP_KINDS)."""

    kind: Kind
    payload: bytes

    def to_fields(self) -> list[Any]:
        return [self.payload]


@record("get_blocks")
@dataclass(frozen=True, slots=True)
class GetBlocks(Record):
    """Ask for up to `count` confirmed blocks with their commits, from `start_height`."""

    KIND: ClassVar[Kind] = Kind.GET_BLOCKS
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    start_height: Annotated[int, Int(1, U64)]
    count: Annotated[int, Int(1, MAX_BLOCKS_PER_REQUEST)]


@record("blocks")
@dataclass(frozen=True, slots=True)
class Blocks(Record):
    """The answer to GET_BLOCKS with the same request id: consecutive (block, commit)."""

    KIND: ClassVar[Kind] = Kind.BLOCKS
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    blocks: Annotated[
        tuple[tuple[bytes, bytes], ...],
        ListOf(
            Tuple(block=_PAYLOAD, commit=Bytes(max_len=MAX_FRAME)), max_len=MAX_BLOCKS_PER_REQUEST
        ),
    ]

    def check_decoded(self, where: str) -> None:
        total = sum(len(block) + len(commit) for block, commit in self.blocks)
        if total > MAX_BLOCKS_RESPONSE_BYTES:
            raise FrameError(
                PeerReason.TOO_LARGE, f"BLOCKS carries {total} bytes > {MAX_BLOCKS_RESPONSE_BYTES}"
            )


@record("get_peers")
@dataclass(frozen=True, slots=True)
class GetPeers(Record):
    """Ask for addresses the peer knows (peer exchange)."""

    KIND: ClassVar[Kind] = Kind.GET_PEERS


@record("peers")
@dataclass(frozen=True, slots=True)
class Peers(Record):
    """Addresses ("host:port") the sender knows; only accepted in answer to GET_PEERS."""

    KIND: ClassVar[Kind] = Kind.PEERS
    addresses: Annotated[tuple[str, ...], ListOf(_Address(), max_len=MAX_PEERS_PER_MESSAGE)]


@record("get_snapshots")
@dataclass(frozen=True, slots=True)
class GetSnapshots(Record):
    """Ask which state snapshots the peer serves."""

    KIND: ClassVar[Kind] = Kind.GET_SNAPSHOTS
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]


@record("snapshot_offer")
@dataclass(frozen=True, slots=True)
class SnapshotOffer(Record):
    """One snapshot a peer serves: the state after block `height`, the hash of its
    manifest, and its number of parts (the manifest and its chunks)."""

    height: Annotated[int, Int(1, U64)]
    manifest_hash: Hash
    parts: Annotated[int, Int(2, MAX_SNAPSHOT_PARTS)]


@record("snapshots")
@dataclass(frozen=True, slots=True)
class Snapshots(Record):
    """The answer to GET_SNAPSHOTS with the same request id, newest first."""

    KIND: ClassVar[Kind] = Kind.SNAPSHOTS
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    offers: Annotated[
        tuple[SnapshotOffer, ...], ListOf(SnapshotOffer, max_len=MAX_SNAPSHOTS_OFFERED)
    ]


@record("get_snapshot_part")
@dataclass(frozen=True, slots=True)
class GetSnapshotPart(Record):
    """Ask for part `index` of the snapshot at `height` (0: the manifest)."""

    KIND: ClassVar[Kind] = Kind.GET_SNAPSHOT_PART
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    height: Annotated[int, Int(1, U64)]
    index: Annotated[int, Int(0, MAX_SNAPSHOT_PARTS - 1)]


@record("snapshot_part")
@dataclass(frozen=True, slots=True)
class SnapshotPart(Record):
    """The answer to GET_SNAPSHOT_PART: the part's bytes, empty if the sender no longer
    has it (snapshots are pruned). The receiver checks the bytes (node/statesync.py)."""

    KIND: ClassVar[Kind] = Kind.SNAPSHOT_PART
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    height: Annotated[int, Int(1, U64)]
    index: Annotated[int, Int(0, MAX_SNAPSHOT_PARTS - 1)]
    data: Annotated[bytes, Bytes(max_len=MAX_FRAME)]


@record("vote_bits")
@dataclass(frozen=True, slots=True)
class VoteBits(Record):
    """Which validators' votes of one (round, type) the sender holds: bit i = validator i.

    On the wire the bits are a little-endian byte string without trailing zero bytes
    (empty for none), so each set of bits has exactly one encoding.
    """

    round: Annotated[int, Int(0, MAX_CONSENSUS_ROUND)]
    vote_type: Annotated[int, Int(1, 2)]  # 1 prevote, 2 precommit (core.votes.VoteType)
    bits: Annotated[int, _BitSet()]


@record("round_state")
@dataclass(frozen=True, slots=True)
class RoundState(Record):
    """The sender's consensus position, sent on every change and as a heartbeat.

    `proposal` is the hash of the proposal (with its block) it holds for `round`, or
    empty; `votes` are the vote sets it holds for the rounds it needs, sorted by
    (round, type). A peer uses it to send exactly what the sender lacks
    (p2p/consensus_gossip.py); it replaces the sender's previous ROUND_STATE.
    """

    KIND: ClassVar[Kind] = Kind.ROUND_STATE
    height: Annotated[int, Int(1, U64)]
    round: Annotated[int, Int(0, MAX_CONSENSUS_ROUND)]
    step: Annotated[int, Int(1, 3)]  # 1 propose, 2 prevote, 3 precommit (consensus.messages.Step)
    proposal: Annotated[bytes, Bytes(HASH_SIZE, or_empty=True)]
    votes: Annotated[tuple[VoteBits, ...], ListOf(VoteBits, max_len=MAX_VOTE_SETS)]

    def check_decoded(self, where: str) -> None:
        keys = [(entry.round, entry.vote_type) for entry in self.votes]
        if keys != sorted(set(keys)):
            raise FrameError(PeerReason.BAD_FIELD, f"{where}.votes: not sorted or repeated")


def _is_id_list(data: bytes) -> bool:
    return data != b"" and len(data) % TX_ID_SIZE == 0


@record("get_proposal_txs")
@dataclass(frozen=True, slots=True)
class GetProposalTxs(Record):
    """Ask the peer that sent us a compact proposal for the txs of its block we lack.

    `tx_ids` is the concatenation of 1 to MAX_PROPOSAL_TXS_PER_REQUEST 32-byte tx ids
    (SHA-256 of each tx's bytes), in block order.
    """

    KIND: ClassVar[Kind] = Kind.GET_PROPOSAL_TXS
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    block_hash: Hash
    tx_ids: Annotated[
        bytes,
        Checked(
            Bytes(max_len=MAX_PROPOSAL_TXS_PER_REQUEST * TX_ID_SIZE),
            _is_id_list,
            Reason.BAD_FIELD,
            "not a non-empty list of 32-byte ids",
        ),
    ]

    def ids(self) -> list[bytes]:
        """The ids asked for, in order."""
        data = self.tx_ids
        return [data[i : i + TX_ID_SIZE] for i in range(0, len(data), TX_ID_SIZE)]


@record("proposal_txs")
@dataclass(frozen=True, slots=True)
class ProposalTxs(Record):
    """The answer to GET_PROPOSAL_TXS with the same request id: every tx asked for, in the
    order asked, or none if the sender does not hold them all. The requester checks that
    each hashes to the id it asked for (p2p/proposal_txs.py)."""

    KIND: ClassVar[Kind] = Kind.PROPOSAL_TXS
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    txs: Annotated[tuple[bytes, ...], ListOf(_PAYLOAD, max_len=MAX_PROPOSAL_TXS_PER_REQUEST)]

    def check_decoded(self, where: str) -> None:
        total = sum(len(tx) for tx in self.txs)
        if total > MAX_BLOCKS_RESPONSE_BYTES:
            raise FrameError(
                PeerReason.TOO_LARGE,
                f"PROPOSAL_TXS carries {total} bytes > {MAX_BLOCKS_RESPONSE_BYTES}",
            )


def _id_list(max_ids: int) -> Checked:
    """A non-empty concatenation of at most `max_ids` 32-byte tx ids."""
    return Checked(
        Bytes(max_len=max_ids * TX_ID_SIZE),
        _is_id_list,
        Reason.BAD_FIELD,
        "not a non-empty list of 32-byte ids",
    )


def split_ids(data: bytes) -> list[bytes]:
    """The 32-byte ids of a concatenation of them, in order."""
    count, rest = divmod(len(data), TX_ID_SIZE)
    if rest:  # not whole ids (refused where decoded): cut as they come
        return [data[i : i + TX_ID_SIZE] for i in range(0, len(data), TX_ID_SIZE)]
    full, tail = divmod(count, _IDS_CHUNK)
    if not full:
        return list(_ids_layout(tail).unpack(data))
    ids: list[bytes] = []
    chunk = _ids_layout(_IDS_CHUNK)
    step = _IDS_CHUNK * TX_ID_SIZE
    for offset in range(0, full * step, step):
        ids.extend(chunk.unpack_from(data, offset))
    if tail:
        ids.extend(_ids_layout(tail).unpack_from(data, full * step))
    return ids


# Ids are split by layouts of at most this many: a layout per count up to it, so that
# what the cache holds stays small whatever lengths peers send (rev16d 2: a layout per
# count up to 4,096 ids held ~36 MB for 256 lengths).
_IDS_CHUNK: Final = 64


@lru_cache(maxsize=_IDS_CHUNK)
def _ids_layout(count: int) -> struct.Struct:
    """`count` ids back to back: one C call splits them (3-5x a slice each; wan16b)."""
    return struct.Struct(f"{TX_ID_SIZE}s" * count)


@record("tx_ids")
@dataclass(frozen=True, slots=True)
class TxIds(Record):
    """Ids (SHA-256 of each tx's bytes) of txs the sender holds and the receiver may lack:
    it relays txs it took from a peer by id, not by body (p2p/tx_fetch.py)."""

    KIND: ClassVar[Kind] = Kind.TX_IDS
    tx_ids: Annotated[bytes, _id_list(MAX_TX_IDS_PER_ANNOUNCE)]

    def ids(self) -> list[bytes]:
        """The ids announced, in order."""
        return split_ids(self.tx_ids)


@record("get_txs")
@dataclass(frozen=True, slots=True)
class GetTxs(Record):
    """Ask a peer that announced them for the txs of these ids (at most MAX_TXS_PER_FETCH)."""

    KIND: ClassVar[Kind] = Kind.GET_TXS
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    tx_ids: Annotated[bytes, _id_list(MAX_TXS_PER_FETCH)]

    def ids(self) -> list[bytes]:
        """The ids asked for, in order."""
        return split_ids(self.tx_ids)


@record("tx_bodies")
@dataclass(frozen=True, slots=True)
class TxBodies(Record):
    """The answer to GET_TXS with the same request id: the txs asked for that the sender
    still holds, in the order asked (none if it holds none: a tx committed or evicted since
    it was announced). The asker checks that each is one it asked for."""

    KIND: ClassVar[Kind] = Kind.TX_BODIES
    request_id: Annotated[int, Int(0, MAX_REQUEST_ID)]
    txs: Annotated[tuple[bytes, ...], ListOf(_PAYLOAD, max_len=MAX_TXS_PER_FETCH)]

    def check_decoded(self, where: str) -> None:
        total = sum(len(tx) for tx in self.txs)
        if total > MAX_BLOCKS_RESPONSE_BYTES:
            raise FrameError(
                PeerReason.TOO_LARGE,
                f"TX_BODIES carries {total} bytes > {MAX_BLOCKS_RESPONSE_BYTES}",
            )


def _is_frame(data: bytes) -> bool:
    return len(data) >= 2


@record("batch")
@dataclass(frozen=True, slots=True)
class Batch(Record):
    """Two or more frames sent together (`p2p.connection`): each is the canonical frame
    it would be alone, in the order the writer took it (`Lane`), and is decoded, budgeted and
    rate-limited by the reader as if it had come alone. A batch holds no batch, and only
    frames of at most MAX_BATCHED_FRAME bytes: a writer never builds anything else, so
    anything else is refused (one encoding for each sequence of frames).
    """

    KIND: ClassVar[Kind] = Kind.BATCH
    frames: Annotated[
        tuple[bytes, ...],
        ListOf(
            Checked(Bytes(max_len=MAX_BATCHED_FRAME), _is_frame, Reason.BAD_FIELD, "not a frame"),
            max_len=MAX_BATCH_FRAMES,
        ),
    ]

    def check_decoded(self, where: str) -> None:
        if len(self.frames) < 2:
            raise FrameError(PeerReason.BAD_FIELD, f"{where}: a batch of {len(self.frames)}")
        total = 0
        for frame in self.frames:
            # Every frame is a msgpack array whose second byte is its kind (kinds < 128).
            if frame[1] == Kind.BATCH:
                raise FrameError(PeerReason.BAD_FIELD, f"{where}: a batch inside a batch")
            total += len(frame)
        if total > MAX_BATCH_BYTES:
            raise FrameError(
                PeerReason.TOO_LARGE, f"{where}: {total} bytes of frames > {MAX_BATCH_BYTES}"
            )


def batch_frame(frames: list[bytes]) -> bytes:
    """The BATCH frame of two or more frames (each at most MAX_BATCHED_FRAME bytes)."""
    return pack([int(Kind.BATCH), frames])


def frames_in(message: Message) -> list[Message]:
    """The frames a websocket message carried: `message` itself, or a BATCH's frames
    decoded in order (raising FrameError for the first that does not decode); for the
    few places that read a link outside its reader (the answer-only path, tests)."""
    if isinstance(message, Batch):
        return [decode(frame) for frame in message.frames]
    return [message]


def frame_kind(frame: bytes) -> int:
    """The kind byte of a frame (a msgpack array of at most 15 fields whose first is a
    positive fixint), or 0 if it is not shaped like one; a peek, not a check."""
    if len(frame) < 2 or not 0x91 <= frame[0] <= 0x9F or frame[1] > 0x7F:
        return 0
    return frame[1]


def bits_to_bytes(bits: int) -> bytes:
    """The canonical wire form of a bit set: little-endian, no trailing zero byte."""
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


Message = (
    Hello
    | Auth
    | Status
    | Batch
    | Gossip
    | GetBlocks
    | Blocks
    | GetPeers
    | Peers
    | RoundState
    | GetSnapshots
    | Snapshots
    | GetSnapshotPart
    | SnapshotPart
    | GetProposalTxs
    | ProposalTxs
    | TxIds
    | GetTxs
    | TxBodies
)


def kind_of(message: Message) -> Kind:
    """The frame kind of `message`."""
    return message.kind if isinstance(message, Gossip) else message.KIND


def encode(message: Message) -> bytes:
    """The canonical frame of `message`."""
    return pack([int(kind_of(message)), *message.to_fields()])


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
    if kind in GOSSIP_KINDS:
        _expect(fields, 1, kind)
        return Gossip(kind, _PAYLOAD.decode(fields[0], "gossip.payload"))
    if kind not in _RECORDS:  # pragma: no cover - every Kind has a decoder (a test checks)
        raise FrameError(PeerReason.UNKNOWN_KIND, f"no decoder for kind {kind}")
    cls = _RECORDS[kind]
    _expect(fields, len(cls.CODEC.fields), kind)
    message: Message = cls.from_fields(fields)
    return message


def _expect(fields: list[Any], count: int, kind: Kind) -> None:
    if len(fields) != count:
        raise FrameError(
            PeerReason.BAD_FIELD, f"{kind.name}: expected {count} fields, got {len(fields)}"
        )


# The frame kinds that are declared records: the fields after the kind are the record's.
_RECORD_CLASSES: Final = (
    Hello,
    Auth,
    Status,
    Batch,
    GetBlocks,
    Blocks,
    GetPeers,
    Peers,
    RoundState,
    GetSnapshots,
    Snapshots,
    GetSnapshotPart,
    SnapshotPart,
    GetProposalTxs,
    ProposalTxs,
    TxIds,
    GetTxs,
    TxBodies,
)
_RECORDS: Final[dict[Kind, type[Any]]] = {cls.KIND: cls for cls in _RECORD_CLASSES}


# A DNS name: dot-separated labels of letters, digits and inner hyphens.
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME: Final = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def _numeric_ipv4(host: str) -> str | None:
    """The dotted-quad IPv4 a numeric host spells, or None for a host name.

    The resolver (inet_aton) and aiohttp read `0x7f.1`, `127.1`, `0177.0.0.1` and
    `2130706433` as 127.0.0.1: taken as names, one host would be a group of its own
    under every spelling (rev25p2 3). A host whose last label is a number (decimal, or
    0x and hex: the WHATWG URL rule) is an IPv4 address or nothing; ValueError if its
    parts are no IPv4 address, rather than leave it to a resolver to guess."""
    last = host.rsplit(".", 1)[-1]
    if not (last.isdigit() or last[:2].lower() == "0x"):
        return None
    try:  # the resolver's own reading, not a copy of it
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        raise ValueError(f"{host!r} is neither a host name nor an IPv4 address") from None


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` as an IP address, or None for a host name. An IPv4-mapped IPv6 address
    (`::ffff:a.b.c.d`, any spelling) is its IPv4: a dual-stack socket names an IPv4 peer
    so, and a dial of it reaches the IPv4 host, so one host is one book entry, one ban
    key (`peerbook.ip_ban_key`) and one network group whichever family spells it."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_address(text: str) -> tuple[str, int]:
    """Split "host:port" / "[ipv6]:port" into (host, port); raise ValueError if invalid."""
    if len(text) > MAX_ADDRESS_LEN:
        raise ValueError("address too long")
    if text.startswith("["):
        inner, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [ipv6]:port")
        if "%" in inner:
            # A zone names one of the writer's own links (`fe80::1%eth0`): no address
            # of the network, and any text (a second spelling of one address each, and
            # control characters in our logs) to whoever reads it (rev26h).
            raise ValueError(f"{text!r} has an IPv6 zone (%...), which no peer can dial")
        ipaddress.IPv6Address(inner)  # raise ValueError naming what is wrong
        host = str(parse_ip(inner))
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not _HOSTNAME.match(host):
            raise ValueError(f"{text!r} is not host:port")
        # DNS names are case-blind (RFC 4343): one name is one spelling, lower case.
        host = _numeric_ipv4(host) or host.lower()
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
        raise ValueError(f"{text!r} has no valid port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside [1, 65535]")
    return host, port


def canonical_address(text: str) -> str:
    """The one spelling of the "host:port" `text` (what the wire carries, what the peer
    book keys on): a numeric IPv4 host as its dotted quad, an IPv6 one compressed and in
    brackets, an IPv4-mapped one as its IPv4, a name in lower case; raise ValueError if
    invalid."""
    return format_address(*parse_address(text))


def parse_peer_address(text: str) -> tuple[bytes | None, str]:
    """Split "node_key_hex@host:port" (or plain "host:port") into (the node key the
    address must answer with, or None; the "host:port"); raise ValueError if invalid.

    CometBFT's `id@host:port`: a node dialed by its key refuses whoever else answers at
    the address (a squatter, or a man in the middle on the way to a seed).
    """
    key_hex, sep, address = text.rpartition("@")
    parse_address(address)
    if not sep:
        return None, address
    try:
        node_key = bytes.fromhex(key_hex)
    except ValueError:
        raise ValueError(f"{key_hex!r} is not a node key in hex") from None
    if len(node_key) != PUBKEY_SIZE or not is_valid_pubkey(node_key):
        raise ValueError(f"{key_hex!r} is not a node key (33-byte compressed secp256k1)")
    return node_key, address


def format_address(host: str, port: int) -> str:
    """The canonical "host:port" text of an address: IPv6 compressed, in brackets; an
    IPv4-mapped one as its IPv4 (`parse_ip`); a name in lower case."""
    ip = parse_ip(host)
    if ip is None:
        return f"{host.lower()}:{port}"
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
