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

from dataclasses import dataclass, field
from typing import Any, Final, Self

from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, sha256
from fluxchain.core.encoding import U64, as_bytes, as_chain_id, as_int, as_list, pack, unpack
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.merkle import merkle_root
from fluxchain.core.votes import MAX_ROUND, Commit
from fluxchain.core.vrf import VRF_SIGNATURE_SIZE

BLOCK_VERSION: Final = 1
NO_COMMIT_HASH: Final = sha256(b"")  # last_commit_hash of block 1


@dataclass(frozen=True, slots=True)
class Header:
    chain_id: str
    height: int
    round: int
    time_ms: int
    prev_hash: bytes
    proposer: bytes
    reveal: bytes
    tx_root: bytes
    state_root: bytes
    events_root: bytes
    validators_hash: bytes
    last_commit_hash: bytes
    version: int = BLOCK_VERSION

    def to_fields(self) -> list[Any]:
        return [
            self.version,
            self.chain_id,
            self.height,
            self.round,
            self.time_ms,
            self.prev_hash,
            self.proposer,
            self.reveal,
            self.tx_root,
            self.state_root,
            self.events_root,
            self.validators_hash,
            self.last_commit_hash,
        ]

    @classmethod
    def from_fields(cls, f: Any) -> Self:
        (
            version,
            chain_id,
            height,
            round_,
            time_ms,
            prev_hash,
            proposer,
            reveal,
            tx_root,
            state_root,
            events_root,
            validators_hash,
            last_commit_hash,
        ) = as_list(f, "header", length=13)
        if as_int(version, "header.version", hi=255) != BLOCK_VERSION:
            raise DecodeError(Reason.UNKNOWN_VERSION, f"block version {version} is not supported")
        return cls(
            as_chain_id(chain_id, "header.chain_id"),
            as_int(height, "header.height", lo=1, hi=U64),
            as_int(round_, "header.round", hi=MAX_ROUND),
            as_int(time_ms, "header.time_ms", hi=U64),
            as_bytes(prev_hash, "header.prev_hash", size=HASH_SIZE),
            as_bytes(proposer, "header.proposer", size=PUBKEY_SIZE),
            as_bytes(reveal, "header.reveal", size=VRF_SIGNATURE_SIZE),
            as_bytes(tx_root, "header.tx_root", size=HASH_SIZE),
            as_bytes(state_root, "header.state_root", size=HASH_SIZE),
            as_bytes(events_root, "header.events_root", size=HASH_SIZE),
            as_bytes(validators_hash, "header.validators_hash", size=HASH_SIZE),
            as_bytes(last_commit_hash, "header.last_commit_hash", size=HASH_SIZE),
        )

    def hash(self) -> bytes:
        return sha256(pack(self.to_fields()))


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]  # canonical tx encodings, decoded by the importer
    last_commit: Commit | None
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        return self.header.hash()

    def to_fields(self) -> list[Any]:
        commit = [] if self.last_commit is None else self.last_commit.to_fields()
        return [self.header.to_fields(), list(self.txs), commit]

    def encode(self) -> bytes:
        return self.raw or pack(self.to_fields())

    def body_mismatch(self) -> str | None:
        """Why this block's txs or parent commit are not the ones its header names, if so.

        The header alone is signed (by the proposal, then the commit), so a relay or a
        sync peer can keep it and swap the body: checked before anything executes."""
        if merkle_root([sha256(raw) for raw in self.txs]) != self.header.tx_root:
            return "the txs are not the ones the header's tx_root names"
        commit_hash = NO_COMMIT_HASH if self.last_commit is None else self.last_commit.hash()
        if commit_hash != self.header.last_commit_hash:
            return "the parent commit is not the one the header's last_commit_hash names"
        return None

    @classmethod
    def decode(cls, raw: bytes, max_bytes: int, max_txs: int) -> Self:
        """Parse a block's canonical bytes (txs stay encoded: the importer checks them)."""
        header, txs, commit = as_list(unpack(raw, max_bytes=max_bytes), "block", length=3)
        tx_list = as_list(txs, "block.txs", max_len=max_txs)
        for i, tx in enumerate(tx_list):
            if type(tx) is not bytes:
                as_bytes(tx, f"block.txs[{i}]")  # raises, naming the item
        return cls(
            Header.from_fields(header),
            tuple(tx_list),
            Commit.from_fields(commit) if commit != [] else None,
            raw,
        )
