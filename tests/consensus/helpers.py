"""Keys, validator sets and a restartable validator shared by the consensus unit tests."""

from __future__ import annotations

import os
from pathlib import Path

from consensus.engine import Engine
from consensus.errors import DoubleSignError
from consensus.events import (
    BlockValidated,
    Broadcast,
    CommitBlock,
    Input,
    Output,
    ProposalReceived,
    Replayed,
    SignProposal,
    SignVote,
    ValidateBlock,
    VoteReceived,
)
from consensus.signer import FileSignerStore, SignerGuard
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.core.votes import Vote
from fluxchain.node.wal import ConsensusWal, height_inputs
from tests.support.chain import vrf_key_of

CHAIN_ID = "fluxchain-test"


def keys(count: int, tag: bytes = b"k") -> list[SigningKey]:
    """Deterministic keys, sorted by public key (the validator set's order)."""
    made = [SigningKey(sha256(tag + bytes([i]))) for i in range(count)]
    return sorted(made, key=lambda k: k.public_key)


def validator_set(signers: list[SigningKey], powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [1] * len(signers)
    return ValidatorSet.of(
        [Validator(k.public_key, p, vrf_key_of(k)) for k, p in zip(signers, powers, strict=True)]
    )


def block_hash(label: str) -> bytes:
    return sha256(label.encode())


class ValidatorProcess:
    """One validator as the node runs it, without the network or a chain.

    The real engine, the signer guard on its record file and the consensus WAL on its
    file, fed as the driver feeds them (log the input, step, flush the WAL before each
    signature, feed the signed message back) and started, or restarted, through the node's
    own `height_inputs`. Every block is valid; the test delivers messages and fires the
    timeouts itself. `crash()` ends the process: only its files remain.
    """

    def __init__(
        self, key: SigningKey, home: Path, validators: ValidatorSet, height: int = 1
    ) -> None:
        self.key = key
        self.home = home
        self.validators = validators
        self.height = height
        self.outputs: list[Output] = []
        self.start()

    def start(self) -> None:
        self.guard = SignerGuard(self.key, CHAIN_ID, FileSignerStore(self.home))
        self.wal = ConsensusWal(self.home / "consensus.wal")
        self.engine = Engine(CHAIN_ID, self.key.public_key)
        for item in height_inputs(
            self.height, self.validators, self.validators, self.guard, self.wal
        ):
            self.feed(item)

    def crash(self) -> None:
        self.wal.close()

    def power_cut(self) -> None:
        """A crash that also loses what the WAL had written but not yet fsynced."""
        self.wal.close()
        os.truncate(self.wal.path, self.wal.synced_size)

    def feed(self, first: Input) -> list[Output]:
        """Step the engine with `first` and everything its outputs lead to."""
        produced: list[Output] = []
        queue: list[Input] = [first]
        while queue:
            item = queue.pop(0)
            self.wal.record(item)
            for output in self.engine.step(item):
                produced.append(output)
                follow_up = self._perform(output)
                if follow_up is not None:
                    queue.append(follow_up)
        self.outputs += produced
        return produced

    def _perform(self, output: Output) -> Input | None:
        try:
            if isinstance(output, SignVote):
                self.wal.flush()
                return VoteReceived(self.guard.sign_vote(output))
            if isinstance(output, SignProposal):
                self.wal.flush()
                return ProposalReceived(self.guard.sign_proposal(output), output.block_bytes)
        except DoubleSignError:
            return None
        if isinstance(output, ValidateBlock):
            return BlockValidated(output.block_hash, True)
        if isinstance(output, Replayed):
            self.wal.record(output.input)  # as the driver does: before what follows it
        return None

    def sent_votes(self) -> list[Vote]:
        """Every vote of ours that went out."""
        return [
            o.message
            for o in self.outputs
            if isinstance(o, Broadcast) and isinstance(o.message, Vote)
        ]

    def committed(self) -> list[bytes]:
        return [o.block_hash for o in self.outputs if isinstance(o, CommitBlock)]
