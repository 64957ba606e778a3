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
    q  deque head   name                   -> DequeHead
    Q  deque item   name + index(8)        -> Ref
    e  evidence     evidence id(32)        -> Ref(height)
    H  val. history first height(8)        -> ValidatorSet that signs from that height
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, Self

from fluxchain.core.crypto import ADDRESS_SIZE, HASH_SIZE, PUBKEY_SIZE
from fluxchain.core.encoding import U64, as_bytes, as_int, as_list, as_str
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.frozen import quick_init
from fluxchain.core.params import Tier
from fluxchain.core.tx import MAX_ENDPOINT, MAX_VERSION_STR, NODE_ID_SIZE, Benchmark, Hardware
from fluxchain.core.vrf import VRF_KEY_SIZE

ACCOUNT: Final = b"a"
NODE: Final = b"n"
NODE_KEY: Final = b"k"
META: Final = b"m"
VALIDATORS: Final = b"v"
RING: Final = b"r"
UPTIME: Final = b"u"
DEQUE_HEAD: Final = b"q"
DEQUE_ITEM: Final = b"Q"
EVIDENCE: Final = b"e"
VALIDATOR_HISTORY: Final = b"H"

MAX_RING: Final = 1_000_000


@quick_init
@dataclass(frozen=True, slots=True)
class Account:
    balance: int
    nonce: int

    def to_fields(self) -> list[Any]:
        return [self.balance, self.nonce]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        balance, nonce = as_list(f, "account", length=2)
        return cls(as_int(balance, "account.balance"), as_int(nonce, "account.nonce", hi=U64))


EMPTY_ACCOUNT: Final = Account(0, 0)


class NodeStatus(IntEnum):
    """Life of a node: only CONFIRMED nodes are paid, host apps, check others, validate."""

    REGISTERED = 1  # collateral locked, no accepted benchmark yet
    CONFIRMED = 2
    DOWN = 3  # a quorum of its checkers reported it down
    EXPIRED = 4  # missed a confirm window
    JAILED = 5  # slashed for equivocation; may confirm again after jailed_until
    UNBONDING = 6  # unregistered; collateral returns at unbond_height


@dataclass(frozen=True, slots=True)
class Node:
    node_id: bytes
    owner: bytes  # address that locked the collateral and receives payouts
    node_key: bytes  # hot key: signs confirms, attestations, votes
    tier: Tier
    status: NodeStatus
    endpoint: str
    country: str
    continent: str
    hardware: Hardware  # declared at registration
    collateral: int
    registered_height: int
    status_height: int  # when `status` last changed
    last_confirm_height: int  # 0: never confirmed
    benchmark: Benchmark | None
    version: str
    jailed_until: int
    unbond_height: int  # when collateral returns (UNBONDING only)
    queue_ticket: int  # index of its live entry in its tier's payment queue; 0: none
    last_attest_epoch: int  # last epoch it sent UPTIME_ATTEST for, plus one; 0: never
    paid_total: int
    # Height of its last location change, plus one; 0: never. One change per confirm
    # window (each re-places everything it hosts: docs/economics.md).
    relocated_height: int
    vrf_key: bytes  # BLS key of its block reveals (core/vrf.py), proved when named
    # Its position in placement and uptime draws: sha256(tag || a mix nobody knew when the
    # node was registered || node_id), assigned two epochs after registration (core/epochs.py).
    # b"": not assigned yet; until then the node is neither placed nor in the ring.
    rank_key: bytes

    def to_fields(self) -> list[Any]:
        return [
            self.node_id,
            self.owner,
            self.node_key,
            int(self.tier),
            int(self.status),
            self.endpoint,
            self.country,
            self.continent,
            self.hardware.to_fields(),
            self.collateral,
            self.registered_height,
            self.status_height,
            self.last_confirm_height,
            [] if self.benchmark is None else self.benchmark.to_fields(),
            self.version,
            self.jailed_until,
            self.unbond_height,
            self.queue_ticket,
            self.last_attest_epoch,
            self.paid_total,
            self.relocated_height,
            self.vrf_key,
            self.rank_key,
        ]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        (
            node_id,
            owner,
            node_key,
            tier,
            status,
            endpoint,
            country,
            continent,
            hardware,
            collateral,
            registered,
            status_height,
            last_confirm,
            benchmark,
            version,
            jailed_until,
            unbond_height,
            queue_ticket,
            last_attest,
            paid_total,
            relocated,
            vrf_key,
            rank_key,
        ) = as_list(f, "node", length=23)
        rank_key = as_bytes(rank_key, "node.rank_key", max_len=HASH_SIZE)
        if len(rank_key) not in (0, HASH_SIZE):
            raise DecodeError(Reason.BAD_FIELD, "node.rank_key: empty or 32 bytes")
        return cls(
            as_bytes(node_id, "node.node_id", size=NODE_ID_SIZE),
            as_bytes(owner, "node.owner", size=ADDRESS_SIZE),
            as_bytes(node_key, "node.node_key", size=PUBKEY_SIZE),
            Tier(as_int(tier, "node.tier", lo=1, hi=3)),
            NodeStatus(as_int(status, "node.status", lo=1, hi=6)),
            as_str(endpoint, "node.endpoint", max_len=MAX_ENDPOINT),
            as_str(country, "node.country", max_len=2),
            as_str(continent, "node.continent", max_len=2),
            Hardware.from_fields(hardware, "node.hardware"),
            as_int(collateral, "node.collateral"),
            as_int(registered, "node.registered_height", hi=U64),
            as_int(status_height, "node.status_height", hi=U64),
            as_int(last_confirm, "node.last_confirm_height", hi=U64),
            Benchmark.from_fields(benchmark, "node.benchmark") if benchmark else None,
            as_str(version, "node.version", max_len=MAX_VERSION_STR),
            as_int(jailed_until, "node.jailed_until", hi=U64),
            as_int(unbond_height, "node.unbond_height", hi=U64),
            as_int(queue_ticket, "node.queue_ticket", hi=U64),
            as_int(last_attest, "node.last_attest_epoch", hi=U64),
            as_int(paid_total, "node.paid_total"),
            as_int(relocated, "node.relocated_height", hi=U64),
            as_bytes(vrf_key, "node.vrf_key", size=VRF_KEY_SIZE),
            rank_key,
        )


@dataclass(frozen=True, slots=True)
class Ref:
    """A pointer to another record (or a bare marker carrying a number or id)."""

    target: bytes

    def to_fields(self) -> list[Any]:
        return [self.target]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        (target,) = as_list(f, "ref", length=1)
        return cls(as_bytes(target, "ref.target", max_len=64))


@dataclass(frozen=True, slots=True)
class KeyRecord:
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

    node_id: bytes
    from_height: int
    retired_height: int  # 0: the node's current key
    tombstone_height: int  # 0: never slashed

    def to_fields(self) -> list[Any]:
        return [self.node_id, self.from_height, self.retired_height, self.tombstone_height]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        node_id, from_height, retired, tombstone = as_list(f, "key_record", length=4)
        return cls(
            as_bytes(node_id, "key_record.node_id", size=NODE_ID_SIZE),
            as_int(from_height, "key_record.from_height", hi=U64),
            as_int(retired, "key_record.retired_height", hi=U64),
            as_int(tombstone, "key_record.tombstone_height", hi=U64),
        )


@dataclass(frozen=True, slots=True)
class Meta:
    """Chain-wide counters that change every block."""

    height: int  # last applied block
    epoch: int
    epoch_seed: bytes  # this epoch's: the mix as it stood at the end of epoch - 2
    minted: int  # total subsidy paid since genesis
    burned: int  # total destroyed: slashings, base fees, deposits, re-placement charges
    # Every block folds its proposer's reveal in: mix = sha256(mix || sha256(reveal)).
    mix: bytes
    next_seed: bytes  # the next epoch's seed: the mix at the end of the previous epoch

    def to_fields(self) -> list[Any]:
        return [
            self.height,
            self.epoch,
            self.epoch_seed,
            self.minted,
            self.burned,
            self.mix,
            self.next_seed,
        ]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        height, epoch, seed, minted, burned, mix, next_seed = as_list(f, "meta", length=7)
        return cls(
            as_int(height, "meta.height", hi=U64),
            as_int(epoch, "meta.epoch", hi=U64),
            as_bytes(seed, "meta.epoch_seed", size=HASH_SIZE),
            as_int(minted, "meta.minted"),
            as_int(burned, "meta.burned"),
            as_bytes(mix, "meta.mix", size=HASH_SIZE),
            as_bytes(next_seed, "meta.next_seed", size=HASH_SIZE),
        )


@dataclass(frozen=True, slots=True)
class DequeHead:
    """Bounds of an append-only queue whose items live under their own keys."""

    head: int  # index of the first live item
    tail: int  # index the next pushed item gets

    def to_fields(self) -> list[Any]:
        return [self.head, self.tail]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        head, tail = as_list(f, "deque", length=2)
        return cls(as_int(head, "deque.head", hi=U64), as_int(tail, "deque.tail", hi=U64))


@dataclass(frozen=True, slots=True)
class Ring:
    """This epoch's uptime ring: confirmed nodes in seed-shuffled order.

    The checkers of the node at position i are the first `checkers_per_node` nodes after it
    of distinct operators (owners), other than its own (core/uptime.py).
    """

    epoch: int
    nodes: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [self.epoch, list(self.nodes)]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        epoch, nodes = as_list(f, "ring", length=2)
        return cls(
            as_int(epoch, "ring.epoch", hi=U64),
            tuple(
                as_bytes(n, "ring.nodes[]", size=NODE_ID_SIZE)
                for n in as_list(nodes, "ring.nodes", max_len=MAX_RING)
            ),
        )


@dataclass(frozen=True, slots=True)
class UptimeTally:
    """Reports received about one node in one epoch: who said up, who said down, and how
    many checkers the node had when the first report came (the quorum's base)."""

    epoch: int
    checkers: int
    up: tuple[bytes, ...]
    down: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [self.epoch, self.checkers, list(self.up), list(self.down)]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        epoch, checkers, up, down = as_list(f, "uptime", length=4)
        return cls(
            as_int(epoch, "uptime.epoch", hi=U64),
            as_int(checkers, "uptime.checkers", hi=MAX_RING),
            tuple(
                as_bytes(n, "uptime.up[]", size=NODE_ID_SIZE)
                for n in as_list(up, "uptime.up", max_len=MAX_RING)
            ),
            tuple(
                as_bytes(n, "uptime.down[]", size=NODE_ID_SIZE)
                for n in as_list(down, "uptime.down", max_len=MAX_RING)
            ),
        )


def account_key(address: bytes) -> bytes:
    return ACCOUNT + address


def node_key(node_id: bytes) -> bytes:
    return NODE + node_id


def node_by_key_key(pubkey: bytes) -> bytes:
    return NODE_KEY + pubkey


def validator_history_key(first_height: int) -> bytes:
    return VALIDATOR_HISTORY + first_height.to_bytes(8, "big")
