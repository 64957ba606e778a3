"""Block execution: the state transition, in the order every node runs it.

    begin_block   new epoch (seed, rank keys, uptime ring, validator set) when one starts;
                  fold the proposer's reveal into the mix;
                  expire nodes that missed a confirm window; release unbonded collateral;
                  forget validator sets and node keys older than the evidence age
    txs           for each tx in block order: nonce and fee, then its kind's handler
    end_block     apps (expiries, hosting payouts, refilling under-placed apps);
                  secrets (sealed keys of hosts that left, secrets of apps that ended);
                  rewards (subsidy to tier queue heads and proposer, tips to proposer)

`execute` leaves the writes pending in the State and the StateTree updated, so the caller
decides: `finish` folds them in once the block is committed, `abort` undoes them (a
proposal that lost its round). A block is valid only if every one of its txs applies;
a proposer building a block drops the txs that fail instead (`build_block`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from fluxchain.core import accounts, apps, epochs, history, nodes, rewards, secrets, uptime, vrf
from fluxchain.core.block import BLOCK_FRAMING_BYTES, NO_COMMIT_HASH, Block, Header
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import NOTHING_VERIFIED, Verified
from fluxchain.core.encoding import U64, pack, unpack
from fluxchain.core.errors import BlockError, DecodeError, Reason, StoreError, TxError
from fluxchain.core.events import Event
from fluxchain.core.merkle import merkle_root
from fluxchain.core.params import Params
from fluxchain.core.proposer import proposer as proposer_of
from fluxchain.core.state import State
from fluxchain.core.statetree import StateTree
from fluxchain.core.tx import (
    Tx,
    TxKind,
    check_stateless,
    check_stateless_rules,
    decode_transfer_run,
    first_bad_signature,
)
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit

Handler = Callable[[BlockContext, Tx], None]


def _after_fee_and_nonce(process: Handler) -> Handler:
    """The whole handler of a kind whose own handler runs after the fee and nonce step."""

    def handle(ctx: BlockContext, tx: Tx) -> None:
        accounts.process_fee_and_nonce(ctx, tx)
        process(ctx, tx)

    return handle


# What each kind does, fee and nonce included: one lookup and one call per tx. TRANSFER's
# handler takes its fee and nonce itself (the commonest tx reads and writes its sender
# once); every other kind's handler runs after `accounts.process_fee_and_nonce`.
HANDLERS: Final[dict[TxKind, Handler]] = {
    TxKind.TRANSFER: accounts.process_transfer,
    TxKind.NODE_REGISTER: _after_fee_and_nonce(nodes.process_node_register),
    TxKind.NODE_UPDATE: _after_fee_and_nonce(nodes.process_node_update),
    TxKind.NODE_CONFIRM: _after_fee_and_nonce(nodes.process_node_confirm),
    TxKind.UPTIME_ATTEST: _after_fee_and_nonce(uptime.process_uptime_attest),
    TxKind.NODE_UNREGISTER: _after_fee_and_nonce(nodes.process_node_unregister),
    TxKind.APP_REGISTER: _after_fee_and_nonce(secrets.process_app_register),
    TxKind.APP_UPDATE: _after_fee_and_nonce(secrets.process_app_update),
    TxKind.APP_EXTEND: _after_fee_and_nonce(apps.process_app_extend),
    TxKind.APP_CANCEL: _after_fee_and_nonce(apps.process_app_cancel),
    TxKind.EVIDENCE: _after_fee_and_nonce(nodes.process_evidence),
    TxKind.APP_SECRETS: _after_fee_and_nonce(secrets.process_app_secrets),
    TxKind.APP_SECRETS_SEAL: _after_fee_and_nonce(secrets.process_app_secrets_seal),
    TxKind.APP_SECRETS_REJECT: _after_fee_and_nonce(secrets.process_app_secrets_reject),
}


@dataclass(frozen=True, slots=True)
class Execution:
    """The outcome of executing one block on top of the committed state."""

    height: int
    events: tuple[Event, ...]
    state_root: bytes
    events_root: bytes
    changes: tuple[tuple[bytes, bytes | None], ...]  # encoded state writes, key order
    tx_ids: tuple[bytes, ...]  # of the block's txs, in block order


def begin_block(ctx: BlockContext) -> None:
    epochs.process_epoch(ctx)
    epochs.process_reveal(ctx)
    nodes.process_confirm_windows(ctx)
    nodes.process_unbonding(ctx)
    history.process_history(ctx)


def apply(ctx: BlockContext, tx: Tx) -> None:
    """Apply one tx: nonce and fee, then what its kind does. On TxError, the writes it made
    are left pending: `apply_tx` undoes them, and `execute` voids the whole block."""
    HANDLERS[tx.payload.KIND](ctx, tx)


def apply_tx(ctx: BlockContext, tx: Tx) -> None:
    """Apply one tx; on TxError nothing of it remains (state, fees, events)."""
    mark, fees, burned, n_events = ctx.state.snapshot(), ctx.fees, ctx.burned, len(ctx.events)
    try:
        apply(ctx, tx)
    except TxError:
        ctx.state.revert(mark)
        ctx.fees, ctx.burned = fees, burned
        del ctx.events[n_events:]
        raise


def end_block(ctx: BlockContext) -> None:
    apps.process_block(ctx)
    secrets.process_block(ctx)  # after apps: drops the keys of hosts that just left
    rewards.process_rewards(ctx, nodes.payout_address(ctx.state, ctx.proposer))


def _seal(ctx: BlockContext, tree: StateTree, txs: Sequence[Tx]) -> Execution:
    """Put the block's pending writes into the tree and wrap up its outcome.

    If the tree cannot take them (a stored branch is damaged: StoreError), the part it
    took is undone before the error goes on: the tree is as before the block. The caller
    discards the State's writes.
    """
    state = ctx.state
    changes = state.pending_changes()
    # Read now, while the tree still agrees with the committed state: the undo reads them.
    state.pin_committed(key for key, _ in changes)
    try:
        state_root = tree.update(changes)
    except BaseException:
        # The sweep stopped part-way (a damaged branch): the same sweep with the old
        # values puts back every leaf and branch it changed, and stops at the same place
        # before changing anything there; that StoreError is the one being raised.
        with contextlib.suppress(StoreError):
            _restore_tree(state, tree, changes)
        raise
    events_root = merkle_root([pack(e.to_fields()) for e in ctx.events])
    return Execution(
        ctx.height,
        tuple(ctx.events),
        state_root,
        events_root,
        tuple(changes),
        tuple([tx.id for tx in txs]),
    )


def _restore_tree(
    state: State, tree: StateTree, changes: Iterable[tuple[bytes, bytes | None]]
) -> None:
    """Give the tree back the committed value of every key in `changes` (pinned by
    `_seal`, so nothing is read from the store)."""
    restore = []
    for key, _ in changes:
        record = state.committed(key)
        restore.append((key, None if record is None else pack(record.to_fields())))
    tree.update(restore)


def execute(
    state: State,
    tree: StateTree,
    params: Params,
    height: int,
    proposer: bytes,
    reveal: bytes,
    txs: Sequence[Tx],
) -> Execution:
    """Run a block whose txs must all apply; raise BlockError(invalid_tx) otherwise.
    `reveal` is the header's, checked by `check_header`."""
    ctx = BlockContext(state, params, height, proposer, reveal)
    state.set_journaling(False)
    try:
        begin_block(ctx)
        i, end = 0, len(txs)
        # Each turn applies a run of transfers, then the one tx after it: at most one turn
        # a tx. (A for loop, not a while: CPython 3.11 specializes a for loop's body on its
        # first turns, a while loop's only from the function's 8th call.)
        for _turn in range(end):
            # The run stops before a tx of another kind, or one it would refuse, which
            # the general path below applies (or refuses).
            i = accounts.process_transfers(ctx, txs, i)
            if i == end:
                break
            tx = txs[i]
            # As apply_tx, without its undo: a tx that fails here voids the whole block.
            try:
                apply(ctx, tx)
            except TxError as exc:
                raise BlockError(
                    Reason.INVALID_TX, f"tx {i} ({tx.id.hex()[:16]}): {exc.reason}: {exc.message}"
                ) from None
            i += 1
        end_block(ctx)
        return _seal(ctx, tree, txs)  # inside: a seal that fails leaves nothing pending
    except BaseException:
        state.discard()
        raise
    finally:
        state.set_journaling(True)


def finish(state: State, execution: Execution) -> None:
    """Make an execution's writes the committed state (after the block is committed)."""
    del execution
    state.commit()


def abort(state: State, tree: StateTree, execution: Execution) -> None:
    """Undo an execution: the tree gets the committed values back, pending writes go."""
    try:
        _restore_tree(state, tree, execution.changes)
    finally:
        state.discard()


def check_signatures(txs: Sequence[Tx]) -> None:
    """Verify every tx signature on this thread; raise BlockError naming the first bad one."""
    bad = first_bad_signature(txs)
    if bad is not None:
        raise BlockError(Reason.INVALID_TX, f"tx {txs[bad].id.hex()[:16]}: bad_signature")


def decode_block_txs(
    block: Block, params: Params, known: Mapping[bytes, Tx], ids: Sequence[bytes] | None
) -> list[Tx]:
    """Decode a block's txs and run their stateless checks (not signatures).

    A tx found in `known` by its id (`ids[i]`, the hash of its bytes; given whenever
    `known` is not empty) was decoded and checked from these very bytes before, and is
    taken from there.
    """
    txs: list[Tx] = []
    seen: set[bytes] = set()
    raws = block.txs
    i, end = 0, len(raws)
    for _turn in range(end):  # a run and the tx after it a turn, as in `execute`
        if not known:
            # A run of plain transfers in one go; it stops before any tx it does not take
            # whole, which the general path below decodes (or refuses).
            i = decode_transfer_run(raws, i, ids, params, seen, txs)
            if i == end:
                break
        raw = raws[i]
        tx_id = None if ids is None else ids[i]
        tx = None if tx_id is None else known.get(tx_id)
        if tx is None:
            try:
                tx = Tx.decode(raw, params.max_tx_bytes, tx_id)  # hashed once
                check_stateless(tx, params)
            except (DecodeError, TxError) as exc:
                raise BlockError(
                    Reason.INVALID_TX, f"tx {i}: {exc.reason}: {exc.message}"
                ) from None
        if tx.id in seen:
            raise BlockError(Reason.DUPLICATE_TX, f"tx {i} appears twice in the block")
        seen.add(tx.id)
        txs.append(tx)
        i += 1
    return txs


def time_bounds(parent: Header | None, genesis_time_ms: int, params: Params) -> tuple[int, int]:
    """The earliest and latest time a block on top of `parent` (None: block 1) may carry.

    Later than the parent (block 1: not before genesis), and at most max_time_advance_ms
    after it: a pure rule on the header and its parent, so that every node, voting or
    syncing, judges a committed block the same way, and block times stay far below the
    64-bit limit of their encoding.
    """
    if parent is None:
        earliest = latest_base = genesis_time_ms
    else:
        earliest, latest_base = parent.time_ms + 1, parent.time_ms
    return earliest, min(U64, latest_base + params.max_time_advance_ms)


def proposal_time(now_ms: int, parent: Header | None, genesis_time_ms: int, params: Params) -> int:
    """The time an honest proposer gives its block: its clock, within `time_bounds`.

    Raises BlockError(bad_time) only when no time is valid at all (a parent at the very
    end of the integer range, which the header rules never let a chain reach).
    """
    earliest, latest = time_bounds(parent, genesis_time_ms, params)
    if earliest > latest:
        raise BlockError(Reason.BAD_TIME, "no valid time follows the parent's")
    return min(max(now_ms, earliest), latest)


def check_timely(header: Header, now_ms: int, params: Params) -> None:
    """Refuse a proposal whose time is ahead of this node's clock by more than the drift.

    For voting on a proposal only: a committed block is judged by its commit, never by
    a clock (a syncing node's clock says nothing about when a block was made).
    """
    if header.time_ms > now_ms + params.max_clock_drift_ms:
        raise BlockError(
            Reason.BAD_TIME,
            f"time {header.time_ms} is {header.time_ms - now_ms} ms ahead of this node's clock"
            f" (tolerance {params.max_clock_drift_ms} ms)",
        )


def check_header(
    block: Block,
    params: Params,
    parent: Header | None,
    parent_hash: bytes,
    genesis_time_ms: int,
    validators: ValidatorSet,
    parent_validators: ValidatorSet | None,
    verified: Verified = NOTHING_VERIFIED,
) -> None:
    """Everything about a block that can be checked before executing it. Signatures in
    `verified` (its reveal's, its parent commit's) were verified already (block sync)."""
    _check_position(block.header, params, parent, parent_hash, genesis_time_ms)
    _check_proposer(block.header, params, validators, verified)
    if len(block.txs) > params.max_block_txs:
        raise BlockError(
            Reason.BLOCK_TOO_LARGE, f"{len(block.txs)} txs, limit {params.max_block_txs}"
        )
    size = len(block.encode())
    if size > params.max_block_bytes:
        # The proposal budget: a block the proposer must ship to every peer within the
        # propose timeout (docs/params.md). Decoding bounds received blocks already; this
        # holds a block built in memory to the same rule.
        raise BlockError(Reason.BLOCK_TOO_LARGE, f"{size} bytes, limit {params.max_block_bytes}")
    _check_last_commit(block, params, parent, parent_hash, parent_validators, verified)


def _check_position(
    header: Header, params: Params, parent: Header | None, parent_hash: bytes, genesis_time_ms: int
) -> None:
    """The header follows its parent: same chain, next height, parent's hash, time in bounds."""
    expected_height = 1 if parent is None else parent.height + 1
    if header.chain_id != params.chain_id:
        raise BlockError(Reason.WRONG_CHAIN, f"block is for chain {header.chain_id!r}")
    if header.height != expected_height:
        raise BlockError(Reason.BAD_HEIGHT, f"height {header.height}, expected {expected_height}")
    if header.prev_hash != parent_hash:
        raise BlockError(Reason.BAD_PREV_HASH, "prev_hash is not the parent block's hash")
    earliest, latest = time_bounds(parent, genesis_time_ms, params)
    if header.time_ms < earliest:
        raise BlockError(Reason.BAD_TIME, f"time {header.time_ms} is before {earliest}")
    if header.time_ms > latest:
        raise BlockError(
            Reason.BAD_TIME,
            f"time {header.time_ms} is after {latest}, the parent's time"
            f" + max_time_advance_ms ({params.max_time_advance_ms})",
        )


def _check_proposer(
    header: Header, params: Params, validators: ValidatorSet, verified: Verified
) -> None:
    """The header names the current validator set, the round's proposer, and its reveal."""
    if header.validators_hash != validators.hash():
        raise BlockError(Reason.BAD_VALIDATORS_HASH, "validators_hash is not the current set's")
    # The proposer is the one of the round the block was built for: a proposal's signer
    # cannot name another validator to be paid the proposer's share and the fees.
    if header.proposer != proposer_of(validators, header.height, header.round):
        raise BlockError(
            Reason.BAD_PROPOSER,
            f"the proposer is not the validator whose turn round {header.round} is",
        )
    # The reveal is the proposer's one VRF signature for this height: it cannot be
    # varied (as a block time or a parent hash could) to steer the chain's randomness.
    vrf_key = validators.vrf_key_of(header.proposer)
    if vrf_key is None or not vrf.check_reveal(
        vrf_key, params.chain_id, header.height, header.reveal, verified
    ):
        raise BlockError(
            Reason.BAD_REVEAL, "the reveal is not the proposer's VRF signature for this height"
        )


def _check_last_commit(
    block: Block,
    params: Params,
    parent: Header | None,
    parent_hash: bytes,
    parent_validators: ValidatorSet | None,
    verified: Verified,
) -> None:
    """Block 1 carries no parent commit; every later block carries its parent's, verified."""
    header = block.header
    if block.last_commit is None:
        if parent is not None or header.last_commit_hash != NO_COMMIT_HASH:
            raise BlockError(Reason.BAD_LAST_COMMIT, "only block 1 has no parent commit")
        return
    if parent is None or parent_validators is None:
        raise BlockError(Reason.BAD_LAST_COMMIT, "block 1 carries no parent commit")
    if header.last_commit_hash != block.last_commit.hash():
        raise BlockError(Reason.BAD_LAST_COMMIT, "last_commit_hash does not match last_commit")
    block.last_commit.verify(
        params.chain_id, parent_validators, parent.height, parent_hash, verified
    )


def check_results(block: Block, execution: Execution, *, tx_root_checked: bool = False) -> None:
    """Compare the header's roots with what executing the block produced (the tx root
    from the ids of the txs it executed).

    `tx_root_checked`: the txs' ids were found to root to the header's tx_root before
    (a rebuilt compact proposal, node/compact.py), so the root is not computed again."""
    header = block.header
    if not tx_root_checked and header.tx_root != merkle_root(execution.tx_ids):
        raise BlockError(Reason.BAD_TX_ROOT, "tx_root does not match the block's txs")
    if header.state_root != execution.state_root:
        raise BlockError(Reason.BAD_STATE_ROOT, "state_root differs from this node's execution")
    if header.events_root != execution.events_root:
        raise BlockError(Reason.BAD_EVENTS_ROOT, "events_root differs from this node's execution")


TX_FRAMING_BYTES: Final = 5  # the msgpack prefix of one tx's bytes (bin 32 at most)


def tx_room(params: Params, last_commit: Commit | None) -> int:
    """The bytes of txs (each with its framing, TX_FRAMING_BYTES) that a block on top of
    `last_commit` may carry and stay within params.max_block_bytes, the proposal budget."""
    commit_bytes = len(pack(None if last_commit is None else last_commit.to_fields()))
    return params.max_block_bytes - BLOCK_FRAMING_BYTES - commit_bytes


def build_block(
    state: State,
    tree: StateTree,
    params: Params,
    *,
    height: int,
    round_: int,
    time_ms: int,
    prev_hash: bytes,
    validators: ValidatorSet,
    last_commit: Commit | None,
    candidates: Iterable[Tx],
    reveal: bytes,
    verified: Container[bytes] = frozenset(),
) -> tuple[Block, Execution, list[tuple[Tx, TxError]]]:
    """Propose a block for (height, round_): apply candidates in order, keeping those that
    apply, within limits. Its proposer is that round's; `time_ms` is already within
    `time_bounds` (`proposal_time`); `reveal` is that proposer's (`vrf.make_reveal`).

    Candidates must carry valid signatures (the mempool checked them), each sender's in
    nonce order (`Mempool.candidates`); every other rule is applied here, so a proposer
    never builds a block its peers would reject, but the proofs (`check_proofs`) of the
    candidates in `verified` (ids of txs whose every stateless check passed on this chain:
    `TxAdmission.verified`; the id hashes every byte), not run twice (red23b 5). If the
    build fails, its execution is undone: the state is as before.
    """
    proposer = proposer_of(validators, height, round_)
    ctx = BlockContext(state, params, height, proposer, reveal)
    included: list[Tx] = []
    rejected: list[tuple[Tx, TxError]] = []
    size = 0
    room = tx_room(params, last_commit)
    # Senders with a tx left out for room or rejected: their later nonces cannot apply in
    # this block, and rejecting them would drop them from the proposer's mempool (issue
    # 22, wan15b), after running their checks for nothing (a registration's proofs,
    # ~1.6 ms, behind a head that cannot pay its collateral: red23b 5).
    left_out: set[bytes] = set()
    try:
        begin_block(ctx)
        for tx in candidates:
            if len(included) >= params.max_block_txs:
                break
            if tx.sender_address in left_out:
                continue
            if size + len(tx.raw) + TX_FRAMING_BYTES > room:
                left_out.add(tx.sender_address)
                continue  # a smaller tx further on may still fit
            try:
                if tx.id in verified:
                    check_stateless_rules(tx, params)
                else:
                    check_stateless(tx, params)  # the same rule importers apply
                apply_tx(ctx, tx)
            except TxError as exc:
                rejected.append((tx, exc))
                sender = tx.sender_address
                if tx.nonce >= accounts.get_account(state, sender).nonce:
                    left_out.add(sender)  # its nonce stays unspent in this block
                continue
            included.append(tx)
            size += len(tx.raw) + TX_FRAMING_BYTES
        end_block(ctx)
        execution = _seal(ctx, tree, included)
    except BaseException:
        state.discard()
        raise
    try:
        header = Header(
            chain_id=params.chain_id,
            height=height,
            round=round_,
            time_ms=time_ms,
            prev_hash=prev_hash,
            proposer=proposer,
            reveal=reveal,
            tx_root=merkle_root([tx.id for tx in included]),
            state_root=execution.state_root,
            events_root=execution.events_root,
            validators_hash=validators.hash(),
            last_commit_hash=NO_COMMIT_HASH if last_commit is None else last_commit.hash(),
        )
        # Encoded here, so that a header that cannot be (a field out of range) fails the
        # build, with its execution undone, rather than the caller's first use of it.
        try:
            Header.from_fields(unpack(pack(header.to_fields())))
        except (OverflowError, DecodeError) as exc:
            raise BlockError(
                Reason.BAD_FIELD, f"the built header is not encodable: {exc}"
            ) from None
    except BaseException:
        abort(state, tree, execution)
        raise
    block = Block(header, tuple(tx.raw for tx in included), last_commit)
    return block, execution, rejected
