"""The double-sign guard: the only place a validator's consensus key signs.

Rule: never sign two different payloads for one (height, round, step), and never sign
for an earlier (height, round, step) than the last signature. The record of the last
signature reaches disk (written into the older of the file's two slots, the file synced:
one `fdatasync`, see FileSignerStore) BEFORE the signature is returned, so whatever
leaves the process is already on record, and after any crash the guard refuses what
could conflict with it. An identical request
gets the recorded signature again, so a vote lost in a crash can be re-sent.

The record also holds what the engine must resume with after a restart, so that a
restarted validator is safe with or without its WAL: the round and step of the last
signature (it never acts in an earlier round again), its lock (its last non-nil precommit
at that height; set exactly when that precommit is signed) and its valid value (handed
over by the engine with each signature request). All of it is in the same atomic record
as the signature, so no crash can separate them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Final, Protocol

from consensus.errors import SIGNER_STATE, ConsensusError, DoubleSignError
from consensus.events import Lock, Resume, SignProposal, SignVote
from consensus.messages import Proposal, Step, proposal_digest
from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, SIGNATURE_SIZE, SigningKey
from fluxchain.core.encoding import Bytes, Int, Record, Str, Uint64, pack, record, unpack
from fluxchain.core.errors import FluxError
from fluxchain.core.votes import MAX_ROUND, NIL, Vote, VoteType, vote_digest

log = logging.getLogger(__name__)

STATE_FILE: Final = "signer_state.slots"
LEGACY_STATE_FILE: Final = "signer_state.msgpack"  # one record per file, before the slots
# Two slots, each in its own 4 KiB block (a page and a disk's sector size), so that a torn
# write of one can never reach into the other. A record is at most ~540 bytes.
SLOTS: Final = 2
SLOT_SIZE: Final = 4096
SLOT_MAGIC: Final = b"fxsigner"
STATE_VERSION: Final = 2  # 2: the valid value joined the record

_VOTE_STEP: Final = {VoteType.PREVOTE: Step.PREVOTE, VoteType.PRECOMMIT: Step.PRECOMMIT}


@record("signer_state", version=STATE_VERSION)
@dataclass(frozen=True, slots=True)
class SignerState(Record):
    """The last signature, and the lock and valid value at its height. height 0: nothing yet.

    Lock and valid value only ever move to later rounds within a height (a new height
    starts without either).
    """

    chain_id: Annotated[str, Str(256)]
    pubkey: Annotated[bytes, Bytes(max_len=PUBKEY_SIZE)]
    height: Uint64 = 0
    round: Annotated[int, Int(0, MAX_ROUND)] = 0
    step: Annotated[int, Int(0, Step.PRECOMMIT)] = 0
    digest: Annotated[bytes, Bytes(max_len=HASH_SIZE)] = b""  # what was signed (the tagged hash)
    signature: Annotated[bytes, Bytes(max_len=SIGNATURE_SIZE)] = b""
    # of the last vote, so that it can be rebuilt after a crash
    block_hash: Annotated[bytes, Bytes(max_len=HASH_SIZE)] = b""
    lock_height: Uint64 = 0
    lock_round: Annotated[int, Int(-1, MAX_ROUND)] = -1
    lock_hash: Annotated[bytes, Bytes(max_len=HASH_SIZE)] = b""
    valid_round: Annotated[int, Int(-1, MAX_ROUND)] = -1  # at `height`
    valid_hash: Annotated[bytes, Bytes(max_len=HASH_SIZE)] = b""

    @classmethod
    def decode(cls, data: bytes) -> SignerState:
        """The record from its file's bytes; raise DecodeError naming what is wrong."""
        return cls.from_fields(unpack(data))


class SignerStore(Protocol):
    """Where the guard keeps its record. `save` returns only once the record is durable.

    `uncertain` is set by a `load` that found the newest record possibly lost: the guard
    then stands above every height the node could have signed at (`SignerGuard`).
    """

    uncertain: bool

    def load(self) -> SignerState | None: ...

    def save(self, state: SignerState) -> None: ...

    def close(self) -> None: ...


class FileSignerStore:
    """The record in `<home>/signer_state.slots`: two fixed slots, one fsync a signature.

    Each slot is its own 4 KiB block of one pre-allocated file and holds a sequence number,
    the record and a SHA-256 checksum over both (`encode_slot`). A save writes the slot
    that does NOT hold the newest record, in place, and syncs that one file: the newest
    durable record is never touched, so a crash that tears the write leaves it whole, and
    the torn slot (which held only an older record) fails its checksum. `load` takes the
    valid slot with the higher sequence number. The file itself is created once, both
    slots holding the first record (a temporary file, fsynced, renamed, the directory
    fsynced); after that a signature costs one `fdatasync` (the file's size never changes,
    so no metadata needs to follow).

    Every slot of a file this store wrote holds a valid record, so one that fails its
    checksum is either a write torn by a crash before its sync (its record never left) or
    a durable record damaged since (a signature that did leave): the two look the same.
    `load` then keeps the other slot and sets `uncertain`, and the guard raises its record
    above every height the node could have signed at. A file of another size, or with no
    valid slot, refuses to start.

    A home of the old layout (`signer_state.msgpack`, one record replaced by a rename) is
    migrated on the first load: the later of its record and the slots' (an older binary may
    have signed on after an earlier migration) goes into the slots file, and the old file is
    removed only once that is durable.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / STATE_FILE
        self._legacy = home / LEGACY_STATE_FILE
        self._tmp = home / (STATE_FILE + ".tmp")
        self._fd = -1
        self._sequence = 0  # of the newest durable record; 0: no file yet
        self._newest_slot = 0
        self.uncertain = False

    def load(self) -> SignerState | None:
        legacy = self._read_legacy() if self._legacy.exists() else None
        state = self._load_slots() if self.path.exists() else None
        if legacy is None:
            return state
        if state is None:
            self._create(legacy)  # the migration: durable before the old file goes
            state = legacy
        elif _position(legacy) > _position(state):
            self.save(legacy)
            state = legacy
        self._legacy.unlink()
        self._sync_directory()
        return state

    def _load_slots(self) -> SignerState:
        data = self.path.read_bytes()
        if len(data) != SLOTS * SLOT_SIZE:
            # Written once at this size and never resized: a cut or grown file is no
            # crash of this store, and the slot it lost may have held the newest record.
            raise ConsensusError(
                SIGNER_STATE,
                f"{self.path} is damaged: {len(data)} bytes, not {SLOTS * SLOT_SIZE}",
            )
        found = [decode_slot(data[i * SLOT_SIZE : (i + 1) * SLOT_SIZE]) for i in range(SLOTS)]
        valid = [(slot[0], index, slot[1]) for index, slot in enumerate(found) if slot]
        if not valid:
            # The file is created with a record in it, so some record was durable: never
            # start fresh over it (that is how validators double-sign).
            raise ConsensusError(SIGNER_STATE, f"{self.path} is damaged: no slot holds a record")
        self.uncertain = len(valid) < SLOTS
        valid.sort(key=lambda entry: entry[0])
        sequence, index, state = valid[-1]
        if len(valid) == SLOTS:
            older_sequence, _, older = valid[0]
            if older_sequence == sequence or _position(older) > _position(state):
                # Each save moves one slot ahead of the other: anything else was not
                # written by this store.
                raise ConsensusError(
                    SIGNER_STATE, f"{self.path} is damaged: its two slots disagree"
                )
        self._sequence, self._newest_slot = sequence, index
        return state

    def save(self, state: SignerState) -> None:
        if self._sequence == 0:
            self._create(state)
            return
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR)
        slot = 1 - self._newest_slot  # never the one holding the newest durable record
        sequence = self._sequence + 1
        _write_all(self._fd, encode_slot(sequence, state), slot * SLOT_SIZE)
        os.fdatasync(self._fd)  # the one sync: only then may the signature leave
        self._sequence, self._newest_slot = sequence, slot

    def close(self) -> None:
        """Release the file (the node's stop); a later save opens it again."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read_legacy(self) -> SignerState:
        try:
            return SignerState.decode(self._legacy.read_bytes())
        except FluxError as exc:
            raise ConsensusError(
                SIGNER_STATE, f"{self._legacy} is damaged: {exc.message}"
            ) from None

    def _create(self, state: SignerState) -> None:
        """The file, `state` in both slots (sequences 1 and 2), durable under its name."""
        self.close()
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, encode_slot(1, state) + encode_slot(2, state), 0)
            os.fsync(fd)  # the slots are on disk before the file gets its name
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)
        self._sync_directory()  # the name itself is durable
        self._sequence, self._newest_slot = 2, 1

    def _sync_directory(self) -> None:
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def encode_slot(sequence: int, state: SignerState) -> bytes:
    """One slot's bytes, padded to SLOT_SIZE: magic, sequence (8 bytes), the record's
    length (4 bytes), the record, then SHA-256 over all of that."""
    record_bytes = pack(state.to_fields())
    body = SLOT_MAGIC + sequence.to_bytes(8, "big") + len(record_bytes).to_bytes(4, "big")
    body += record_bytes
    return (body + hashlib.sha256(body).digest()).ljust(SLOT_SIZE, b"\0")


def decode_slot(data: bytes) -> tuple[int, SignerState] | None:
    """(sequence, record) of a slot's bytes, or None for an empty, torn or garbled slot."""
    header = len(SLOT_MAGIC) + 12
    if len(data) < header or data[: len(SLOT_MAGIC)] != SLOT_MAGIC:
        return None
    sequence = int.from_bytes(data[len(SLOT_MAGIC) : len(SLOT_MAGIC) + 8], "big")
    length = int.from_bytes(data[len(SLOT_MAGIC) + 8 : header], "big")
    end = header + length
    if sequence == 0 or end + 32 > len(data):
        return None
    if hashlib.sha256(data[:end]).digest() != data[end : end + 32]:
        return None
    try:
        return sequence, SignerState.decode(data[header:end])
    except FluxError:
        return None  # a checksum over bytes that are no record: not ours


def _position(state: SignerState) -> tuple[int, int, int]:
    return (state.height, state.round, state.step)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class MemorySignerStore:
    """A record that lives in memory, for simulations and tests; never for a real key."""

    def __init__(self) -> None:
        self.state: SignerState | None = None
        self.uncertain = False

    def load(self) -> SignerState | None:
        return self.state

    def save(self, state: SignerState) -> None:
        self.state = state

    def close(self) -> None:
        pass


class SignerGuard:
    """Signs votes and proposals with `key` unless they could conflict with the record."""

    def __init__(
        self,
        key: SigningKey,
        chain_id: str,
        store: SignerStore,
        *,
        signing_height: int | None = None,
    ) -> None:
        """`signing_height`: the highest height this node can ever have signed at (its
        committed height + 1: consensus runs only on the height after a durable commit),
        the floor to stand above if the store's newest record may be lost."""
        self._key = key
        self.chain_id = chain_id
        self._store = store
        state = store.load()
        if state is None:
            state = SignerState(chain_id, key.public_key)
        elif state.chain_id != chain_id or state.pubkey != key.public_key:
            raise ConsensusError(SIGNER_STATE, "the signer record belongs to another key or chain")
        if store.uncertain:
            state = self._above_anything_signed(store, state, signing_height)
        self.state = state

    @staticmethod
    def _above_anything_signed(
        store: SignerStore, state: SignerState, signing_height: int | None
    ) -> SignerState:
        """A record that refuses every (height, round, step) up to `signing_height`.

        The lost record may have been any signature after `state`, but none above the
        height after the node's last durable commit: standing there costs at most that
        one height's votes, and no conflict is possible."""
        if signing_height is None:
            raise ConsensusError(
                SIGNER_STATE, "a signer slot is unreadable and no committed height bounds it"
            )
        floor = (signing_height, MAX_ROUND, int(Step.PRECOMMIT))
        if _position(state) < floor:
            state = replace(
                state,
                height=signing_height,
                round=MAX_ROUND,
                step=int(Step.PRECOMMIT),
                digest=b"",
                signature=b"",  # nothing to re-send: `last_vote` and `resume_for` see none
                block_hash=b"",
                valid_round=-1,
                valid_hash=b"",
            )
        log.warning(
            "signer record: a slot is unreadable (a crash during a save, or damage); "
            "refusing to sign at or below height %d",
            state.height,
        )
        store.save(state)  # the damaged slot is overwritten only now, with the floor
        return state

    @property
    def pubkey(self) -> bytes:
        return self._key.public_key

    def close(self) -> None:
        """Release the store's file (the node's stop)."""
        self._store.close()

    def resume_for(self, height: int) -> Resume | None:
        """Where we stood at `height` (for `NewHeight` after a restart); None if we never
        signed at it: then there is nothing to resume, and the height starts at round 0."""
        state = self.state
        if state.height != height or state.step == 0 or not state.signature:
            return None
        lock = None
        if state.lock_height == height and state.lock_round >= 0:
            lock = Lock(state.lock_round, state.lock_hash)
        valid = Lock(state.valid_round, state.valid_hash) if state.valid_round >= 0 else None
        return Resume(state.round, Step(state.step), lock, valid)

    def last_vote(self) -> Vote | None:
        """The last vote signed, rebuilt from the record: feed it back after a restart.

        Whatever was signed before it is in the host's WAL (flushed before each signature);
        this one may have been signed just before the crash and sent nowhere yet.
        """
        state = self.state
        if state.step not in (Step.PREVOTE, Step.PRECOMMIT) or not state.signature:
            return None
        vote_type = VoteType.PREVOTE if state.step == Step.PREVOTE else VoteType.PRECOMMIT
        return Vote(
            vote_type, state.height, state.round, state.block_hash, state.pubkey, state.signature
        )

    def sign_vote(self, request: SignVote) -> Vote:
        """The signed vote, or DoubleSignError."""
        digest = vote_digest(
            self.chain_id, request.vote_type, request.height, request.round, request.block_hash
        )
        step = _VOTE_STEP[request.vote_type]
        signature = self._sign(
            request.height, request.round, step, digest, request.block_hash, request.valid
        )
        return Vote(
            request.vote_type,
            request.height,
            request.round,
            request.block_hash,
            self._key.public_key,
            signature,
        )

    def sign_proposal(self, request: SignProposal) -> Proposal:
        """The signed proposal, or DoubleSignError."""
        digest = proposal_digest(
            self.chain_id, request.height, request.round, request.pol_round, request.block_hash
        )
        signature = self._sign(
            request.height, request.round, Step.PROPOSE, digest, NIL, request.valid
        )
        return Proposal(
            request.height,
            request.round,
            request.pol_round,
            request.block_hash,
            self._key.public_key,
            signature,
        )

    def _sign(
        self,
        height: int,
        round_: int,
        step: Step,
        digest: bytes,
        locks: bytes,
        valid: Lock | None,
    ) -> bytes:
        # `locks`: the block hash of a vote (NIL for nil, and for proposals).
        # `valid`: the engine's valid value, recorded with the signature.
        last = self.state
        requested = (height, round_, int(step))
        recorded = (last.height, last.round, last.step)
        if requested == recorded:
            if digest == last.digest:
                return last.signature  # the same request again: the same signature
            raise DoubleSignError(
                f"already signed something else at height {height} round {round_} {step.name}"
            )
        if requested < recorded:
            raise DoubleSignError(
                f"height {height} round {round_} {step.name} is before the last signature "
                f"(height {last.height} round {last.round} step {last.step})"
            )
        signature = self._key.sign(digest)
        state = replace(
            last,
            height=height,
            round=round_,
            step=int(step),
            digest=digest,
            signature=signature,
            block_hash=locks,
        )
        if height != last.height:
            state = replace(state, valid_round=-1, valid_hash=b"")  # a new height: none yet
        if step is Step.PRECOMMIT and locks != NIL:
            state = replace(state, lock_height=height, lock_round=round_, lock_hash=locks)
            valid = valid if valid is not None and valid.round >= round_ else Lock(round_, locks)
        if valid is not None and valid.round > state.valid_round:
            # Never to an earlier round (the engine never asks it; the record holds anyway).
            state = replace(state, valid_round=valid.round, valid_hash=valid.block_hash)
        self._store.save(state)  # durable before the signature exists outside this call
        self.state = state
        return signature
