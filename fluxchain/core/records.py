"""State records of the core domains (accounts, nodes, chain meta, queues) and their keys.

Table prefixes (one byte each; docs/state.md lists every table):

    a  account      address(20)            -> Account
    n  node         node_id(20)            -> Node
    k  node key     node_pubkey(33)        -> KeyRecord: every key a node holds or held
                                              (kept evidence_max_age after it retires),
                                              and the block that slashed it
    m  meta         (empty)                -> Meta
    v  validators   (empty)                -> ValidatorSet for the next block
    r  ring         (empty)                -> Ring of this epoch's uptime checkers
    u  uptime       node_id(20)            -> UptimeTally of this epoch
    w  watched      (empty)                -> Watched: the DOWN targets of this epoch's ring
    y  up pending   node_id(20)            -> UpPending: the up reporters whose forfeits
                                              wait for the next epoch's outcome
    q  deque head   name                   -> DequeHead
    Q  deque item   name + index(8)        -> Ref
    e  evidence     evidence id(32)        -> Ref(height)
    H  val. history first height(8)        -> ValidatorSet that signs from that height
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Final

from fluxchain.core.crypto import HASH_SIZE, Address, Hash, PubKey
from fluxchain.core.encoding import (
    Amount,
    Bool,
    Bytes,
    Int,
    ListOf,
    Maybe,
    Record,
    Str,
    Uint64,
    record,
)
from fluxchain.core.params import MAX_CHECKERS, Tier
from fluxchain.core.tx import (
    MAX_ENDPOINT,
    MAX_VERSION_STR,
    NODE_ID_SIZE,
    Benchmark,
    Hardware,
    NodeId,
)
from fluxchain.core.vrf import VRF_KEY_SIZE

ACCOUNT: Final = b"a"
NODE: Final = b"n"
NODE_KEY: Final = b"k"
META: Final = b"m"
VALIDATORS: Final = b"v"
RING: Final = b"r"
UPTIME: Final = b"u"
WATCHED: Final = b"w"
UP_PENDING: Final = b"y"
DEQUE_HEAD: Final = b"q"
DEQUE_ITEM: Final = b"Q"
EVIDENCE: Final = b"e"
VALIDATOR_HISTORY: Final = b"H"

MAX_RING: Final = 1_000_000


@record("account")
@dataclass(frozen=True, slots=True)
class Account(Record):
    balance: Amount
    nonce: Uint64


EMPTY_ACCOUNT: Final = Account(0, 0)


class NodeStatus(IntEnum):
    """Life of a node: only CONFIRMED nodes are paid, host apps, check others, validate
    (a node marked DOWN during an epoch still checks its targets of that epoch: on_duty)."""

    REGISTERED = 1  # collateral locked, no accepted benchmark yet
    CONFIRMED = 2
    DOWN = 3  # a quorum of its checkers reported it down
    EXPIRED = 4  # missed a confirm window
    JAILED = 5  # slashed for equivocation; may confirm again after jailed_until
    UNBONDING = 6  # unregistered; collateral returns at unbond_height


@record("node")
@dataclass(frozen=True, slots=True)
class Node(Record):
    node_id: NodeId
    owner: Address  # address that locked the collateral and receives payouts
    node_key: PubKey  # hot key: signs confirms, attestations, votes
    tier: Tier
    status: NodeStatus
    endpoint: Annotated[str, Str(MAX_ENDPOINT)]
    country: Annotated[str, Str(2)]
    continent: Annotated[str, Str(2)]
    hardware: Hardware  # declared at registration
    collateral: Amount
    registered_height: Uint64
    status_height: Uint64  # when `status` last changed
    last_confirm_height: Uint64  # 0: never confirmed
    benchmark: Annotated[Benchmark | None, Maybe(Benchmark)]
    version: Annotated[str, Str(MAX_VERSION_STR)]
    jailed_until: Uint64
    unbond_height: Uint64  # when collateral returns (UNBONDING only)
    queue_ticket: Uint64  # index of its live entry in its tier's payment queue; 0: none
    last_attest_epoch: Uint64  # last epoch it sent UPTIME_ATTEST for, plus one; 0: never
    paid_total: Amount
    # Height of its last location change, plus one; 0: never. One change per confirm
    # window (each re-places everything it hosts: docs/economics.md).
    relocated_height: Uint64
    vrf_key: Annotated[bytes, Bytes(VRF_KEY_SIZE)]  # BLS key of its block reveals (core/vrf.py)
    # Its position in placement and uptime draws: sha256(tag || a mix nobody knew when the
    # node was registered || node_id), assigned two epochs after registration (core/epochs.py).
    # b"": not assigned yet; until then the node is neither placed nor in the ring.
    rank_key: Annotated[bytes, Bytes(HASH_SIZE, or_empty=True)]


@record("ref")
@dataclass(frozen=True, slots=True)
class Ref(Record):
    """A pointer to another record (or a bare marker carrying a number or id)."""

    target: Annotated[bytes, Bytes(max_len=64)]


@record("key_record")
@dataclass(frozen=True, slots=True)
class KeyRecord(Record):
    """Which node a node key belongs or belonged to, and when.

    A key serves one node, once: it is the node's key from `from_height` (the block that
    named it) until `retired_height` (the block that rotated it away or released the
    node; 0 while current). The record outlives the key's service by the evidence age,
    so that votes it signed can still be pinned on the node, and no other node can take
    the key meanwhile.

    `tombstone_height` is the block that slashed the key for equivocation (0: never).
    Every vote it signed before that block is covered by that one punishment, and the key
    cannot confirm a node again until such votes are too old to be evidence
    (`tombstone_height + evidence_max_age`).
    """

    node_id: NodeId
    from_height: Uint64
    retired_height: Uint64  # 0: the node's current key
    tombstone_height: Uint64  # 0: never slashed


@record("meta")
@dataclass(frozen=True, slots=True)
class Meta(Record):
    """Chain-wide counters that change every block."""

    height: Uint64  # last applied block
    epoch: Uint64
    epoch_seed: Hash  # this epoch's: the mix as it stood at the end of epoch - 2
    minted: Amount  # total subsidy paid since genesis
    burned: Amount  # total destroyed: slashings, base fees, deposits, re-placement charges
    # Every block folds its proposer's reveal in: mix = sha256(mix || sha256(reveal)).
    mix: Hash
    next_seed: Hash  # the next epoch's seed: the mix at the end of the previous epoch


@record("deque")
@dataclass(frozen=True, slots=True)
class DequeHead(Record):
    """Bounds of an append-only queue whose items live under their own keys."""

    head: Uint64  # index of the first live item
    tail: Uint64  # index the next pushed item gets


@record("ring")
@dataclass(frozen=True, slots=True)
class Ring(Record):
    """This epoch's uptime ring: confirmed nodes, and the watched DOWN ones (`Watched`), in
    seed-shuffled order.

    The checkers of the node at position i are the first `checkers_per_node` nodes after it
    that its owner does not run and that are not watched (core/uptime.py).
    """

    epoch: Uint64
    nodes: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_RING)]


@record("watched")
@dataclass(frozen=True, slots=True)
class Watched(Record):
    """The nodes of this epoch's ring that are targets only, never checkers: nodes marked
    DOWN in the epoch before, whose "up" reporters wait for this epoch's outcome
    (core/uptime.py). In ring order."""

    epoch: Uint64
    nodes: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_RING)]


@record("up_pending")
@dataclass(frozen=True, slots=True)
class UpPending(Record):
    """The checkers that said "up" in `epoch` about a node a down quorum marked DOWN: their
    forfeits wait for the next epoch's outcome on it (core/uptime.py). At most the node's
    checkers (`MAX_CHECKERS`), for one epoch. `height`: the epoch start that put them on
    hold, whose statuses judge them when the wait ends. `attest_due`: whether the node had
    targets in `epoch` (a node with none could not attest, and is not held to it)."""

    epoch: Uint64
    up: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_CHECKERS)]
    height: Uint64
    attest_due: Annotated[bool, Bool()]


@record("uptime")
@dataclass(frozen=True, slots=True)
class UptimeTally(Record):
    """Reports received about one node in one epoch: who said up, who said down, and how
    many checkers the node had when the first report came (the quorum's base)."""

    epoch: Uint64
    checkers: Annotated[int, Int(hi=MAX_RING)]
    up: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_RING)]
    down: Annotated[tuple[bytes, ...], ListOf(Bytes(NODE_ID_SIZE), max_len=MAX_RING)]


def account_key(address: bytes) -> bytes:
    return ACCOUNT + address


def node_key(node_id: bytes) -> bytes:
    return NODE + node_id


def node_by_key_key(pubkey: bytes) -> bytes:
    return NODE_KEY + pubkey


def validator_history_key(first_height: int) -> bytes:
    return VALIDATOR_HISTORY + first_height.to_bytes(8, "big")
