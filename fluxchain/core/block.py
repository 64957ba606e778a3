"""Block headers and blocks.

Header (canonical array, 13 fields):
    [version, chain_id, height, round, time_ms, prev_hash, proposer, reveal, tx_root,
     state_root, events_root, validators_hash, last_commit_hash]
Block: [header, txs (each the tx's canonical bytes), last_commit (the parent's Commit,
or [] at height 1)]. The block hash is SHA-256 of the header's encoding; the roots bind
everything else. state_root and events_root are those *after* executing this block.
`round` is the consensus round the block was built for: its proposer is the proposer of
(height, round), which is what lets every node check the header's `proposer` (a block
re-proposed in a later round keeps its round, its proposer and its hash).
`reveal` is the proposer's VRF signature over the height (core/vrf.py): one valid value
per (proposer, height), folded into the chain's randomness (core/epochs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Final, Self

from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, SIGNATURE_SIZE, Hash, PubKey, sha256
from fluxchain.core.encoding import (
    MAX_ARRAY,
    OFF_WIRE,
    U64,
    Bytes,
    ChainId,
    ListOf,
    Maybe,
    Record,
    Uint64,
    as_list,
    pack,
    record,
    unpack,
)
from fluxchain.core.merkle import merkle_root
from fluxchain.core.votes import MAX_ROUND, BlockHeight, Commit, Round
from fluxchain.core.vrf import VRF_SIGNATURE_SIZE

BLOCK_VERSION: Final = 1
NO_COMMIT_HASH: Final = sha256(b"")  # last_commit_hash of block 1
# What an encoded block holds besides its txs' own bytes and its parent commit, at most:
# the header (a chain id of up to 64 bytes, six hashes, a 33-byte key, a VRF reveal, three
# integers, each with its msgpack prefix: 428 bytes at most) and the block's and tx list's
# own prefixes.
BLOCK_FRAMING_BYTES: Final = 512


@lru_cache(maxsize=8)
def fixed_bytes(max_validators: int) -> int:
    """The most bytes of a block that no tx may use: its framing (BLOCK_FRAMING_BYTES) and
    a parent commit signed by `max_validators` validators, every field at its longest.
    What an empty block takes at most."""
    signature = (bytes(PUBKEY_SIZE), bytes(SIGNATURE_SIZE))
    commit = Commit(U64, MAX_ROUND, bytes(HASH_SIZE), (signature,) * max_validators)
    return BLOCK_FRAMING_BYTES + len(pack(commit.to_fields()))


@record("header", version=BLOCK_VERSION)
@dataclass(frozen=True, slots=True)
class Header(Record):
    """A block's header; on the wire its fields follow the block version (BLOCK_VERSION)."""

    chain_id: Annotated[str, ChainId()]
    height: BlockHeight
    round: Round
    time_ms: Uint64
    prev_hash: Hash
    proposer: PubKey
    reveal: Annotated[bytes, Bytes(VRF_SIGNATURE_SIZE)]
    tx_root: Hash
    state_root: Hash
    events_root: Hash
    validators_hash: Hash
    last_commit_hash: Hash

    def hash(self) -> bytes:
        return sha256(pack(self.to_fields()))


@record("block")
@dataclass(frozen=True, slots=True)
class Block(Record):
    header: Header
    # Canonical tx encodings, decoded by the importer. The params' max_block_txs is the
    # live bound (`decode`); this one only caps what any decoder looks at.
    txs: Annotated[tuple[bytes, ...], ListOf(Bytes(), max_len=MAX_ARRAY)]
    last_commit: Annotated[Commit | None, Maybe(Commit)]  # None ([]) at height 1
    raw: bytes = field(default=b"", repr=False, compare=False, metadata=OFF_WIRE)

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        return self.header.hash()

    def encode(self) -> bytes:
        return self.raw or pack(self.to_fields())

    def tx_ids(self) -> list[bytes]:
        """The SHA-256 ids of the block's txs, in block order."""
        return [sha256(raw) for raw in self.txs]

    def body_mismatch(self, tx_ids: Sequence[bytes] | None = None) -> str | None:
        """Why this block's txs or parent commit are not the ones its header names, if so.
        `tx_ids`: the txs' `tx_ids()`, if the caller computed them already.

        The header alone is signed (by the proposal, then the commit), so a relay or a
        sync peer can keep it and swap the body: checked before anything executes."""
        ids = self.tx_ids() if tx_ids is None else tx_ids
        if merkle_root(ids) != self.header.tx_root:
            return "the txs are not the ones the header's tx_root names"
        commit_hash = NO_COMMIT_HASH if self.last_commit is None else self.last_commit.hash()
        if commit_hash != self.header.last_commit_hash:
            return "the parent commit is not the one the header's last_commit_hash names"
        return None

    @classmethod
    def decode(cls, raw: bytes, max_bytes: int, max_txs: int) -> Self:
        """Parse a block's canonical bytes (txs stay encoded: the importer checks them)."""
        fields = unpack(raw, max_bytes=max_bytes)
        if type(fields) is list and len(fields) == 3:
            as_list(fields[1], "block.txs", max_len=max_txs)  # the live bound, before any tx
        return cls.from_fields(fields, "block", raw)
