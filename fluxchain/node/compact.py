"""Compact proposals: a proposal's block sent as its header and tx ids (issue 22).

A full PROPOSAL carries every tx of its block, though nearly every receiver already holds
nearly every one of them: tx gossip brought each tx to every node a block interval
earlier. So each tx crossed every link twice and was decoded twice by every node. A
COMPACT_PROPOSAL carries the signed proposal, the block's header, its parent commit and
the 32-byte ids (SHA-256) of its txs in block order, as BIP152's compact blocks do for
Bitcoin. A receiver takes each tx from what it admitted (or holds in its mempool), asks
the peer that sent the compact proposal for the rest (GET_PROPOSAL_TXS,
p2p/proposal_txs.py), and rebuilds the block's canonical bytes: exactly the bytes the
proposer signed the hash of, so the consensus engine sees what a full PROPOSAL gives it.

Why it cannot be made to accept another block than the proposer's: the proposal's
signature binds the block hash, the hash is the header's, the header's tx_root is the
Merkle root of the tx ids and its last_commit_hash the hash of the parent commit. A
compact proposal whose ids or commit do not match its header is refused here before any
tx is looked up (the sender is punished: an honest relay rebuilt and checked the block
before relaying it); the rebuilt block is checked against the header again before it is
handed on. Full ids, not BIP152's 6-byte short ids: a short id saves ~26 bytes a tx
(2.5 % of a 1 KB tx) and brings collisions an attacker can grind; not worth it here.

Pure: no I/O, no clock. The node (fluxchain/node/node.py) does the lookups and requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from consensus.messages import Proposal
from fluxchain.core.block import NO_COMMIT_HASH, Block, Header
from fluxchain.core.crypto import HASH_SIZE, sha256
from fluxchain.core.encoding import MAX_ARRAY, Bytes, Checked, Maybe, Record, pack, record, unpack
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.merkle import merkle_root
from fluxchain.core.votes import Commit
from fluxchain.node.driver import check_proposal_round

TX_ID_SIZE: Final = HASH_SIZE
# Room for the proposal, the header and a parent commit of the largest validator set
# around the ids: the ids are the only part that grows with the block.
_FRAMING_BYTES: Final = 256 * 1024


def _is_id_list(data: bytes) -> bool:
    return len(data) % TX_ID_SIZE == 0


@record("compact_proposal")
@dataclass(frozen=True, slots=True)
class CompactProposal(Record):
    """A signed proposal with its block's header, parent commit and tx ids (no txs)."""

    proposal: Proposal
    header: Header
    # The 32-byte ids of the block's txs, concatenated in block order (empty: no txs).
    tx_ids: Annotated[
        bytes,
        Checked(
            Bytes(max_len=MAX_ARRAY * TX_ID_SIZE),
            _is_id_list,
            Reason.BAD_FIELD,
            "not a list of 32-byte ids",
        ),
    ]
    last_commit: Annotated[Commit | None, Maybe(Commit)]  # None ([]) at height 1

    def ids(self) -> list[bytes]:
        """The tx ids, in block order."""
        data = self.tx_ids
        return [data[i : i + TX_ID_SIZE] for i in range(0, len(data), TX_ID_SIZE)]


def encode_compact_proposal(proposal: Proposal, block: Block) -> bytes:
    """The COMPACT_PROPOSAL payload of a proposal and its block."""
    ids = b"".join(sha256(raw) for raw in block.txs)
    compact = CompactProposal(proposal, block.header, ids, block.last_commit)
    return pack(compact.to_fields())


def decode_compact_proposal(payload: bytes, max_block_txs: int) -> CompactProposal:
    """Parse a gossiped compact proposal and check it against its own header: the
    proposal names the header's hash, the ids are the header's tx_root, the parent
    commit is its last_commit_hash, and the header's round fits the proposal's. Raise
    DecodeError (bad_proposal for a mismatch) otherwise; the proposal's signature is
    the caller's to check."""
    compact = parse_compact_proposal(payload, max_block_txs)
    check_compact_proposal(compact)
    return compact


def parse_compact_proposal(payload: bytes, max_block_txs: int) -> CompactProposal:
    """A gossiped compact proposal, parsed but not yet checked against its own header
    (`check_compact_proposal`): enough to judge its proposal's fields (height, round,
    signer) before hashing the header and the ids."""
    fields = unpack(payload, max_bytes=max_block_txs * TX_ID_SIZE + _FRAMING_BYTES)
    compact = CompactProposal.from_fields(fields)
    if len(compact.tx_ids) > max_block_txs * TX_ID_SIZE:
        raise DecodeError(
            Reason.TOO_LARGE,
            f"compact_proposal: {len(compact.tx_ids) // TX_ID_SIZE} txs > max_block_txs "
            f"{max_block_txs}",
        )
    return compact


def check_compact_proposal(compact: CompactProposal) -> None:
    """Check a parsed compact proposal against its own header (`decode_compact_proposal`)."""
    ids = compact.ids()
    header = compact.header
    if header.hash() != compact.proposal.block_hash:
        raise DecodeError(Reason.BAD_PROPOSAL, "the header does not hash to the proposal's block")
    if merkle_root(ids) != header.tx_root:
        raise DecodeError(
            Reason.BAD_PROPOSAL, "the tx ids are not the ones the header's tx_root names"
        )
    commit = compact.last_commit
    if (NO_COMMIT_HASH if commit is None else commit.hash()) != header.last_commit_hash:
        raise DecodeError(
            Reason.BAD_PROPOSAL,
            "the parent commit is not the one the header's last_commit_hash names",
        )
    check_proposal_round(compact.proposal, header)


def gather(
    ids: Sequence[bytes], lookup: Callable[[Sequence[bytes]], list[bytes | None]]
) -> tuple[list[bytes | None], list[int]]:
    """The txs `lookup` holds for `ids` (it answers for all of them in one call, None
    where it holds none), and the positions of those it lacks, in block order."""
    txs = lookup(ids)
    return txs, [i for i, tx in enumerate(txs) if tx is None]


def assemble(
    compact: CompactProposal, txs: Sequence[bytes], max_block_bytes: int, *, hashed: bool = False
) -> bytes:
    """The canonical bytes of the compact proposal's block, from its txs in block order.

    Checked like a gossiped full block before it is handed on: the txs must be the ones
    the header's tx_root names, and the block within max_block_bytes; DecodeError
    (bad_proposal / too_large) otherwise. The ids' root and the parent commit were
    checked against the header by `decode_compact_proposal`, so each tx hashing to its
    id is what is left to check (the root is not computed again): the block check then
    takes these ids as the txs' (`Chain.execute_proposal`, `tx_ids`).

    `hashed`: the caller knows each tx hashes to its id already (looked up by id among
    txs whose ids were computed from their bytes, or fetched and checked against the
    ids asked for), so that only the block's size is left to check here."""
    if not hashed and [sha256(raw) for raw in txs] != compact.ids():
        raise DecodeError(
            Reason.BAD_PROPOSAL, "the txs are not the ones the header's tx_root names"
        )
    block_bytes = Block(compact.header, tuple(txs), compact.last_commit).encode()
    if len(block_bytes) > max_block_bytes:
        raise DecodeError(
            Reason.TOO_LARGE,
            f"the block is {len(block_bytes)} bytes > max_block_bytes {max_block_bytes}",
        )
    return block_bytes
