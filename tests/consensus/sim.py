"""Deterministic simulation of a validator network driving the real consensus engine.

Everything random comes from one `random.Random(seed)`: the validator set, the faults,
every delay, drop, duplicate and crash. The same seed replays the same run exactly.

The world: N validators (4..7, unequal power) behind a simulated network. Before GST the
network delays messages arbitrarily, drops, duplicates and reorders them, and may split
the validators into partitions; honest validators may crash and restart through the
node's own restart path (`fluxchain.node.wal.height_inputs`: the signer record's round,
lock and valid value, then the real `ConsensusWal` replayed, timeouts included; their
committed blocks survive too). A crash is a power cut: the WAL file keeps what was
fsynced and a random part of the rest (a torn tail). Up to f < N/3 of the power is
byzantine: silent, or equivocating (conflicting prevotes and precommits, two proposals,
invalid blocks), or splitting its peers (every message to one half, a conflicting twin to
the other), or hostile (garbage, far-future, misattributed and body-swapped proposals, and
votes from keys outside the validator set). After GST every message arrives within
DELTA_MS and nobody crashes.

Each honest host does what the real node does around the engine: signs through the
signer guard, validates blocks, re-gossips the messages of its height that a peer has
not seen (as peers learn from each other's HasVote announcements), and syncs committed
blocks with their commits to peers that fell behind.

Invariants, checked as the run goes (a violation stops it with its seed):
- agreement: no two honest validators commit different blocks at one height;
- validity: an honest validator commits only valid blocks, each with a commit
  certificate that `Commit.verify` accepts;
- evidence: every equivocation report verifies, and names a byzantine validator;
- liveness: after GST every honest validator reaches the target height within a bound
  of simulated time.

Replay a seed:  FLUX_SIM_SEED=<seed> pytest tests/consensus -k replay
Figures:        python -m tests.consensus.sim --seeds 200 --heights 50
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from consensus.engine import Engine, Fate
from consensus.errors import DoubleSignError
from consensus.events import (
    BlockValidated,
    Broadcast,
    BuildProposal,
    CommitBlock,
    Input,
    NewHeight,
    Output,
    ProposalReceived,
    ProposeBlock,
    Refused,
    Replayed,
    ReportEvidence,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import Proposal, Step
from consensus.proposer import proposer
from consensus.signer import MemorySignerStore, SignerGuard
from consensus.timeouts import TimeoutParams
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.errors import FluxError
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.core.votes import NIL, Commit, Vote
from fluxchain.node.wal import ConsensusWal, height_inputs
from p2p.consensus_gossip import ConsensusGossip, LocalConsensus, SendProposal
from p2p.limits import default_relay_fanout
from p2p.messages import Kind, RoundState
from p2p.peer import BoundedSet, SeenTimes
from tests.support.chain import vrf_key_of

CHAIN_ID: Final = "fluxchain-sim"
DELTA_MS: Final = 60  # the message delay bound after GST
GOSSIP_MS: Final = 400  # how often a host re-gossips what its peers lack
SYNC_BATCH: Final = 8  # committed blocks sent to a lagging peer at once
TIMEOUTS: Final = TimeoutParams(
    propose_ms=300,
    propose_delta_ms=60,
    prevote_ms=150,
    prevote_delta_ms=60,
    precommit_ms=150,
    precommit_delta_ms=60,
)
REPLAY_HINT: Final = "FLUX_SIM_SEED={seed} pytest tests/consensus -k replay"

# Event kinds, ordered only for readability; the heap orders by (time, sequence number).
DELIVER, TIMEOUT, HOST, GOSSIP, CRASH, RESTART = range(6)


class InvariantError(AssertionError):
    """An invariant failed; the message names the seed and how to replay it."""


def make_block(height: int, round_: int, proposer: int, valid: bool, nonce: int) -> bytes:
    """Opaque block bytes; the simulation's validity rule reads them back."""
    return pack([height, round_, proposer, 1 if valid else 0, nonce])


def is_valid_block(block_bytes: bytes, height: int) -> bool:
    """The validity function every honest host applies (deterministic, as on a real chain)."""
    try:
        fields = unpack(block_bytes)
    except FluxError:
        return False
    return isinstance(fields, list) and len(fields) == 5 and fields[0] == height and fields[3] == 1


# --- hostile proposals (issue 17) ------------------------------------------------------
#
# A "hostile" byzantine validator proposes, in turn, each kind of block an honest voter
# must refuse: garbage bytes, a block of another height, a block naming another proposer
# (the header rule ties the proposer to the block's round), a block timed at 2^64 - 1 or
# past the chain's time cap (the header rule), a block timed past the voter's clock plus
# its drift (refused only when voting, as `check_timely` does), and a proposal whose
# block does not hash to what it names (refused before the engine, as a body swap is).

HOSTILE_BLOCKS: Final = (
    "garbage",
    "wrong_height",
    "other_proposer",
    "time_u64_max",
    "time_past_cap",
    "time_past_drift",
    "body_mismatch",
)
MAX_BLOCK_TIME_MS: Final = 2**40  # the header rule's cap: far below U64, beyond any run
VOTER_DRIFT_MS: Final = 1_000  # how far past its clock a voter accepts a block's time
JUNK_KEYS: Final = 3  # non-validator keys whose votes a hostile validator sends


def make_timed_block(height: int, round_: int, proposer: int, nonce: int, time_ms: int) -> bytes:
    """A block that carries a time (only hostile proposers set one; honest blocks have none)."""
    return pack([height, round_, proposer, 1, nonce, time_ms])


def block_rules_ok(
    block_bytes: bytes, height: int, validators: ValidatorSet, keys: list[bytes]
) -> bool:
    """The header rules every node applies on top of `is_valid_block`: the block names
    the proposer of its own round, and a time it carries is under the cap."""
    try:
        fields = unpack(block_bytes)
    except FluxError:
        return False
    if not isinstance(fields, list) or len(fields) not in (5, 6) or fields[0] != height:
        return False
    round_, named = fields[1], fields[2]
    if not (isinstance(round_, int) and isinstance(named, int) and 0 <= named < len(keys)):
        return False
    if proposer(validators, height, round_) != keys[named]:
        return False
    if len(fields) == 6:
        return fields[3] == 1 and isinstance(fields[5], int) and fields[5] <= MAX_BLOCK_TIME_MS
    return is_valid_block(block_bytes, height)


def one_byzantine(role: str, heights: int, seed: int) -> Scenario:
    """Four equal validators, validator 0 byzantine in `role`, a synchronous network."""
    return Scenario(
        seed=seed,
        heights=heights,
        powers=[1, 1, 1, 1],
        byzantine={0: role},
        gst_ms=0,
        drop=0.0,
        duplicate=0.0,
        max_delay_ms=DELTA_MS,
        partitions=[],
        crashes=[],
    )


def timely(block_bytes: bytes, now_ms: int) -> bool:
    """The voter's clock rule (`fluxchain.core.execute.check_timely`): a block timed more
    than VOTER_DRIFT_MS past our clock is refused when voting, never when syncing."""
    fields = unpack(block_bytes)
    return len(fields) != 6 or fields[5] <= now_ms + VOTER_DRIFT_MS


@dataclass(frozen=True, slots=True)
class SyncBlock:
    """Block sync: a committed block with its commit, for a peer that fell behind."""

    height: int
    block_bytes: bytes
    commit: Commit


@dataclass(frozen=True, slots=True)
class Frame:
    """One p2p frame between two hosts: a proposal, a vote or a ROUND_STATE.

    `seq` numbers a host's ROUND_STATE frames and `incarnation` its process: a real
    connection is ordered (TCP) and dies with the process, so a receiver ignores an
    announcement older than one it already has, or from a process that has since
    restarted; votes and proposals may arrive in any order.
    """

    src: int
    message: Proposal | Vote | RoundState
    seq: int = 0
    incarnation: int = 0


Message = Proposal | Vote | list[SyncBlock] | Frame


@dataclass(slots=True)
class Scenario:
    """Everything the seed decides before the run starts."""

    seed: int
    heights: int
    powers: list[int]
    # validator index -> "silent" | "equivocate" | "invalid" | "hostile" | "split"
    byzantine: dict[int, str]
    gst_ms: int
    drop: float
    duplicate: float
    max_delay_ms: int
    partitions: list[tuple[int, int, list[int]]]  # (start, end, side of each validator)
    crashes: list[tuple[int, int, int]]  # (validator, crash time, restart time)

    @classmethod
    def from_seed(cls, seed: int, heights: int) -> Scenario:
        rng = random.Random(seed ^ 0x5EED)
        n = rng.randint(4, 7)
        powers = [rng.choice((1, 1, 2, 3, 5, 8)) for _ in range(n)]
        total = sum(powers)
        byzantine: dict[int, str] = {}
        for i in rng.sample(range(n), n):
            if 3 * (sum(powers[j] for j in byzantine) + powers[i]) < total and rng.random() < 0.6:
                byzantine[i] = rng.choice(
                    ("silent", "equivocate", "equivocate", "invalid", "hostile", "split")
                )
        gst_ms = rng.choice((0, rng.randint(1_000, 6_000), rng.randint(5_000, 15_000)))
        stormy = gst_ms > 0
        partitions = []
        crashes = []
        if stormy:
            for _ in range(rng.randint(0, 2)):
                start = rng.randint(0, gst_ms)
                end = rng.randint(start, gst_ms)
                partitions.append((start, end, [rng.randint(0, 1) for _ in range(n)]))
            honest = [i for i in range(n) if i not in byzantine]
            for i in rng.sample(honest, rng.randint(0, min(2, len(honest)))):
                down = rng.randint(0, gst_ms)
                crashes.append((i, down, rng.randint(down, gst_ms)))
        return cls(
            seed=seed,
            heights=heights,
            powers=powers,
            byzantine=dict(sorted(byzantine.items())),
            gst_ms=gst_ms,
            drop=rng.choice((0.0, 0.05, 0.2, 0.4)) if stormy else 0.0,
            duplicate=rng.choice((0.0, 0.05, 0.2)),
            max_delay_ms=rng.choice((DELTA_MS, 300, 1_500)) if stormy else DELTA_MS,
            partitions=partitions,
            crashes=crashes,
        )

    def describe(self) -> str:
        return (
            f"seed={self.seed} n={len(self.powers)} powers={self.powers} "
            f"byzantine={self.byzantine} gst_ms={self.gst_ms} drop={self.drop} "
            f"dup={self.duplicate} max_delay_ms={self.max_delay_ms} "
            f"partitions={len(self.partitions)} crashes={len(self.crashes)}"
        )

    def schedule(self) -> str:
        """When each fault strikes: crashes (validator, down, up) and partitions, in ms."""
        return f"crashes={self.crashes} partitions={self.partitions}"


@dataclass(slots=True)
class SimResult:
    """What a run did: heights reached, faults injected, and what the engine reported."""

    scenario: Scenario
    sim_time_ms: int = 0
    events: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    max_round: int = 0


class HostDisk:
    """What survives a host's crash, as on a node's disk, and the node's restart path.

    The signer record (in memory: the file store's fsync is tested on its own) and the
    node's `ConsensusWal` in a temporary directory. Its fsync only notes how far the file
    is durable (`synced_size`); a power cut then keeps that much and a random part of the
    rest, so a replay may end on a torn record, as after a real crash.
    """

    def __init__(self, directory: Path, index: int) -> None:
        self.store = MemorySignerStore()
        self.wal = ConsensusWal(directory / f"consensus-{index}.wal", fsync=self._fsync)

    @staticmethod
    def _fsync(fd: int) -> None:
        """Durability is modelled by `ConsensusWal.synced_size`, not paid for."""

    def power_cut(self, rng: random.Random) -> int:
        """Lose what a power cut may lose; return how many WAL bytes were lost."""
        wal = self.wal
        keep = rng.randint(wal.synced_size, wal.size)
        wal.close()
        os.truncate(wal.path, keep)
        return wal.size - keep

    def height_inputs(
        self, height: int, validators: ValidatorSet, guard: SignerGuard
    ) -> list[Input]:
        """What the node feeds a fresh engine at `height`: after a restart, its resume."""
        return height_inputs(height, validators, validators, guard, self.wal)


class Host:
    """One validator: the engine plus the node duties around it."""

    def __init__(self, sim: Simulation, index: int, key: SigningKey, role: str) -> None:
        self.sim = sim
        self.index = index
        self.key = key
        self.role = role  # "honest" | "silent" | "equivocate" | "invalid"
        self.disk = HostDisk(sim.disk_dir, index)  # signer record and WAL survive crashes
        self.guard = SignerGuard(key, CHAIN_ID, self.disk.store)
        self.engine = Engine(CHAIN_ID, key.public_key, TIMEOUTS)
        self.committed: dict[int, SyncBlock] = {}  # survives crashes, like the block store
        self.up = True
        self.incarnation = 0
        # Messages of our height and the next, by height and round, to re-gossip.
        self.messages: dict[int, dict[int, dict[bytes, Proposal | Vote]]] = {}
        self.block_of: dict[bytes, bytes] = {}  # proposal signature -> block bytes
        self.twin: dict[bytes, Proposal | Vote] = {}  # byzantine: signature -> conflicting twin
        self.twin_blocks: dict[bytes, bytes] = {}

    @property
    def honest(self) -> bool:
        return self.role == "honest"

    @property
    def height(self) -> int:
        return len(self.committed) + 1

    def start(self) -> list[Input]:
        """Start our next height as the node does (after a restart: resume it)."""
        inputs = self.disk.height_inputs(self.height, self.sim.validators, self.guard)
        for inp in inputs:
            self.feed(inp)
        return inputs

    def crash(self) -> None:
        self.up = False
        self.sim.result.faults["wal_bytes_torn"] += self.disk.power_cut(self.sim.rng)
        self.incarnation += 1  # events scheduled before the crash die with the process
        self.sim.result.faults["crashes"] += 1

    def restart(self) -> None:
        self.up = True
        faults = self.sim.result.faults
        faults["restarts"] += 1
        # A new process: fresh engine, signer record and blocks read back from "disk".
        self.guard = SignerGuard(self.key, CHAIN_ID, self.disk.store)
        self.engine = Engine(CHAIN_ID, self.key.public_key, TIMEOUTS)
        self.messages = {}
        self.block_of = {}
        inputs = self.start()
        first = inputs[0]
        if isinstance(first, NewHeight) and first.resume is not None:
            faults["restarts_resumed_mid_height"] += 1
            faults["restarts_resumed_above_round_0"] += first.resume.round > 0
        faults["wal_timeouts_replayed"] += sum(isinstance(i, TimeoutFired) for i in inputs)

    # --- the engine loop ----------------------------------------------------------------

    def feed(self, first: Input) -> bool:
        """Step the engine with `first` and what its outputs lead to, logging what it keeps
        (fluxchain.node.driver.Driver._feed); whether `first`, a proposal, may be relayed:
        the driver's verdict when nothing is queued before it (`Driver.submit_proposal`)."""
        relay = False
        pending = [first]
        while pending:
            inp = pending.pop(0)
            if isinstance(inp, ProposalReceived):
                fate, kept = self.judge_proposal(inp)
                if inp is first:
                    relay = kept
                if fate is Fate.REFUSE:
                    self.handle(Refused(inp.proposal, inp.block_bytes))
                if fate is not Fate.KEEP:
                    continue  # neither logged nor stepped (Driver._worth_stepping)
            self.disk.wal.record(inp)  # proposals, votes and timeouts of our height, once
            if isinstance(inp, VoteReceived):
                self.remember(inp.vote)
            elif isinstance(inp, ProposalReceived):
                self.block_of[inp.proposal.signature] = inp.block_bytes
                self.remember(inp.proposal)
            for out in self.engine.step(inp):
                follow_up = self.handle(out)
                if follow_up is not None:
                    pending.append(follow_up)
        if self.engine.round > self.sim.result.max_round:
            self.sim.result.max_round = self.engine.round
        return relay

    def judge_proposal(self, inp: ProposalReceived) -> tuple[Fate, bool]:
        """fluxchain.node.driver.Driver._judge: the engine's fate for a proposal of its
        height, and whether it may be relayed (kept, or buffered for the next height)."""
        p = inp.proposal
        if p.height == self.engine.height:
            fate = self.engine.proposal_fate(p)
            return fate, fate is Fate.KEEP
        return Fate.KEEP, self.engine.keeps_next(p)

    def handle(self, out: Output) -> Input | None:
        sim = self.sim
        if isinstance(out, SignVote):
            return self.sign_vote(out)
        if isinstance(out, SignProposal):
            return self.sign_proposal(out)
        if isinstance(out, Broadcast):
            self.broadcast(out.message, out.block_bytes)
        elif isinstance(out, ScheduleTimeout):
            timeout = TimeoutFired(out.height, out.round, out.step)
            sim.schedule(out.delay_ms, TIMEOUT, self.index, (self.incarnation, timeout))
        elif isinstance(out, ValidateBlock):
            verdict = BlockValidated(out.block_hash, self.judge(out.block_bytes, out.height))
            sim.schedule(sim.rng.randint(1, 15), HOST, self.index, (self.incarnation, verdict))
        elif isinstance(out, BuildProposal):
            sim.schedule(
                sim.rng.randint(1, 15), HOST, self.index, (self.incarnation, self.build(out))
            )
        elif isinstance(out, CommitBlock):
            self.commit(out)
        elif isinstance(out, ReportEvidence):
            sim.check_evidence(self, out)
        elif isinstance(out, Refused):
            sim.result.faults["messages_refused_for_now"] += 1
        elif isinstance(out, Replayed):
            self.disk.wal.record(out.input)  # as the driver does: before what follows it
        return None

    def sign_vote(self, request: SignVote) -> Input | None:
        if not self.honest:
            return VoteReceived(self.sign_vote_byzantine(request))
        self.disk.wal.flush()  # what led to this vote is on disk before it
        try:
            return VoteReceived(self.guard.sign_vote(request))
        except DoubleSignError:
            self.sim.result.faults["signer_refusals_after_restart"] += 1
            return None

    def sign_proposal(self, request: SignProposal) -> Input | None:
        if not self.honest:
            return ProposalReceived(self.sign_proposal_byzantine(request), request.block_bytes)
        self.disk.wal.flush()
        try:
            return ProposalReceived(self.guard.sign_proposal(request), request.block_bytes)
        except DoubleSignError:
            self.sim.result.faults["signer_refusals_after_restart"] += 1
            return None

    def build(self, request: BuildProposal) -> ProposeBlock:
        sim = self.sim
        if self.role == "hostile":
            return self.build_hostile(request)
        valid = not (self.role == "invalid" and sim.rng.random() < 0.7)
        if not valid:
            sim.result.faults["invalid_proposals"] += 1
        block = make_block(
            request.height, request.round, self.index, valid, sim.rng.getrandbits(32)
        )
        return ProposeBlock(request.height, request.round, sha256(block), block)

    def commit(self, out: CommitBlock) -> None:
        if out.height in self.committed:
            return
        self.sim.check_commit(self, out.height, out.block_bytes, out.commit)
        self.committed[out.height] = SyncBlock(out.height, out.block_bytes, out.commit)
        # The host executes the block, then starts the next height (its timeout_commit).
        self.sim.schedule(self.sim.rng.randint(1, 30), HOST, self.index, (self.incarnation, None))

    def next_height(self) -> None:
        if self.engine.height < self.height:
            self.start()
            for height in [h for h in self.messages if h < self.engine.height]:
                del self.messages[height]

    # --- byzantine behaviour ------------------------------------------------------------

    def sign_vote_byzantine(self, request: SignVote) -> Vote:
        sim = self.sim
        if self.role == "hostile":
            self.send_junk_votes(request)
        vote = Vote.create(
            self.key, CHAIN_ID, request.vote_type, request.height, request.round, request.block_hash
        )
        if self.role == "split" or sim.rng.random() < 0.6:
            if request.block_hash != NIL:
                other = NIL
            else:
                other = sha256(b"phantom" + vote.signature)
                for message in (
                    self.messages.get(request.height, {}).get(request.round, {}).values()
                ):
                    if isinstance(message, Proposal):
                        other = message.block_hash
            self.twin[vote.signature] = Vote.create(
                self.key, CHAIN_ID, request.vote_type, request.height, request.round, other
            )
            sim.result.faults["equivocating_votes"] += 1
        return vote

    def sign_proposal_byzantine(self, request: SignProposal) -> Proposal:
        sim = self.sim
        proposal = Proposal.create(
            self.key,
            CHAIN_ID,
            request.height,
            request.round,
            request.pol_round,
            request.block_hash,
        )
        if self.role == "split" or sim.rng.random() < 0.6:
            valid = sim.rng.random() < 0.5
            block = make_block(
                request.height, request.round, self.index, valid, sim.rng.getrandbits(32)
            )
            twin = Proposal.create(
                self.key, CHAIN_ID, request.height, request.round, -1, sha256(block)
            )
            self.twin[proposal.signature] = twin
            self.twin_blocks[twin.signature] = block
            sim.result.faults["double_proposals"] += 1
        return proposal

    # --- byzantine behaviour of issue 17: hostile blocks, junk votes, split peers ----------

    def judge(self, block_bytes: bytes, height: int) -> bool:
        """An honest voter's verdict on a proposed block: valid, by the header rules, and
        not timed past its clock."""
        sim = self.sim
        keys = [h.key.public_key for h in sim.hosts]
        return block_rules_ok(block_bytes, height, sim.validators, keys) and timely(
            block_bytes, sim.now
        )

    def build_hostile(self, request: BuildProposal) -> ProposeBlock:
        """The next kind of HOSTILE_BLOCKS, in turn."""
        sim = self.sim
        kind = HOSTILE_BLOCKS[sim.result.faults["hostile_proposals"] % len(HOSTILE_BLOCKS)]
        sim.result.faults["hostile_proposals"] += 1
        sim.result.faults[f"hostile_{kind}"] += 1
        height, round_, nonce = request.height, request.round, sim.rng.getrandbits(32)
        honest = make_block(height, round_, self.index, True, nonce)
        if kind == "garbage":
            block = sim.rng.randbytes(sim.rng.randint(1, 64))
        elif kind == "wrong_height":
            block = make_block(height + 1, round_, self.index, True, nonce)
        elif kind == "other_proposer":
            other = (self.index + 1) % len(sim.hosts)
            block = make_block(height, round_, other, True, nonce)
        elif kind == "time_u64_max":
            block = make_timed_block(height, round_, self.index, nonce, 2**64 - 1)
        elif kind == "time_past_cap":
            block = make_timed_block(height, round_, self.index, nonce, MAX_BLOCK_TIME_MS + 1)
        elif kind == "time_past_drift":
            late = sim.now + VOTER_DRIFT_MS + 10 * DELTA_MS
            block = make_timed_block(height, round_, self.index, nonce, late)
        else:  # body_mismatch: the proposal names the honest block, the wire carries another
            other_body = make_block(height, round_, self.index, True, nonce + 1)
            return ProposeBlock(height, round_, sha256(honest), other_body)
        return ProposeBlock(height, round_, sha256(block), block)

    def send_junk_votes(self, request: SignVote) -> None:
        """Votes of this (height, round, type) from keys outside the validator set."""
        sim = self.sim
        for i in range(JUNK_KEYS):
            key = SigningKey(
                sha256(b"sim-junk" + sim.scenario.seed.to_bytes(8, "big") + bytes([i]))
            )
            block_hash = sha256(b"junk" + sim.rng.getrandbits(32).to_bytes(4, "big"))
            vote = Vote.create(
                key, CHAIN_ID, request.vote_type, request.height, request.round, block_hash
            )
            sim.result.faults["junk_votes"] += 1
            for peer in sim.hosts:
                if peer is not self:
                    sim.send(self, peer, vote)

    def send_split(
        self, peers: list[Host], message: Proposal | Vote, twin: Proposal | Vote
    ) -> None:
        """Equivocation that splits the network: one half of the peers gets `message`, the
        other its conflicting twin (the halves change with every message)."""
        sim = self.sim
        order = sorted(peers, key=lambda _: sim.rng.random())
        half = len(order) // 2
        sim.result.faults["split_equivocations"] += 1
        for i, peer in enumerate(order):
            sim.send(self, peer, message if i < half else twin)

    # --- network ------------------------------------------------------------------------

    def broadcast(self, message: Proposal | Vote, block_bytes: bytes) -> None:
        sim = self.sim
        if isinstance(message, Proposal):
            self.block_of[message.signature] = block_bytes
        self.remember(message)
        twin = self.twin.pop(message.signature, None)
        peers = [h for h in sim.hosts if h is not self]
        if twin is None:
            for peer in peers:
                sim.send(self, peer, message)
            return
        if isinstance(twin, Proposal):
            self.block_of[twin.signature] = self.twin_blocks.pop(twin.signature)
        if self.role == "split":
            self.send_split(peers, message, twin)
            return
        for peer in peers:
            sim.send(self, peer, message if sim.rng.random() < 0.5 else twin)

    def remember(self, message: Proposal | Vote) -> None:
        """Keep a message of our height or the next one, to re-gossip it."""
        if self.engine.height <= message.height <= self.engine.height + 1:
            rounds = self.messages.setdefault(message.height, {})
            rounds.setdefault(message.round, {}).setdefault(message.signature, message)

    def lacks(self, message: Proposal | Vote) -> bool:
        """Whether this host's engine is missing `message` (what HasVote tells real peers)."""
        engine = self.engine
        if message.height != engine.height or engine.validators is None:
            return message.height > engine.height
        if isinstance(message, Proposal):
            return engine.proposal(message.round, message.block_hash) is None
        return not engine.votes.holds(message)

    def receive(self, message: Message) -> None:
        if isinstance(message, list):
            self.receive_sync(message)
            return
        if isinstance(message, Vote):
            self.feed(VoteReceived(message))
            return
        if isinstance(message, Frame):
            return  # p2p frames are for RealGossipHost (below); this host gossips ideally
        block_bytes = self.sim.block_bytes[message.signature]
        self.block_of[message.signature] = block_bytes
        if sha256(block_bytes) != message.block_hash:
            return  # decode-level check of the host, before the engine
        self.feed(ProposalReceived(message, block_bytes))

    def receive_sync(self, blocks: list[SyncBlock]) -> None:
        for block in blocks:
            if block.height != self.height or block.height in self.committed:
                continue
            self.sim.result.faults["blocks_synced"] += 1
            # What block import does: verify the commit and the block, store, move on.
            self.sim.check_commit(self, block.height, block.block_bytes, block.commit)
            self.committed[block.height] = block
        self.next_height()

    def gossip(self) -> None:
        """Send each peer what it lacks: our height's messages, or blocks it is missing."""
        sim = self.sim
        for peer in sim.hosts:
            if peer is self or not peer.up:
                continue
            if peer.height < self.height:
                blocks = [
                    self.committed[h]
                    for h in range(peer.height, min(self.height, peer.height + SYNC_BATCH))
                ]
                sim.send(self, peer, blocks)
            elif peer.engine.height == self.engine.height:
                # As real gossip does: the peer's round and later ones, and the rounds
                # whose prevotes prove the locks those rounds' proposals claim.
                rounds = self.messages.get(self.engine.height, {})
                wanted = {r: None for r in rounds if r >= peer.engine.round - 1}
                for r in list(wanted):
                    for message in rounds[r].values():
                        if isinstance(message, Proposal) and message.pol_round >= 0:
                            wanted[message.pol_round] = None
                for r in wanted:
                    for message in rounds.get(r, {}).values():
                        if peer.lacks(message):
                            sim.send(self, peer, message)


class Simulation:
    """The seeded world: hosts, network, clock, and the invariant checks."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.result = SimResult(scenario)
        self.now = 0
        self._queue: list[tuple[int, int, int, int, object]] = []
        self._sequence = 0
        # The hosts' disks (WAL files); removed when the run ends.
        self.disk_dir = Path(tempfile.mkdtemp(prefix="flux-sim-"))
        keys = [
            SigningKey(sha256(b"sim-key" + scenario.seed.to_bytes(8, "big") + bytes([i])))
            for i in range(len(scenario.powers))
        ]
        self.validators = ValidatorSet.of(
            [
                Validator(k.public_key, p, vrf_key_of(k))
                for k, p in zip(keys, scenario.powers, strict=True)
            ]
        )
        self.hosts = [
            Host(self, i, key, scenario.byzantine.get(i, "honest")) for i, key in enumerate(keys)
        ]
        self.byzantine_keys = {self.hosts[i].key.public_key for i in scenario.byzantine}
        self.block_bytes: dict[bytes, bytes] = {}  # proposal signature -> block, "on the wire"
        self.decisions: dict[int, bytes] = {}  # height -> block hash committed by honest hosts
        for role in scenario.byzantine.values():
            self.result.faults[f"byzantine_{role}"] += 1
        self.result.faults["partitions"] += len(scenario.partitions)
        self.deadline = self._deadline()

    def _deadline(self) -> int:
        """Liveness bound: GST plus a generous but finite time per height after it.

        A height after GST needs at most a few rounds (byzantine proposers, rounds to catch
        up to), each bounded by its timeouts plus message delays; the bound allows 2n + 4
        rounds per height, and the first height after GST may start at a high round.
        """
        n = len(self.scenario.powers)

        def rounds_time(first: int, count: int) -> int:
            return sum(
                TIMEOUTS.timeout_ms(Step.PROPOSE, r)
                + TIMEOUTS.timeout_ms(Step.PREVOTE, r)
                + TIMEOUTS.timeout_ms(Step.PRECOMMIT, r)
                + 6 * DELTA_MS
                + GOSSIP_MS
                for r in range(first, first + count)
            )

        per_height = rounds_time(0, 2 * n + 4)
        # Rounds climb before GST at most once per (shortest) round duration.
        climbed = self.scenario.gst_ms // (TIMEOUTS.precommit_ms + TIMEOUTS.prevote_ms) + 1
        return (
            self.scenario.gst_ms
            + rounds_time(climbed, 2 * n + 4)
            + self.scenario.heights * per_height
        )

    # --- scheduling and network ---------------------------------------------------------

    def schedule(self, delay_ms: int, kind: int, target: int, payload: object) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (self.now + delay_ms, self._sequence, kind, target, payload))

    def partitioned(self, a: int, b: int) -> bool:
        for start, end, side in self.scenario.partitions:
            if start <= self.now < end and side[a] != side[b]:
                return True
        return False

    def send(self, src: Host, dst: Host, message: Message) -> None:
        faults = self.result.faults
        if isinstance(message, Proposal):
            self.block_bytes[message.signature] = src.block_of[message.signature]
        before_gst = self.now < self.scenario.gst_ms
        if before_gst and self.partitioned(src.index, dst.index):
            faults["messages_cut_by_partition"] += 1
            return
        if before_gst and self.rng.random() < self.scenario.drop:
            faults["messages_dropped"] += 1
            return
        copies = 1
        if self.rng.random() < self.scenario.duplicate:
            copies = 2
            faults["messages_duplicated"] += 1
        for _ in range(copies):
            delay = self.rng.randint(1, self.scenario.max_delay_ms if before_gst else DELTA_MS)
            # Partial synchrony: whatever is in flight at GST arrives within DELTA after it.
            arrival = min(self.now + delay, max(self.now, self.scenario.gst_ms) + DELTA_MS)
            self.schedule(arrival - self.now, DELIVER, dst.index, message)

    # --- invariants ---------------------------------------------------------------------

    def fail(self, what: str) -> None:
        raise InvariantError(
            f"{what} at t={self.now}ms [{self.scenario.describe()}]\n"
            f"schedule: {self.scenario.schedule()}\n"
            f"replay: {REPLAY_HINT.format(seed=self.scenario.seed)}"
            + (f" FLUX_SIM_HEIGHTS={self.scenario.heights}" if self.scenario.heights != 50 else "")
        )

    def check_commit(self, host: Host, height: int, block_bytes: bytes, commit: Commit) -> None:
        if not host.honest:
            return
        block_hash = sha256(block_bytes)
        decided = self.decisions.setdefault(height, block_hash)
        if decided != block_hash:
            self.fail(f"agreement: validator {host.index} committed another block at {height}")
        keys = [h.key.public_key for h in self.hosts]
        if not block_rules_ok(block_bytes, height, self.validators, keys):
            self.fail(f"validity: validator {host.index} committed an invalid block at {height}")
        try:
            commit.verify(CHAIN_ID, self.validators, height, block_hash)
        except FluxError as exc:
            self.fail(f"commit certificate rejected at {height}: {exc}")

    def check_evidence(self, host: Host, out: ReportEvidence) -> None:
        if not host.honest:
            return
        try:
            out.evidence.verify(CHAIN_ID, self.validators)
        except FluxError as exc:
            self.fail(f"evidence from validator {host.index} does not verify: {exc}")
        if out.evidence.validator not in self.byzantine_keys:
            self.fail(f"evidence names an honest validator (reported by {host.index})")
        self.result.faults["evidence_reported"] += 1

    def check_liveness(self) -> None:
        if self.now > self.deadline:
            behind = {h.index: h.height - 1 for h in self.hosts if h.honest}
            self.fail(f"liveness: committed heights {behind} at the deadline {self.deadline}ms")

    # --- the run ------------------------------------------------------------------------

    def done(self) -> bool:
        return all(h.height > self.scenario.heights for h in self.hosts if h.honest)

    def run(self) -> SimResult:
        try:
            return self._run()
        finally:
            for host in self.hosts:
                host.disk.wal.close()
            shutil.rmtree(self.disk_dir, ignore_errors=True)

    def _run(self) -> SimResult:
        for host in self.hosts:
            if host.role != "silent":
                host.start()
                self.schedule(self.rng.randint(1, GOSSIP_MS), GOSSIP, host.index, None)
        for index, down, up in self.scenario.crashes:
            self.schedule(down, CRASH, index, None)
            self.schedule(up, RESTART, index, None)
        while not self.done():
            if not self._queue:
                self.fail("liveness: nothing left to happen")
            self.now, _, kind, target, payload = heapq.heappop(self._queue)
            self.result.events += 1
            self.check_liveness()
            self._handle(kind, target, payload)
        self.result.sim_time_ms = self.now
        return self.result

    def _handle(self, kind: int, target: int, payload: object) -> None:
        """One scheduled event: a crash, a restart, a gossip tick, a delivery, an input."""
        host = self.hosts[target]
        if kind == CRASH:
            host.crash()
        elif kind == RESTART:
            host.restart()
        elif kind == GOSSIP:
            if host.up and host.honest:
                host.gossip()
            self.schedule(GOSSIP_MS, GOSSIP, target, None)
        elif not host.up or host.role == "silent":
            return
        elif kind == DELIVER:
            assert isinstance(payload, Proposal | Vote | list | Frame)
            host.receive(payload)
        else:
            assert isinstance(payload, tuple)
            incarnation, inp = payload
            if incarnation != host.incarnation:
                return  # scheduled by a process that has since crashed
            if inp is None:
                host.next_height()
            else:
                host.feed(inp)


# --- the node's real gossip ----------------------------------------------------------
#
# `Host.gossip` above peeks at each peer's engine: an ideal network in which every node
# knows what the others lack. The classes below replace it with what a node really does
# (fluxchain/node/node.py, p2p/network.py): flood each new proposal and vote once, relay
# what it accepted (a vote to one peer; without the reactor, to all), suppress duplicates with
# a seen-cache, re-broadcast its last vote when a height makes no progress, re-fire a
# stalled step's timeout (the driver's watchdog), and -- unless `with_reactor` is off,
# which is the node before issue 25 --
# announce its round state and send each peer what that peer's announcements say it lacks
# (p2p/consensus_gossip.py, the same code the node runs). A host learns about its peers
# only from the frames it receives (block sync reads peers' committed heights, which the
# node learns from STATUS frames).

REACTOR_RESEND_MS: Final = 800  # p2p.consensus_gossip: re-send what is still lacked after this
# A vote a host took goes on to VOTE_RELAY_FANOUT random peers (p2p.limits.relay_fanout);
# its reactor passes it to the other peers still lacking it after RELAYED_HOLD_MS
# (fluxchain.node.node.RELAYED_HOLD_MS, scaled as REACTOR_RESEND_MS is).
VOTE_RELAY_FANOUT: Final = default_relay_fanout()[Kind.VOTE]
RELAYED_HOLD_MS: Final = 300
REDELIVER_MS: Final = 600  # p2p.network: a copy seen this long ago is delivered again
REGOSSIP_MS: Final = 2_000  # fluxchain.node.node.REGOSSIP_S
STALL_MARGIN_MS: Final = 2_000  # fluxchain.node.driver.STALL_MARGIN_S
SEEN_CACHE: Final = 100_000


LossRule = Callable[["Simulation", int, int, "Proposal | Vote | RoundState"], bool]


class RealGossipHost(Host):
    """A host that gossips as the node does; see the comment above."""

    def __init__(self, sim: Simulation, index: int, key: SigningKey, role: str) -> None:
        super().__init__(sim, index, key, role)
        self.reset_gossip()

    def reset_gossip(self) -> None:
        """A new process: every cache and per-peer state starts empty."""
        self.seen = BoundedSet(SEEN_CACHE)
        self.seen_at = SeenTimes(SEEN_CACHE)
        self.reactor = ConsensusGossip(REACTOR_RESEND_MS, self_id=str(self.index))
        self.announced: RoundState | None = None
        self.announce_seq = 0
        self.last_seq: dict[int, tuple[int, int]] = {}  # src -> (incarnation, seq)
        self.last_progress = self.sim.now
        self.position: tuple[int, int, int] = (0, 0, 0)
        self.position_since = self.sim.now

    @property
    def real_sim(self) -> RealGossipSimulation:
        assert isinstance(self.sim, RealGossipSimulation)
        return self.sim

    # --- process lifecycle ----------------------------------------------------------------

    def crash(self) -> None:
        super().crash()
        for peer in self.sim.hosts:  # its connections drop
            if isinstance(peer, RealGossipHost):
                peer.reactor.forget(str(self.index))

    def restart(self) -> None:
        self.reset_gossip()
        super().restart()

    def feed(self, first: Input) -> bool:
        height = len(self.committed)
        relay = super().feed(first)
        if len(self.committed) != height:
            self.last_progress = self.sim.now
        if self.up and self.real_sim.with_reactor:
            self.announce()
        return relay

    # --- sending --------------------------------------------------------------------------

    def send_frame(self, dst: Host, message: Proposal | Vote | RoundState, seq: int = 0) -> None:
        sim = self.real_sim
        if (
            sim.lose is not None
            and sim.now < sim.scenario.gst_ms
            and sim.lose(sim, self.index, dst.index, message)
        ):
            sim.result.faults["messages_lost_by_rule"] += 1
            return
        if isinstance(message, Proposal):
            sim.block_bytes[message.signature] = self.block_of[message.signature]
        sim.send(self, dst, Frame(self.index, message, seq, self.incarnation))

    def flood(self, message: Proposal | Vote, exclude: int | None = None) -> None:
        """Send to every peer but `exclude` (p2p.network.Network.broadcast and relay)."""
        peers = [h for h in self.sim.hosts if h is not self and h.index != exclude]
        for peer in peers:
            self.send_frame(peer, message)
        self.reactor.on_sent_to_all([str(h.index) for h in peers], message.signature, self.sim.now)

    def relay_vote(self, message: Vote, exclude: int | None) -> None:
        """A vote taken from `exclude` goes on to VOTE_RELAY_FANOUT peers picked at random
        (p2p.relay's fan-out); the reactor offers it to the peers whose announcements still
        lack it once RELAYED_HOLD_MS passed (fluxchain.node.node._flooded)."""
        peers = [h for h in self.sim.hosts if h is not self and h.index != exclude]
        for peer in self.sim.rng.sample(peers, min(VOTE_RELAY_FANOUT, len(peers))):
            self.send_frame(peer, message)
        held_since = self.sim.now - (REACTOR_RESEND_MS - RELAYED_HOLD_MS)
        self.reactor.on_sent_to_all([str(h.index) for h in peers], message.signature, held_since)

    def broadcast(self, message: Proposal | Vote, block_bytes: bytes) -> None:
        if not self.honest:
            super().broadcast(message, block_bytes)  # twins and all, unwrapped
            return
        if isinstance(message, Proposal):
            self.block_of[message.signature] = block_bytes
        self.remember(message)
        self.seen.add(message.signature)
        self.seen_at.note(message.signature, self.sim.now)
        self.flood(message)

    def announce(self, heartbeat: bool = False) -> None:
        local = self.local_consensus()
        if local is None:
            return
        state = self.reactor.announcement(local)
        if state == self.announced and not heartbeat:
            return
        self.announced = state
        self.announce_seq += 1
        for peer in self.sim.hosts:
            if peer is not self:
                self.send_frame(peer, state, self.announce_seq)

    def local_consensus(self) -> LocalConsensus | None:
        """What the node's `_local_consensus` reads from its driver, read from this host."""
        engine = self.engine
        if engine.validators is None or engine.height != self.height:
            return None
        proposals = []
        for rounds in self.messages.get(engine.height, {}).values():
            for message in rounds.values():
                if isinstance(message, Proposal):
                    stored = engine.proposal(message.round, message.block_hash)
                    if stored is not None and stored[0] == message:
                        proposals.append(stored)
        last = self.committed.get(engine.height - 1)
        return LocalConsensus(
            engine.height,
            engine.round,
            engine.step_,
            engine.validators,
            engine.votes,
            proposals,
            last.commit if last is not None else None,
        )

    # --- receiving ------------------------------------------------------------------------

    def receive(self, message: Message) -> None:
        if not isinstance(message, Frame):
            if isinstance(message, list) or not self.honest:
                super().receive(message)
            else:
                self.on_gossip(None, message)  # a byzantine sender's unwrapped message
            return
        inner = message.message
        if isinstance(inner, RoundState):
            self.on_round_state(message.src, inner, message.seq, message.incarnation)
        elif self.honest:
            self.on_gossip(message.src, inner)
        else:
            super().receive(inner)

    def on_round_state(self, src: int, state: RoundState, seq: int, incarnation: int) -> None:
        last_incarnation, last_seq = self.last_seq.get(src, (-1, 0))
        if incarnation < last_incarnation or (incarnation == last_incarnation and seq <= last_seq):
            return  # older than what this ordered connection already delivered
        if incarnation > last_incarnation:
            self.reactor.forget(str(src))  # a new process: a new connection
        self.last_seq[src] = (incarnation, seq)
        problem = self.reactor.on_round_state(str(src), state)
        if problem is not None and self.sim.hosts[src].honest:
            self.sim.fail(f"validator {self.index} judged {src}'s round state junk: {problem}")

    def holds(self, message: Proposal | Vote) -> bool:
        """fluxchain.node.driver.Driver.holds."""
        return self.engine.holds(message)

    def on_gossip(self, src: int | None, message: Proposal | Vote) -> None:
        """p2p.network's seen-cache, then fluxchain.node.node's checks, feed and relay."""
        now = self.sim.now
        redeliver = REDELIVER_MS if self.real_sim.with_reactor else 10**12
        if not self.seen_at.accept(message.signature, now, redeliver):
            return
        first = self.seen.add(message.signature)
        if message.height < self.height or self.holds(message):
            return
        current = message.height == self.height
        assert self.engine.validators is not None
        if isinstance(message, Vote):
            index = self.sim.validators.index_of(message.validator)
            if current and index is None:
                return
            if src is not None:
                self.reactor.on_received(str(src), message, index)
            if current and not self.engine.admits(message):
                # Node._on_vote: neither relayed nor logged; beyond a quota now, forgotten
                # by the seen-cache so that it may come again.
                if message.height != self.engine.height or message.round > self.engine.round:
                    self.seen.discard(message.signature)
                    self.seen_at.discard(message.signature)
                return
            self.feed(VoteReceived(message))
        else:
            current = self.take_proposal(src, message) and current
        if first and current:
            if isinstance(message, Vote) and self.real_sim.with_reactor:
                self.relay_vote(message, exclude=src)
            else:
                self.flood(message, exclude=src)

    def take_proposal(self, src: int | None, message: Proposal) -> bool:
        """fluxchain.node.node.Node._take_proposal: feed a proposal; whether to relay it:
        only what the engine keeps, signed by its round's proposer. One not relayed may
        be when a later copy is kept (Network.unrelayed)."""
        block_bytes = self.sim.block_bytes[message.signature]
        if sha256(block_bytes) != message.block_hash:
            return False
        self.block_of[message.signature] = block_bytes
        if src is not None:
            self.reactor.on_received(str(src), message, None)
        relay = self.feed(ProposalReceived(message, block_bytes))
        if not relay:
            self.seen.discard(message.signature)
        return relay and message.proposer == proposer(
            self.sim.validators, message.height, message.round
        )

    # --- the periodic part: consensus gossip, block sync, re-gossip, watchdog -------------

    def gossip(self) -> None:
        if self.real_sim.with_reactor:
            self.reactor_gossip()
        self.sync_peers_behind()
        self.regossip_last_vote()
        self.watchdog()

    def reactor_gossip(self) -> None:
        """Announce the round state; send each peer what its announcements say it lacks."""
        sim = self.real_sim
        self.announce(heartbeat=True)
        local = self.local_consensus()
        if local is None:
            return
        for peer in sim.hosts:
            if peer is self:
                continue
            for send in self.reactor.plan(str(peer.index), local, sim.now):
                if isinstance(send, SendProposal):
                    self.send_frame(peer, send.proposal)
                else:
                    self.send_frame(peer, send.vote)
                sim.result.faults["reactor_sends"] += 1

    def sync_peers_behind(self) -> None:
        """Block sync, as the node's sync loop pulls from a peer whose STATUS is ahead."""
        sim = self.real_sim
        for peer in sim.hosts:
            if peer is not self and peer.height < self.height:
                blocks = [
                    self.committed[h]
                    for h in range(peer.height, min(self.height, peer.height + SYNC_BATCH))
                ]
                sim.send(self, peer, blocks)

    def regossip_last_vote(self) -> None:
        """The node's last-vote re-gossip when a height makes no progress."""
        now = self.real_sim.now
        if now - self.last_progress >= REGOSSIP_MS:
            self.last_progress = now
            last = self.guard.last_vote()
            if last is not None and last.height == self.height:
                self.seen_at.note(last.signature, now)
                self.flood(last)

    def watchdog(self) -> None:
        """The driver's watchdog: a step that outlives its timeout is nudged."""
        sim = self.real_sim
        now = sim.now
        engine = self.engine
        position = (engine.height, engine.round, int(engine.step_))
        if position != self.position:
            self.position, self.position_since = position, now
        elif engine.height == self.height and now - self.position_since > (
            TIMEOUTS.timeout_ms(engine.step_, engine.round) + STALL_MARGIN_MS
        ):
            self.position_since = now
            sim.result.faults["watchdog_timeouts"] += 1
            self.feed(TimeoutFired(engine.height, engine.round, engine.step_))


class RealGossipSimulation(Simulation):
    """The simulation with every host gossiping as the node does (`RealGossipHost`).

    `lose` drops chosen frames before GST (a scripted loss on top of the scenario's);
    `with_reactor=False` runs the node as it was before consensus gossip (issue 25 #2).
    """

    def __init__(
        self, scenario: Scenario, *, with_reactor: bool = True, lose: LossRule | None = None
    ) -> None:
        super().__init__(scenario)
        self.with_reactor = with_reactor
        self.lose = lose
        self.hosts = [RealGossipHost(self, h.index, h.key, h.role) for h in self.hosts]

    def fail(self, what: str) -> None:
        """Stop the run with the seed, its whole fault schedule, and the replay command."""
        scenario = self.scenario
        raise InvariantError(
            f"{what} at t={self.now}ms [{scenario.describe()} gossip=real "
            f"reactor={self.with_reactor} scripted_loss={self.lose is not None}]\n"
            f"schedule: partitions={scenario.partitions} crashes={scenario.crashes}\n"
            f"replay: FLUX_SIM_SEED={scenario.seed} FLUX_SIM_HEIGHTS={scenario.heights} "
            "pytest tests/consensus -k replay_real_gossip"
        )


SHRINK_RUNS: Final = 60  # a failing seed's search for a shorter schedule stops after these


def reductions(scenario: Scenario) -> list[Scenario]:
    """Scenarios with one fault fewer (or fewer heights), the most drastic first."""
    out = []
    if scenario.heights > 1:
        out.append(replace(scenario, heights=scenario.heights // 2))
    crashes, partitions, byzantine = scenario.crashes, scenario.partitions, scenario.byzantine
    out.extend(
        replace(scenario, crashes=crashes[:i] + crashes[i + 1 :]) for i in range(len(crashes))
    )
    out.extend(
        replace(scenario, partitions=partitions[:i] + partitions[i + 1 :])
        for i in range(len(partitions))
    )
    out.extend(
        replace(scenario, byzantine={j: r for j, r in byzantine.items() if j != i})
        for i in byzantine
    )
    if scenario.drop:
        out.append(replace(scenario, drop=0.0))
    if scenario.duplicate:
        out.append(replace(scenario, duplicate=0.0))
    if scenario.max_delay_ms != DELTA_MS:
        out.append(replace(scenario, max_delay_ms=DELTA_MS))
    if scenario.heights > 1:
        out.append(replace(scenario, heights=scenario.heights - 1))
    return out


def shrink(
    scenario: Scenario, fails: Callable[[Scenario], bool], runs: int = SHRINK_RUNS
) -> Scenario:
    """The smallest scenario reachable from `scenario` by dropping faults one at a time that
    still `fails` (greedy, as delta debugging does), within `runs` attempts."""
    smallest = scenario
    progress = True
    while progress and runs > 0:
        progress = False
        for candidate in reductions(smallest):
            if runs == 0:
                break
            runs -= 1
            if fails(candidate):
                smallest, progress = candidate, True
                break
    return smallest


def run_shrinking(simulation: type[Simulation], scenario: Scenario) -> SimResult:
    """Run `scenario`; on failure, re-raise with the shortest failing schedule found, as a
    `Scenario(...)` literal that `simulation(<literal>).run()` replays."""
    try:
        return simulation(scenario).run()
    except InvariantError as failure:

        def fails(candidate: Scenario) -> bool:
            try:
                simulation(candidate).run()
            except InvariantError:
                return True
            return False

        smallest = shrink(scenario, fails)
        raise InvariantError(
            f"{failure}\nshortest failing schedule found: {smallest.describe()}\n"
            f"  {smallest.schedule()}\n  replay it: {simulation.__name__}({smallest!r}).run()"
        ) from None


def run_real_gossip_seed(seed: int, heights: int = 20) -> SimResult:
    """Run one seeded scenario with the node's real gossip; raise InvariantError on failure."""
    return run_shrinking(RealGossipSimulation, Scenario.from_seed(seed, heights))


def run_seed(seed: int, heights: int = 50) -> SimResult:
    """Run one seeded scenario to `heights`; raise InvariantError on any failure."""
    return run_shrinking(Simulation, Scenario.from_seed(seed, heights))


def main(argv: list[str] | None = None) -> int:
    """Run many seeds and print the figures docs/consensus.md quotes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--heights", type=int, default=50)
    args = parser.parse_args(argv)
    totals: Counter[str] = Counter()
    violations = 0
    sim_ms = events = max_round = 0
    started = time.perf_counter()
    for seed in range(args.first, args.first + args.seeds):
        try:
            result = run_seed(seed, args.heights)
        except InvariantError as exc:
            violations += 1
            print(exc, file=sys.stderr)
            continue
        totals.update(result.faults)
        sim_ms += result.sim_time_ms
        events += result.events
        max_round = max(max_round, result.max_round)
    elapsed = time.perf_counter() - started
    print(f"seeds={args.seeds} heights={args.heights} invariant_violations={violations}")
    print(f"simulated_time_s={sim_ms // 1000} events={events} highest_round={max_round}")
    print(f"wall_time_s={elapsed:.1f}")
    for name, count in sorted(totals.items()):
        print(f"  {name}={count}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
