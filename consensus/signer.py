"""The double-sign guard: the only place a validator's consensus key signs.

Rule: never sign two different payloads for one (height, round, step), and never sign
for an earlier (height, round, step) than the last signature. The record of the last
signature reaches disk (file fsynced, renamed over the old one, directory fsynced)
BEFORE the signature is returned, so whatever leaves the process is already on record,
and after any crash the guard refuses what could conflict with it. An identical request
gets the recorded signature again, so a vote lost in a crash can be re-sent.

The record also holds what the engine must resume with after a restart, so that a
restarted validator is safe with or without its WAL: the round and step of the last
signature (it never acts in an earlier round again), its lock (its last non-nil precommit
at that height; set exactly when that precommit is signed) and its valid value (handed
over by the engine with each signature request). All of it is in the same atomic record
as the signature, so no crash can separate them.
"""

from __future__ import annotations

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

STATE_FILE: Final = "signer_state.msgpack"
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
    """Where the guard keeps its record. `save` returns only once the record is durable."""

    def load(self) -> SignerState | None: ...

    def save(self, state: SignerState) -> None: ...


class FileSignerStore:
    """The record in `<home>/signer_state.msgpack`, replaced atomically on every signature."""

    def __init__(self, home: Path) -> None:
        self.path = home / STATE_FILE
        self._tmp = home / (STATE_FILE + ".tmp")

    def load(self) -> SignerState | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return SignerState.decode(data)
        except FluxError as exc:
            # Never start fresh over a damaged record: that is how validators double-sign.
            raise ConsensusError(SIGNER_STATE, f"{self.path} is damaged: {exc.message}") from None

    def save(self, state: SignerState) -> None:
        data = pack(state.to_fields())
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # the new record's bytes are on disk before it gets the real name
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)  # atomic: a reader sees the old or the new record
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself is durable: no crash can bring back the old
        finally:
            os.close(dir_fd)


class MemorySignerStore:
    """A record that lives in memory, for simulations and tests; never for a real key."""

    def __init__(self) -> None:
        self.state: SignerState | None = None

    def load(self) -> SignerState | None:
        return self.state

    def save(self, state: SignerState) -> None:
        self.state = state


class SignerGuard:
    """Signs votes and proposals with `key` unless they could conflict with the record."""

    def __init__(self, key: SigningKey, chain_id: str, store: SignerStore) -> None:
        self._key = key
        self.chain_id = chain_id
        self._store = store
        state = store.load()
        if state is None:
            state = SignerState(chain_id, key.public_key)
        elif state.chain_id != chain_id or state.pubkey != key.public_key:
            raise ConsensusError(SIGNER_STATE, "the signer record belongs to another key or chain")
        self.state = state

    @property
    def pubkey(self) -> bytes:
        return self._key.public_key

    def resume_for(self, height: int) -> Resume | None:
        """Where we stood at `height` (for `NewHeight` after a restart); None if we never
        signed at it: then there is nothing to resume, and the height starts at round 0."""
        state = self.state
        if state.height != height or state.step == 0:
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
        if state.step not in (Step.PREVOTE, Step.PRECOMMIT):
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
