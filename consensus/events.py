"""What goes into the engine and what comes out of it: plain data, no behaviour.

The host (the node's driver, or the simulator) turns network messages, timer expiries
and validation results into inputs, and carries out every output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from consensus.evidence import DuplicateVoteEvidence
from consensus.messages import Proposal, Step
from fluxchain.core.encoding import Bytes, Record, Uint64, record
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit, Round, Vote, VoteType

# --- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lock:
    """A (round, block hash) a validator must not forget at a height.

    As its lock: its last non-nil precommit. As its valid value: the last block it saw
    2f+1 prevote in one round (the value it re-proposes).
    """

    round: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a restarted validator stood at a height, from its signer record.

    `round` and `step` are those of its last signature at the height: it never acts in an
    earlier round again. `lock` and `valid` are its lock and valid value as of that
    signature (`valid` is never older than `lock`).
    """

    round: int
    step: Step
    lock: Lock | None
    valid: Lock | None


@dataclass(frozen=True, slots=True)
class NewHeight:
    """Start `height` with its validator set.

    After a restart, `resume` is `guard.resume_for(height)`. `next_validators` is the set
    of `height + 1` when the host already knows it (this block cannot change the set): the
    engine then buffers next-height proposals from that height's proposers only.
    """

    height: int
    validators: ValidatorSet
    resume: Resume | None = None
    next_validators: ValidatorSet | None = None


@dataclass(frozen=True, slots=True)
class NextSetKnown:
    """The host learned the set of `height`, the engine's next, which it did not know at
    `NewHeight` (an epoch's first height): it committed the block that chose it. What the
    engine buffered of that height from keys outside it is dropped then, not at the
    replay (rev24 1)."""

    height: int
    validators: ValidatorSet


@dataclass(frozen=True, slots=True)
class StrangersDropped:
    """The host takes back places of the strangers' share (`Engine.buffers_as_stranger`)
    that the engine buffered for `height`, its next: `votes` came from a source over its
    part of the share, and another source under its part wants the places (rev24p C).
    Each one the engine held comes out `Refused`, so that it can come again."""

    height: int
    votes: tuple[Vote, ...]


@record("proposal_received")
@dataclass(frozen=True, slots=True)
class ProposalReceived(Record):
    """A proposal with its block, from the network or our own signer.

    The host has checked that `block_bytes` hash to `proposal.block_hash` (a decoding
    check, like any malformed message; a mismatch is dropped before the engine).
    """

    proposal: Proposal
    block_bytes: Annotated[bytes, Bytes()]


@record("vote_received")
@dataclass(frozen=True, slots=True)
class VoteReceived(Record):
    """A vote from the network or our own signer."""

    vote: Vote


@record("timeout_fired")
@dataclass(frozen=True, slots=True)
class TimeoutFired(Record):
    """A timeout scheduled by `ScheduleTimeout` expired."""

    height: Uint64
    round: Round
    step: Step


@dataclass(frozen=True, slots=True)
class BlockValidated:
    """The host's answer to `ValidateBlock`: is the block valid, and was it timely?

    `valid` is deterministic: every honest host gives the same answer for the block on
    top of the same chain (execution, header rules). `timely` is local: whether the
    block's time was acceptable to this host's clock when it judged the proposal (not
    beyond its clock + max_clock_drift_ms). The engine reads `timely` only for a fresh
    proposal (pol_round -1, L22); a re-proposal with a proof of lock (L28), a lock (L36)
    and a commit (L49) need only `valid`, so honest voters whose clocks disagreed once
    still agree on the block in a later round. Hosts without a clock rule (the
    simulator) leave it True.
    """

    block_hash: bytes
    valid: bool
    timely: bool = True


@dataclass(frozen=True, slots=True)
class ProposeBlock:
    """The host's answer to `BuildProposal`: a block it built (and so knows is valid)."""

    height: int
    round: int
    block_hash: bytes
    block_bytes: bytes


Input = (
    NewHeight
    | NextSetKnown
    | StrangersDropped
    | ProposalReceived
    | VoteReceived
    | TimeoutFired
    | BlockValidated
    | ProposeBlock
)

# --- outputs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every peer: a vote, or a proposal with its block bytes."""

    message: Proposal | Vote
    block_bytes: bytes = b""


@dataclass(frozen=True, slots=True)
class SignVote:
    """Ask the signer guard for this vote; feed the signed vote back as `VoteReceived`.

    `valid` is the engine's valid value at this moment: the guard records it with the
    signature, so that a restart resumes with it (`Resume.valid`).
    """

    vote_type: VoteType
    height: int
    round: int
    block_hash: bytes
    valid: Lock | None = None


@dataclass(frozen=True, slots=True)
class SignProposal:
    """Ask the signer guard for this proposal; feed it back as `ProposalReceived`."""

    height: int
    round: int
    pol_round: int
    block_hash: bytes
    block_bytes: bytes
    valid: Lock | None = None  # as in `SignVote`


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Deliver `TimeoutFired(height, round, step)` after `delay_ms`."""

    height: int
    round: int
    step: Step
    delay_ms: int


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    """Check the block on top of our chain at `height`; answer with `BlockValidated`."""

    height: int
    block_hash: bytes
    block_bytes: bytes


@dataclass(frozen=True, slots=True)
class BuildProposal:
    """We propose at (height, round): build a block and answer with `ProposeBlock`."""

    height: int
    round: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """`block_hash` is final at `height`: store it with its commit, then send `NewHeight`."""

    height: int
    block_hash: bytes
    block_bytes: bytes
    commit: Commit


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    """A validator signed two different votes: gossip the evidence and put it in a block."""

    evidence: DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class Refused:
    """A message the engine could not keep now, though it may need it later.

    Too far ahead (a round or height it cannot hold yet), or a full next-height buffer.
    The host must let the same message arrive again: it must not count it as seen (the
    network's duplicate suppression), or a proposal crowded out once is lost for good.
    """

    message: Proposal | Vote
    block_bytes: bytes = b""


@dataclass(frozen=True, slots=True)
class Replayed:
    """An input of the new height that came before it (buffered) and that `NewHeight`
    has now stepped: log it as the host logs its own inputs (the consensus WAL).

    The engine puts these first among `NewHeight`'s outputs, so a host that performs
    outputs in order has logged them before any signature they lead to: a validator that
    locks on a block taken during its commit wait, then crashes, must find that block and
    its proof of lock in its WAL (fluxchain/node/wal.py).
    """

    input: ProposalReceived | VoteReceived


Output = (
    Broadcast
    | SignVote
    | SignProposal
    | ScheduleTimeout
    | ValidateBlock
    | BuildProposal
    | CommitBlock
    | ReportEvidence
    | Refused
    | Replayed
)
