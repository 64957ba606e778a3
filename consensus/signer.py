"""The double-sign guard: the only place a validator's consensus key signs.

Rule: never sign two different payloads for one (height, round, step), and never sign
for an earlier (height, round, step) than the last signature. The record of the last
signature reaches disk (file fsynced, renamed over the old one, directory fsynced)
BEFORE the signature is returned, so whatever leaves the process is already on record,
and after any crash the guard refuses what could conflict with it. An identical request
gets the recorded signature again, so a vote lost in a crash can be re-sent.

The record also holds the validator's lock (its last non-nil precommit at that height):
the engine's locking rule must survive a restart too, and the lock is set exactly when
that precommit is signed, so it is written in the same atomic record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Protocol

from consensus.errors import SIGNER_STATE, ConsensusError, DoubleSignError
from consensus.events import Lock, SignProposal, SignVote
from consensus.messages import Proposal, Step, proposal_digest
from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import U64, as_bytes, as_int, as_list, as_str, pack, unpack
from fluxchain.core.errors import FluxError
from fluxchain.core.votes import NIL, Vote, VoteType, vote_digest

STATE_FILE: Final = "signer_state.msgpack"
STATE_VERSION: Final = 1

_VOTE_STEP: Final = {VoteType.PREVOTE: Step.PREVOTE, VoteType.PRECOMMIT: Step.PRECOMMIT}


@dataclass(frozen=True, slots=True)
class SignerState:
    """The last signature and the current lock. height 0 means nothing signed yet."""

    chain_id: str
    pubkey: bytes
    height: int = 0
    round: int = 0
    step: int = 0
    digest: bytes = b""  # what was signed (the tagged hash)
    signature: bytes = b""
    block_hash: bytes = b""  # of the last vote, so that it can be rebuilt after a crash
    lock_height: int = 0
    lock_round: int = -1
    lock_hash: bytes = b""

    def to_fields(self) -> list[object]:
        return [
            STATE_VERSION,
            self.chain_id,
            self.pubkey,
            self.height,
            self.round,
            self.step,
            self.digest,
            self.signature,
            self.block_hash,
            self.lock_height,
            self.lock_round,
            self.lock_hash,
        ]

    @classmethod
    def decode(cls, data: bytes) -> SignerState:
        fields = as_list(unpack(data), "signer_state", length=12)
        if as_int(fields[0], "signer_state.version") != STATE_VERSION:
            raise ConsensusError(SIGNER_STATE, "unknown signer state version")
        return cls(
            as_str(fields[1], "signer_state.chain_id", max_len=256),
            as_bytes(fields[2], "signer_state.pubkey", max_len=33),
            as_int(fields[3], "signer_state.height", hi=U64),
            as_int(fields[4], "signer_state.round", hi=2**31),
            as_int(fields[5], "signer_state.step", hi=3),
            as_bytes(fields[6], "signer_state.digest", max_len=32),
            as_bytes(fields[7], "signer_state.signature", max_len=64),
            as_bytes(fields[8], "signer_state.block_hash", max_len=32),
            as_int(fields[9], "signer_state.lock_height", hi=U64),
            as_int(fields[10], "signer_state.lock_round", lo=-1, hi=2**31),
            as_bytes(fields[11], "signer_state.lock_hash", max_len=32),
        )


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

    def lock_for(self, height: int) -> Lock | None:
        """Our lock at `height` (for `NewHeight` after a restart), if we precommitted a value."""
        if self.state.lock_height != height or self.state.lock_round < 0:
            return None
        return Lock(self.state.lock_round, self.state.lock_hash)

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
        signature = self._sign(request.height, request.round, step, digest, request.block_hash)
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
        signature = self._sign(request.height, request.round, Step.PROPOSE, digest, NIL)
        return Proposal(
            request.height,
            request.round,
            request.pol_round,
            request.block_hash,
            self._key.public_key,
            signature,
        )

    def _sign(self, height: int, round_: int, step: Step, digest: bytes, locks: bytes) -> bytes:
        # `locks`: the block hash of a vote (NIL for nil, and for proposals).
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
        if step is Step.PRECOMMIT and locks != NIL:
            state = replace(state, lock_height=height, lock_round=round_, lock_hash=locks)
        self._store.save(state)  # durable before the signature exists outside this call
        self.state = state
        return signature
