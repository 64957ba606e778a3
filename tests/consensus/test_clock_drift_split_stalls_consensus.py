"""Review of issue 17: a byzantine proposer times its block at the voters' drift bound.

The voter's clock rule (`execute.check_timely`, applied by `Driver._validate`) is the
right rule for a fresh proposal, but the engine keeps one verdict per block for the whole
height (`Engine.validity`). A byzantine proposer (1 of 4, under 1/3 of the power) times
its block so that it is just beyond one honest voter's clock + drift when that voter
judges it (1 ms of clock skew, or the attacker sending that voter the proposal a few ms
before the others), prevotes it, and withholds its precommit. The two honest voters that
accepted it lock on it; the third keeps "invalid" for the block forever, even once its
clock has long passed the block time, so every re-proposal of the locked block gets its
nil: no round can reach 2/3 again and the chain halts for good (nothing was committed, so
block sync cannot help either). CometBFT's PBTS checks timeliness for a fresh proposal
(pol_round = -1) only; a re-proposal with a proof of lock is judged without the clock.

Fixed by keeping the host's two verdicts apart (`BlockValidated.valid` and `.timely`):
the engine requires `timely` for a fresh proposal only (L22).
"""

from __future__ import annotations

import heapq
from types import SimpleNamespace

from consensus.engine import Engine
from consensus.events import (
    BlockValidated,
    BuildProposal,
    CommitBlock,
    NewHeight,
    Output,
    ProposalReceived,
    ProposeBlock,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core import execute as ex
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.errors import BlockError
from fluxchain.core.votes import NIL, Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)
HEIGHT = 1
DRIFT_MS = 2_000  # devnet's max_clock_drift_ms
PARAMS = SimpleNamespace(max_clock_drift_ms=DRIFT_MS)


def _key(pubkey: bytes) -> SigningKey:
    return next(k for k in SIGNERS if k.public_key == pubkey)


def test_a_proposal_timed_at_the_drift_bound_halts_the_chain_for_good() -> None:
    rounds, locked, now, decided, slow_prevote = _run(skew_ms=1)
    # Three honest validators (3/4 of the power) and two minutes of clock: they must decide.
    assert decided == 3, f"no decision after {now} ms: rounds {rounds}, locks {locked}"
    # ... and the clock rule still held: the slow voter prevoted nil on the fresh proposal
    # its clock found early (it then locked on it with the others' 2f+1 prevotes, L36).
    assert slow_prevote == NIL, "the slow voter's clock was ignored"


def test_control_without_skew_the_same_attack_is_decided_in_round_0() -> None:
    """The harness is sound: with the slow voter's clock equal to the others' it decides."""
    rounds, _, _, decided, slow_prevote = _run(skew_ms=0)
    assert decided == 3 and set(rounds.values()) == {0}
    assert slow_prevote == sha256(b"hostile block")


def _run(  # noqa: C901 - one scripted network: its closures share the clock and the inboxes
    skew_ms: int,
) -> tuple[dict[str, int], dict[str, int], int, int, bytes | None]:
    byzantine = _key(proposer(VALIDATORS, HEIGHT, 0))
    honest = [k for k in SIGNERS if k is not byzantine]
    slow = honest[-1]  # judges 1 ms earlier than the others (clock skew or earlier delivery)
    block_times: dict[bytes, int] = {}
    hostile = b"hostile block"
    block_times[sha256(hostile)] = DRIFT_MS  # the proposer's clock (0) + the drift

    engines = {k.public_key: Engine(CHAIN_ID, k.public_key) for k in honest}
    now = 0
    timers: list[tuple[int, int, bytes, TimeoutFired]] = []
    seq = 0
    inbox: list[tuple[bytes, object]] = []
    decided: dict[bytes, bytes] = {}
    slow_prevotes: dict[int, bytes] = {}  # round -> what the slow voter prevoted

    def clock_of(pub: bytes) -> int:
        return now - skew_ms if pub == slow.public_key else now

    def broadcast(inp: object) -> None:
        inbox.extend((pub, inp) for pub in engines)

    def handle(pub: bytes, outputs: list[Output]) -> None:
        nonlocal seq
        me = _key(pub)
        for out in outputs:
            if isinstance(out, SignVote):
                if pub == slow.public_key and out.vote_type is VoteType.PREVOTE:
                    slow_prevotes[out.round] = out.block_hash
                v = Vote.create(me, CHAIN_ID, out.vote_type, out.height, out.round, out.block_hash)
                broadcast(VoteReceived(v))
            elif isinstance(out, SignProposal):
                p = Proposal.create(
                    me, CHAIN_ID, out.height, out.round, out.pol_round, out.block_hash
                )
                broadcast(ProposalReceived(p, out.block_bytes))
            elif isinstance(out, BuildProposal):
                block = f"fresh {out.round}".encode()
                block_times[sha256(block)] = clock_of(pub)
                inbox.append((pub, ProposeBlock(out.height, out.round, sha256(block), block)))
            elif isinstance(out, ValidateBlock):
                # What Driver._validate answers: execution is fine (valid); the time is
                # judged by this voter's clock now (timely).
                header = SimpleNamespace(time_ms=block_times[out.block_hash])
                try:
                    ex.check_timely(header, clock_of(pub), PARAMS)  # type: ignore[arg-type]
                    timely = True
                except BlockError:
                    timely = False
                inbox.append((pub, BlockValidated(out.block_hash, True, timely)))
            elif isinstance(out, ScheduleTimeout):
                seq += 1
                fire = TimeoutFired(out.height, out.round, out.step)
                heapq.heappush(timers, (now + out.delay_ms, seq, pub, fire))
            elif isinstance(out, CommitBlock):
                decided[pub] = out.block_hash

    for pub, engine in engines.items():
        handle(pub, engine.step(NewHeight(HEIGHT, VALIDATORS)))
    # The byzantine proposer: its block at the drift bound, its prevote for it, and
    # nothing else (no precommit; silent in later rounds).
    signed = Proposal.create(byzantine, CHAIN_ID, HEIGHT, 0, -1, sha256(hostile))
    broadcast(ProposalReceived(signed, hostile))
    prevote = Vote.create(byzantine, CHAIN_ID, VoteType.PREVOTE, HEIGHT, 0, sha256(hostile))
    broadcast(VoteReceived(prevote))

    while now < 120_000 and len(decided) < len(engines):
        while inbox:
            pub, inp = inbox.pop(0)
            handle(pub, engines[pub].step(inp))  # type: ignore[arg-type]
        if not timers:
            break
        when, _, pub, fire = heapq.heappop(timers)
        now = max(now, when)
        handle(pub, engines[pub].step(fire))

    rounds = {pub.hex()[:8]: e.round for pub, e in engines.items()}
    locked = {pub.hex()[:8]: e.locked_round for pub, e in engines.items()}
    return rounds, locked, now, len(decided), slow_prevotes.get(0)
