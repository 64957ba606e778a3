"""A validator that crashes and restarts stays safe: issue 25 items 1 and 6.

One real validator (engine, signer guard on its file, WAL on its file, restarted through
the node's `height_inputs`) among three scripted ones, at height 1 of four equal validators.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.events import ProposalReceived, TimeoutFired, VoteReceived
from consensus.messages import Proposal, Step
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, Commit, Vote, VoteType
from fluxchain.node.wal import ConsensusWal, WalRecord
from tests.consensus.helpers import CHAIN_ID, ValidatorProcess, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)
HEIGHT = 1
BLOCK_V, BLOCK_W = b"block v", b"block w"
V, W = sha256(BLOCK_V), sha256(BLOCK_W)


def key_of_proposer(round_: int) -> SigningKey:
    found = proposer(VALIDATORS, HEIGHT, round_)
    return next(k for k in SIGNERS if k.public_key == found)


# The roles follow the proposer rotation: A proposes round 0 (and never builds), D proposes
# w in round 1, C proposes v in round 2, and the byzantine B proposes round 3.
A, D, C, B = (key_of_proposer(r) for r in range(4))


def vote(key: SigningKey, kind: VoteType, round_: int, value: bytes) -> VoteReceived:
    return VoteReceived(Vote.create(key, CHAIN_ID, kind, HEIGHT, round_, value))


def proposal(key: SigningKey, round_: int, block: bytes, pol_round: int = -1) -> ProposalReceived:
    signed = Proposal.create(key, CHAIN_ID, HEIGHT, round_, pol_round, sha256(block))
    return ProposalReceived(signed, block)


def lock_v_in_round_2(a: ValidatorProcess) -> Vote:
    """Rounds 0-2 as A sees them; A locks on v in round 2. Returns A's precommit for v.

    Rounds 0 and 1 fail for A: nothing in round 0; in round 1 the others prevote D's w
    (a polka that nobody sees in time), A's propose timeout fires first, and everyone
    precommits nil. In round 2, A, B and C prevote C's v: A locks on v and precommits it.
    """
    a.feed(TimeoutFired(HEIGHT, 0, Step.PROPOSE))
    for key in (B, C, D):
        a.feed(vote(key, VoteType.PREVOTE, 0, NIL))
    for key in (B, C, D):
        a.feed(vote(key, VoteType.PRECOMMIT, 0, NIL))
    a.feed(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    a.feed(TimeoutFired(HEIGHT, 1, Step.PROPOSE))
    a.feed(TimeoutFired(HEIGHT, 1, Step.PREVOTE))
    for key in (B, C, D):
        a.feed(vote(key, VoteType.PRECOMMIT, 1, NIL))
    a.feed(TimeoutFired(HEIGHT, 1, Step.PRECOMMIT))
    assert a.engine.round == 2
    a.feed(proposal(C, 2, BLOCK_V))
    for key in (B, C):
        a.feed(vote(key, VoteType.PREVOTE, 2, V))
    assert (a.engine.locked_round, a.engine.locked_value) == (2, V)
    (precommit,) = [v for v in a.sent_votes() if v.type is VoteType.PRECOMMIT and v.block_hash == V]
    return precommit


def attack_after_restart(a: ValidatorProcess) -> None:
    """What reaches A after its restart: time passes, then the late round-1 polka for w
    arrives, then the byzantine B re-proposes w in round 3 citing it, with D's prevote
    (the prevotes overtake the proposal, which an engine in round 1 would drop)."""
    for _ in range(8):  # A's timers fire while nothing arrives, until it is past round 0
        engine = a.engine
        if engine.round >= 1 and engine.step_ is not Step.PROPOSE:
            break
        a.feed(TimeoutFired(HEIGHT, engine.round, engine.step_))
    a.feed(proposal(D, 1, BLOCK_W))
    for key in (B, C, D):
        a.feed(vote(key, VoteType.PREVOTE, 1, W))
    for key in (B, D):
        a.feed(vote(key, VoteType.PREVOTE, 3, W))
    a.feed(proposal(B, 3, BLOCK_W, pol_round=1))
    for key in (B, D):
        a.feed(vote(key, VoteType.PRECOMMIT, 3, W))


def assert_no_second_block(a: ValidatorProcess, precommit_v: Vote) -> None:
    # C committed v: A's precommit with B's and C's is a valid commit certificate.
    others = [vote(k, VoteType.PRECOMMIT, 2, V).vote for k in (B, C)]
    Commit.from_votes([precommit_v, *others]).verify(CHAIN_ID, VALIDATORS, HEIGHT, V)
    # A never helps w: no vote for it, no commit of it, and its lock stays on v.
    assert [v for v in a.sent_votes() if v.block_hash == W] == []
    assert W not in a.committed()
    assert (a.engine.locked_round, a.engine.locked_value) == (2, V)


def test_restart_after_lock_cannot_commit_a_second_block(tmp_path: Path) -> None:
    """Issue 25 #1: A restarts, and the power fails right after (before its next signature).
    Before, that left an empty WAL (#6), A restarted in round 0, the late round-1 polka
    moved its lock back to (1, w), and A prevoted, precommitted and committed B's w in
    round 3, while C had committed v: two blocks at height 1."""
    a = ValidatorProcess(A, tmp_path, VALIDATORS)
    precommit_v = lock_v_in_round_2(a)
    a.crash()
    a.start()
    a.power_cut()
    a.start()
    assert (a.engine.round, a.engine.step_) == (2, Step.PRECOMMIT)  # where it last signed
    attack_after_restart(a)
    assert_no_second_block(a, precommit_v)
    assert a.engine.round == 3
    prevote_3 = [v for v in a.sent_votes() if v.round == 3 and v.type is VoteType.PREVOTE]
    assert [v.block_hash for v in prevote_3] == [NIL]  # locked on v in round 2 > 1


def test_restart_without_the_wal_cannot_commit_a_second_block(tmp_path: Path) -> None:
    """The same attack with the WAL lost: the signer record alone keeps A safe."""
    a = ValidatorProcess(A, tmp_path, VALIDATORS)
    precommit_v = lock_v_in_round_2(a)
    a.crash()
    (tmp_path / "consensus.wal").unlink()
    a.start()
    assert (a.engine.round, a.engine.locked_round, a.engine.locked_value) == (2, 2, V)
    attack_after_restart(a)
    assert_no_second_block(a, precommit_v)


def test_lock_never_moves_to_an_earlier_round(tmp_path: Path) -> None:
    """The engine itself refuses to lower a lock, whatever round it is asked in."""
    a = ValidatorProcess(A, tmp_path, VALIDATORS)
    lock_v_in_round_2(a)
    engine = a.engine
    engine._set_lock(1, W)
    engine._set_valid(1, W)
    assert (engine.locked_round, engine.locked_value) == (2, V)
    assert (engine.valid_round, engine.valid_value) == (2, V)


def test_restart_replays_timeouts_to_the_same_round(tmp_path: Path) -> None:
    """Timeouts are WAL records: a validator that left round 0 by its precommit timeout,
    and signed nothing since, restarts in round 1, not in round 0 where it last signed."""
    a = ValidatorProcess(A, tmp_path, VALIDATORS)
    a.feed(TimeoutFired(HEIGHT, 0, Step.PROPOSE))
    for key in (B, C, D):
        a.feed(vote(key, VoteType.PREVOTE, 0, NIL))
    for key in (B, C, D):
        a.feed(vote(key, VoteType.PRECOMMIT, 0, NIL))
    a.feed(TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    assert (a.engine.round, a.engine.step_) == (1, Step.PROPOSE)
    a.wal.flush()  # as the next signature would
    a.crash()
    a.start()
    assert (a.engine.round, a.engine.step_) == (1, Step.PROPOSE)
    assert TimeoutFired(HEIGHT, 0, Step.PRECOMMIT) in a.wal.replay(HEIGHT)


# --- the WAL's rewrite at a restart (issue 25 #6) -------------------------------------------


def logged_wal(path: Path) -> list[WalRecord]:
    """A WAL of height 1 with a proposal, votes and a timeout, as a crash left it."""
    wal = ConsensusWal(path)
    wal.start_height(HEIGHT)
    records: list[WalRecord] = [
        proposal(C, 2, BLOCK_V),
        vote(B, VoteType.PREVOTE, 2, V),
        vote(C, VoteType.PREVOTE, 2, V),
        TimeoutFired(HEIGHT, 1, Step.PRECOMMIT),
    ]
    for record in records:
        wal.record(record)
    wal.flush()
    wal.close()
    return records


def test_wal_survives_a_crash_right_after_the_restart(tmp_path: Path) -> None:
    """Before, the restart truncated the WAL and wrote the records back unsynced: a power
    cut right after the restart left an empty log."""
    path = tmp_path / "consensus.wal"
    records = logged_wal(path)
    restarted = ConsensusWal(path)
    assert restarted.start_height(HEIGHT) == records
    # The power fails now, before anything else is written or synced.
    assert ConsensusWal(path).replay(HEIGHT) == records


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_wal_rewrite_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    """A crash between truncating and rewriting the log, anywhere in the rewrite, leaves
    the whole old log: the new one replaces it only once it is durable."""
    path = tmp_path / "consensus.wal"
    records = logged_wal(path)

    def power_cut(*args: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(os, fail_at, power_cut)
    with pytest.raises(OSError):
        ConsensusWal(path).start_height(HEIGHT)
    monkeypatch.undo()
    assert ConsensusWal(path).replay(HEIGHT) == records


def test_wal_rewrite_is_durable_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "consensus.wal"
    logged_wal(path)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if Path(f"/proc/self/fd/{fd}").is_dir() else "file"
        events.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    wal = ConsensusWal(path, fsync=fsync)
    wal.start_height(HEIGHT)
    events.append("returned")
    assert events == ["fsync file", "rename", "fsync dir", "returned"]
    wal.close()


def test_wal_torn_tail_is_dropped_and_each_input_logged_once(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    records = logged_wal(path)
    with path.open("ab") as torn:
        torn.write(b"\x00\x00\x01\x00half a record")  # the crash hit mid-append
    wal = ConsensusWal(path)
    assert wal.start_height(HEIGHT) == records
    for record in records:  # replayed inputs are fed again: the log does not grow
        wal.record(record)
    wal.close()
    assert ConsensusWal(path).replay(HEIGHT) == records


def test_one_wal_fsync_covers_every_record_before_it(tmp_path: Path) -> None:
    """A flush with nothing appended since the last one (the proposer's prevote right after
    its proposal's record was synced) costs no fsync; a flush after an append still does."""
    synced: list[int] = []

    def fsync(fd: int) -> None:
        synced.append(fd)
        os.fsync(fd)

    wal = ConsensusWal(tmp_path / "consensus.wal", fsync)
    try:
        wal.start_height(1)
        after_start = len(synced)
        wal.flush()
        assert len(synced) == after_start  # the rewrite left it durable already
        wal.record(TimeoutFired(1, 0, Step.PROPOSE))
        wal.flush()
        wal.flush()
        assert len(synced) == after_start + 1
        assert wal.synced_size == wal.size
        assert wal.replay(1) == [TimeoutFired(1, 0, Step.PROPOSE)]
    finally:
        wal.close()
