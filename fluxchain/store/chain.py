"""The persistent chain: a node's committed blocks, its state, and the import pipeline.

`Chain.open` resumes from the last committed block (or writes genesis into an empty home);
`import_block` takes a block with the commit that finalizes it, checks everything, and
commits it in one write batch. The consensus driver uses the finer steps: `execute_proposal`
before prevoting, then `commit_block` or `abort` once the round is decided.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from fluxchain.core import execute as ex
from fluxchain.core.block import Block, Header
from fluxchain.core.crypto import NOTHING_VERIFIED, Verified, sha256
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.errors import BlockError, Reason, StoreError
from fluxchain.core.events import Event
from fluxchain.core.genesis import Genesis, build_genesis_state
from fluxchain.core.records import VALIDATORS
from fluxchain.core.schema import new_state
from fluxchain.core.statetree import StateTree
from fluxchain.core.tx import Tx, signature_verdicts_of
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit
from fluxchain.store import collector
from fluxchain.store.db import (
    BLOCK,
    COMMIT,
    EVENTS,
    HASH_INDEX,
    META_GENESIS,
    META_LAST_VALIDATORS,
    TX_INDEX,
    ChainDB,
    StoredState,
    height_key,
)
from fluxchain.store.verifier import MIN_BATCH, PendingSignatures, VerifierPool

log = logging.getLogger("fluxchain.chain")

# Txs the caller has decoded and checked already, by id (fluxchain/node/admission.py):
# by default none.
NOTHING_CHECKED: Final[Mapping[bytes, Tx]] = MappingProxyType({})


class Chain:
    """Committed blocks and the state after the last one, cached in memory.

    With a `verifier`, block signatures are verified on its processes while the block
    executes; without, in this process."""

    def __init__(self, db: ChainDB, genesis: Genesis, verifier: VerifierPool | None = None) -> None:
        self.db = db
        self.genesis = genesis
        self.params = genesis.params
        self.genesis_hash = genesis.hash()
        self._stored = StoredState(self.db)
        self.state = new_state(self._stored)  # reads through to the store: nothing loaded
        self.tree = StateTree(persisting=True)
        self.head: Header | None = None  # None until block 1
        self.last_validators: ValidatorSet | None = None  # signed the head block
        self._verifier = verifier
        self._ahead: _Ahead | None = None  # the next block's signatures, sent early
        # The next block's txs, decoded while the one before it was written: (its header's
        # hash, its raw txs, their decodings)
        self._decoded_ahead: tuple[bytes, tuple[bytes, ...], list[Tx]] | None = None
        # Tx signatures the block checks verified (here or on the verifier processes):
        # with the admission's count, what each tx's signature cost this node (issue 24).
        self.signatures_verified = 0
        self._load()

    @classmethod
    def open(cls, path: Path, genesis: Genesis, verifier: VerifierPool | None = None) -> Chain:
        return cls(ChainDB(path), genesis, verifier)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.pending.drain()
            self._ahead = None
        self.db.close()

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            self._load_or_init()
            # From here on every state record is read through the tree, which checks it.
            self._stored.check_with(self.tree)
        finally:
            collector.schedule()

    def _load_or_init(self) -> None:
        stored_genesis = self.db.get(META_GENESIS)
        if stored_genesis is None:
            build_genesis_state(self.genesis, self.state)
            changes = self.state.pending_changes()
            self.tree.update(changes)
            self.db.write_genesis(self.genesis_hash, changes, self.tree.records())
            self.tree.records_written()
            self.state.commit()
            return
        if stored_genesis != self.genesis_hash:
            raise StoreError(Reason.STORE_MISMATCH, "this home holds another chain's data")
        stored = StoredState(self.db)
        self.tree = StateTree.open(stored)
        if len(self.tree) == 0 and next(stored.items(b""), None) is not None:
            # a home written before the tree was stored: build it once and store it
            self.tree = StateTree.from_items(stored.items(b""), persisting=True)
            self.db.write_tree(self.tree.records())
            self.tree.records_written()
        height = self.db.head_height() or 0
        if height:
            self.head = self.get_block(height).header
            self.last_validators = ValidatorSet.from_fields(self.db.get_obj(META_LAST_VALIDATORS))
            if self.tree.root != self.head.state_root:
                raise StoreError(
                    Reason.STORE_MISMATCH,
                    f"stored state tree root {self.tree.root.hex()[:16]} does not match the "
                    f"state root {self.head.state_root.hex()[:16]} of head block {height}",
                )

    # -- reading ---------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return 0 if self.head is None else self.head.height

    @property
    def head_hash(self) -> bytes:
        return self.genesis_hash if self.head is None else self.head.hash()

    @property
    def head_time_ms(self) -> int:
        return self.genesis.genesis_time_ms if self.head is None else self.head.time_ms

    @property
    def base_height(self) -> int:
        """The lowest height whose block this node holds: 1, or the height it was
        state-synced at (it holds no block, events or tx index below that)."""
        return self.db.base_height()

    def validators(self) -> ValidatorSet:
        """The set that signs the next block (from committed state, never a pending write)."""
        validators: ValidatorSet = self.state.committed(VALIDATORS)
        return validators

    def get_block_bytes(self, height: int) -> bytes | None:
        return self.db.get(height_key(BLOCK, height))

    def get_block(self, height: int) -> Block:
        raw = self.get_block_bytes(height)
        if raw is None:
            raise KeyError(height)
        return Block.decode(raw, self.params.max_block_bytes, self.params.max_block_txs)

    def get_commit_bytes(self, height: int) -> bytes | None:
        """The stored encoding of the commit of `height` (what sync serves, undecoded)."""
        return self.db.get(height_key(COMMIT, height))

    def get_commit(self, height: int) -> Commit | None:
        fields = self.db.get_obj(height_key(COMMIT, height))
        return None if fields is None else Commit.from_fields(fields)

    def height_of(self, block_hash: bytes) -> int | None:
        raw = self.db.get(HASH_INDEX + block_hash)
        return None if raw is None else int.from_bytes(raw, "big")

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        """(height, index) of a committed tx."""
        fields = self.db.get_obj(TX_INDEX + tx_id)
        return None if fields is None else (fields[0], fields[1])

    def events(self, height: int) -> list[Event]:
        raw = self.db.get(height_key(EVENTS, height))
        return [] if raw is None else [Event.from_fields(e) for e in unpack(raw)]

    # -- the import pipeline ---------------------------------------------------------------

    def execute_proposal(
        self,
        block: Block,
        checked: Mapping[bytes, Tx] = NOTHING_CHECKED,
        verified: Verified = NOTHING_VERIFIED,
        tx_ids: Sequence[bytes] | None = None,
        on_verified: Callable[[list[Tx]], None] | None = None,
    ) -> ex.Execution:
        """Check and execute a block on top of the head; its writes stay pending.

        Txs in `checked` (by id: the node's admitted txs) are taken as decoded and
        checked; the others' signatures are verified first, or on the verifier processes
        while this one decodes and executes the block. Header signatures (reveal, parent
        commit) in `verified` were verified already (block sync). `tx_ids`, if given, are
        the SHA-256 ids of the block's txs in order, already checked against them and
        against the header's tx_root (a rebuilt compact proposal): neither the ids nor
        their root is computed again. `on_verified`, if given, gets the txs whose
        signatures this check verified (those not in `checked`) once the block passed.
        """
        with collector.paused():
            return self._execute_proposal(block, checked, verified, tx_ids, on_verified)

    def _execute_proposal(
        self,
        block: Block,
        known: Mapping[bytes, Tx],
        verified: Verified = NOTHING_VERIFIED,
        tx_ids: Sequence[bytes] | None = None,
        on_verified: Callable[[list[Tx]], None] | None = None,
    ) -> ex.Execution:
        ahead = self._take_ahead(block)
        try:
            ex.check_header(
                block,
                self.params,
                self.head,
                self.head_hash,
                self.genesis.genesis_time_ms,
                self.validators(),
                self.last_validators,
                verified,
            )
        except BaseException:
            if ahead is not None:
                ahead.pending.drain()
            raise
        pool = self._verifier
        decoded = self._take_decoded_ahead(block)
        root_checked = tx_ids is not None
        if ahead is not None:
            ids, unchecked, pending = ahead.ids, ahead.unchecked, ahead.pending
        else:
            ids, unchecked = _unchecked(block, known, tx_ids)
            if pool is None or not pool.healthy or len(unchecked) < MIN_BATCH:
                txs = decoded or ex.decode_block_txs(block, self.params, known, ids)
                mine = [txs[i] for i in unchecked]
                ex.check_signatures(mine)
                self.signatures_verified += len(mine)
                execution = self._execute_and_compare(block, txs, root_checked)
                if on_verified is not None and mine:
                    on_verified(mine)
                return execution
            pending = pool.submit([block.txs[i] for i in unchecked])
        # The workers verify while this process decodes and executes, then it joins them
        # until no signature is left. As without workers, a malformed tx is reported
        # first, then a bad signature (the earliest), then anything else.
        try:
            txs = decoded or ex.decode_block_txs(block, self.params, known, ids)
        except BaseException:
            pending.drain()  # the workers answer every block: always collect the answers
            raise
        mine = [txs[i] for i in unchecked]

        def check_all_signatures() -> None:
            pending.join(lambda start, end: signature_verdicts_of(mine[start:end]))
            pending.check()

        try:
            execution = self._execute_and_compare(block, txs, root_checked)
        except BaseException:
            check_all_signatures()
            raise
        try:
            check_all_signatures()
        except BlockError:
            ex.abort(self.state, self.tree, execution)
            raise
        self.signatures_verified += len(mine)
        if on_verified is not None and mine:
            on_verified(mine)
        return execution

    def _send_ahead(self, block: Block, known: Mapping[bytes, Tx]) -> None:
        """Put `block`'s signatures before the verifier processes now, for
        `execute_proposal` to find once this process gets to the block."""
        pool = self._verifier
        if pool is None or not pool.healthy:
            return
        ids, unchecked = _unchecked(block, known)
        if len(unchecked) >= MIN_BATCH:
            pending = pool.submit([block.txs[i] for i in unchecked])
            self._ahead = _Ahead(block.hash(), block.txs, ids, unchecked, pending)

    def _decode_ahead(self, block: Block, known: Mapping[bytes, Tx]) -> None:
        """Decode `block`'s txs now (while the block before it is written), for
        `execute_proposal` to take when the block's turn comes.

        Decoding is a function of the block's bytes and the params alone (a tx in `known`
        was decoded from the same bytes), so doing it early changes no outcome: a block
        that fails to decode is left to fail in its turn, with the error it gives then."""
        ahead = self._ahead
        if (
            ahead is not None
            and ahead.block_hash == block.hash()
            and ahead.txs == block.txs
            and ahead.ids is not None
        ):
            ids: Sequence[bytes] | None = ahead.ids
        else:
            ids = _unchecked(block, known)[0]
        try:
            txs = ex.decode_block_txs(block, self.params, known, ids)
        except Exception:  # decoded again in its turn, which reports it
            return
        self._decoded_ahead = (block.hash(), block.txs, txs)

    def _take_decoded_ahead(self, block: Block) -> list[Tx] | None:
        """The txs decoded ahead for `block`, if they were; any others are dropped.

        Matched on the txs' bytes too, not on the header alone: a peer can send a known
        header over another body, and those txs are the ones to decode and check
        against it (a tuple compare: each item is most often the very object)."""
        decoded, self._decoded_ahead = self._decoded_ahead, None
        if decoded is None or decoded[0] != block.hash() or decoded[1] != block.txs:
            return None
        return decoded[2]

    def _take_ahead(self, block: Block) -> _Ahead | None:
        """The signatures sent ahead for `block`, if they were; any others are drained.

        Matched on the txs' bytes too, as `_take_decoded_ahead`: verdicts and ids of
        another body under the same header are not this body's (its txs take their ids
        from there, `decode_block_txs`)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (ahead.block_hash != block.hash() or ahead.txs != block.txs):
            ahead.pending.drain()
            return None
        return ahead

    def _execute_and_compare(
        self, block: Block, txs: list[Tx], root_checked: bool = False
    ) -> ex.Execution:
        execution = ex.execute(
            self.state,
            self.tree,
            self.params,
            block.height,
            block.header.proposer,
            block.header.reveal,
            txs,
        )
        try:
            ex.check_results(block, execution, tx_root_checked=root_checked)
        except BlockError:
            ex.abort(self.state, self.tree, execution)
            raise
        return execution

    def abort(self, execution: ex.Execution) -> None:
        ex.abort(self.state, self.tree, execution)

    def commit_block(
        self,
        block: Block,
        commit: Commit,
        execution: ex.Execution,
        verified: Verified = NOTHING_VERIFIED,
    ) -> None:
        """Persist an executed block with its commit, atomically, and advance the head.
        The commit's signatures in `verified` were verified already (the precommits the
        consensus engine took)."""
        with collector.paused():
            self._commit_block(block, commit, execution, known=verified)

    def _commit_block(
        self,
        block: Block,
        commit: Commit,
        execution: ex.Execution,
        *,
        verified: bool = False,
        upcoming: tuple[Block, Mapping[bytes, Tx]] | None = None,
        known: Verified = NOTHING_VERIFIED,
    ) -> None:
        signers = self.validators()  # the set before this block's changes
        try:
            if not verified:
                commit.verify(self.params.chain_id, signers, block.height, block.hash(), known)
            if block.header.round > commit.round:
                # A block is proposed in its own round or re-proposed in a later one: it
                # cannot be decided before the round it was built for.
                raise BlockError(
                    Reason.BAD_PROPOSER,
                    f"block of round {block.header.round} committed in round {commit.round}",
                )
        except BlockError:
            self.abort(execution)
            raise
        try:
            self.db.write_block(
                height=block.height,
                block_hash=block.hash(),
                block_bytes=block.encode(),
                commit_bytes=pack(commit.to_fields()),
                tx_ids=execution.tx_ids,
                events=[e.to_fields() for e in execution.events],
                state_changes=execution.changes,
                tree_records=self.tree.records(),
                last_validators=pack(signers.to_fields()),
                meanwhile=None if upcoming is None else lambda: self._decode_ahead(*upcoming),
            )
        except OSError as exc:  # the disk's errors, and plyvel's (plyvel.Error is one)
            # Nothing of the block is on disk: undo it here too, so that the node is
            # exactly as before it (a retry is a clean retry); the caller stops the node.
            self.abort(execution)
            log.error("block write failed height=%d: %s", block.height, exc)
            raise StoreError(
                Reason.STORE_WRITE_FAILED, f"block {block.height} was not written: {exc}"
            ) from exc
        self.tree.records_written()
        ex.finish(self.state, execution)
        self.head = block.header
        self.last_validators = signers
        collector.after_block()
        log.info(
            "block committed height=%d hash=%s txs=%d events=%d",
            block.height,
            block.hash().hex()[:16],
            len(block.txs),
            len(execution.events),
        )

    def import_block(
        self,
        block: Block,
        commit: Commit,
        upcoming: Block | None = None,
        checked: Mapping[bytes, Tx] = NOTHING_CHECKED,
        verified: Verified = NOTHING_VERIFIED,
    ) -> ex.Execution:
        """Check, execute and commit a finalized block (sync, replay, tests).

        The commit is checked first (BAD_COMMIT): that it is for this block's height and
        hash and carries more than 2/3 of the power of the set that signs this height.
        It costs a signature per validator; executing a block costs one per tx and much
        more, and a peer that serves a forged commit must not buy that work.

        `upcoming`, the block expected next, if known: its signatures go out to the
        verifier processes before this block commits, so that they work while this
        process writes (the one stretch of an import where they would wait), and this
        process decodes its txs while LevelDB writes and syncs this block's batch.
        `checked`: as for `execute_proposal`. `verified`: signatures of the commit, the
        reveal and the parent commit verified already (block sync, crypto.Verified).
        """
        commit.verify(self.params.chain_id, self.validators(), block.height, block.hash(), verified)
        execution = self.execute_proposal(block, checked, verified)
        if upcoming is not None:
            self._send_ahead(upcoming, checked)
        with collector.paused():
            self._commit_block(
                block,
                commit,
                execution,
                verified=True,
                upcoming=None if upcoming is None else (upcoming, checked),
            )
        return execution

    def build_block(
        self,
        *,
        now_ms: int,
        round_: int,
        last_commit: Commit | None,
        candidates: list[Tx],
        reveal: bytes,
        verified: Container[bytes] = frozenset(),
    ) -> tuple[Block, ex.Execution, list[tuple[Tx, Exception]]]:
        """Build the proposal of (next height, `round_`) on top of the head from
        already-checked candidate txs (`verified`: the ids of those whose proofs need no
        second check, `ex.build_block`). Its proposer is that round's, `reveal` its VRF
        reveal for the height (`vrf.make_reveal`); its time is `now_ms` (the proposer's
        clock) kept within the header rules whatever the head's time is.
        On failure (BlockError) nothing of the build remains."""
        time_ms = ex.proposal_time(now_ms, self.head, self.genesis.genesis_time_ms, self.params)
        with collector.paused():
            block, execution, rejected = ex.build_block(
                self.state,
                self.tree,
                self.params,
                height=self.height + 1,
                round_=round_,
                time_ms=time_ms,
                prev_hash=self.head_hash,
                validators=self.validators(),
                last_commit=last_commit,
                candidates=candidates,
                reveal=reveal,
                verified=verified,
            )
        return block, execution, list(rejected)


def _unchecked(
    block: Block, known: Mapping[bytes, Tx], tx_ids: Sequence[bytes] | None = None
) -> tuple[Sequence[bytes] | None, Sequence[int]]:
    """The ids of `block`'s txs (None while nothing is known and none are given), and the
    indices of the txs whose signatures are to be checked: those not in `known`.

    Each tx is hashed once here, unless its id is given (`tx_ids`): its id finds it among
    the known txs, and the others (all of them when nothing is known, as in sync) are the
    ones to verify.
    """
    if not known:
        return tx_ids, range(len(block.txs))
    ids = [sha256(raw) for raw in block.txs] if tx_ids is None else tx_ids
    return ids, [i for i, tx_id in enumerate(ids) if tx_id not in known]


@dataclass(slots=True)
class _Ahead:
    """The signatures of a block sent to the verifier processes before its turn."""

    block_hash: bytes
    txs: tuple[bytes, ...]  # the body they are of
    ids: Sequence[bytes] | None
    unchecked: Sequence[int]
    pending: PendingSignatures
