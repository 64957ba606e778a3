"""The double-sign guard: refuses conflicts, repeats itself, and keeps its word across crashes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.errors import ConsensusError, DoubleSignError
from consensus.events import Lock, Resume, SignProposal, SignVote
from consensus.messages import Step
from consensus.signer import STATE_FILE, FileSignerStore, MemorySignerStore, SignerGuard
from fluxchain.core.votes import NIL, VoteType
from tests.consensus.helpers import CHAIN_ID, block_hash, keys
from tests.consensus.signer_child import KEY as CHILD_KEY

KEY = keys(1)[0]
ROOT = Path(__file__).resolve().parents[2]


def prevote(height: int, round_: int, value: bytes) -> SignVote:
    return SignVote(VoteType.PREVOTE, height, round_, value)


def precommit(height: int, round_: int, value: bytes) -> SignVote:
    return SignVote(VoteType.PRECOMMIT, height, round_, value)


def test_refuses_a_conflicting_vote_at_the_same_step() -> None:
    guard = SignerGuard(KEY, CHAIN_ID, MemorySignerStore())
    guard.sign_vote(prevote(3, 1, block_hash("a")))
    with pytest.raises(DoubleSignError):
        guard.sign_vote(prevote(3, 1, block_hash("b")))
    with pytest.raises(DoubleSignError):
        guard.sign_vote(prevote(3, 1, NIL))


def test_same_request_gets_the_same_signature() -> None:
    guard = SignerGuard(KEY, CHAIN_ID, MemorySignerStore())
    first = guard.sign_vote(precommit(3, 1, block_hash("a")))
    again = guard.sign_vote(precommit(3, 1, block_hash("a")))
    assert again == first
    assert first.verify(CHAIN_ID)


def test_refuses_anything_before_the_last_signature() -> None:
    guard = SignerGuard(KEY, CHAIN_ID, MemorySignerStore())
    guard.sign_vote(precommit(5, 2, NIL))
    for request in (prevote(5, 2, NIL), precommit(5, 1, NIL), prevote(4, 9, NIL)):
        with pytest.raises(DoubleSignError):
            guard.sign_vote(request)
    with pytest.raises(DoubleSignError):
        guard.sign_proposal(SignProposal(5, 2, -1, block_hash("p"), b"block"))
    assert guard.sign_vote(prevote(5, 3, NIL)).round == 3
    assert guard.sign_vote(prevote(6, 0, NIL)).height == 6


def test_proposal_then_votes_in_the_same_round() -> None:
    guard = SignerGuard(KEY, CHAIN_ID, MemorySignerStore())
    proposal = guard.sign_proposal(SignProposal(2, 0, -1, block_hash("p"), b"block"))
    assert proposal.verify(CHAIN_ID)
    assert guard.sign_proposal(SignProposal(2, 0, -1, block_hash("p"), b"block")) == proposal
    with pytest.raises(DoubleSignError):
        guard.sign_proposal(SignProposal(2, 0, -1, block_hash("q"), b"other"))
    guard.sign_vote(prevote(2, 0, block_hash("p")))
    guard.sign_vote(precommit(2, 0, block_hash("p")))


def test_lock_is_recorded_with_the_precommit() -> None:
    guard = SignerGuard(KEY, CHAIN_ID, MemorySignerStore())
    assert guard.resume_for(4) is None  # nothing signed: nothing to resume
    guard.sign_vote(precommit(4, 0, NIL))
    assert guard.resume_for(4) == Resume(0, Step.PRECOMMIT, None, None)  # nil locks nothing
    guard.sign_vote(precommit(4, 1, block_hash("a")))
    guard.sign_vote(prevote(4, 2, NIL))
    lock = Lock(1, block_hash("a"))
    assert guard.resume_for(4) == Resume(2, Step.PREVOTE, lock, lock)
    assert guard.resume_for(5) is None


def test_valid_value_is_recorded_with_each_signature_and_never_moves_back() -> None:
    """The valid value changes without a signature (a polka after our nil precommit); the
    next signature request carries it to the record, so a restart resumes with it."""
    guard = SignerGuard(KEY, CHAIN_ID, MemorySignerStore())
    guard.sign_vote(precommit(4, 1, block_hash("a")))
    seen_later = Lock(2, block_hash("b"))
    guard.sign_vote(SignVote(VoteType.PREVOTE, 4, 3, NIL, seen_later))
    resumed = guard.resume_for(4)
    assert resumed is not None and resumed.valid == seen_later
    assert resumed.lock == Lock(1, block_hash("a"))
    guard.sign_vote(SignVote(VoteType.PRECOMMIT, 4, 3, NIL, Lock(1, block_hash("a"))))
    resumed = guard.resume_for(4)
    assert resumed is not None and resumed.valid == seen_later  # not back to round 1
    guard.sign_vote(prevote(5, 0, NIL))
    assert guard.resume_for(5) == Resume(0, Step.PREVOTE, None, None)  # a new height: none


def test_record_survives_reopening(tmp_path: Path) -> None:
    guard = SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))
    vote = guard.sign_vote(precommit(9, 4, block_hash("a")))
    reopened = SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))
    assert reopened.state == guard.state
    lock = Lock(4, block_hash("a"))
    assert reopened.resume_for(9) == Resume(4, Step.PRECOMMIT, lock, lock)
    assert reopened.sign_vote(precommit(9, 4, block_hash("a"))) == vote
    with pytest.raises(DoubleSignError):
        reopened.sign_vote(precommit(9, 4, NIL))


def test_record_is_durable_before_the_signature_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is created once (fsynced, renamed, directory fsynced); after that each
    signature's record is one write into the file's older slot and one sync of it."""
    events: list[str] = []
    real_fsync, real_fdatasync, real_replace = os.fsync, os.fdatasync, os.replace
    path = tmp_path / STATE_FILE

    def fsync(fd: int) -> None:
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        events.append(f"fsync {kind}")
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        events.append("fdatasync file")
        real_fdatasync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "replace", replace)
    guard = SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))
    vote = guard.sign_vote(prevote(1, 0, NIL))
    events.append("returned")
    assert events == ["fsync file", "rename", "fsync dir", "returned"]
    assert vote.signature in path.read_bytes()  # the record names what just left
    events.clear()
    for round_ in (1, 2, 3):
        vote = guard.sign_vote(prevote(1, round_, NIL))
        events.append("returned")
        assert vote.signature in path.read_bytes()
    assert events == ["fdatasync file", "returned"] * 3


def test_no_signature_when_the_record_cannot_be_written(tmp_path: Path) -> None:
    class BrokenStore(MemorySignerStore):
        def save(self, state: object) -> None:
            raise OSError("disk full")

    guard = SignerGuard(KEY, CHAIN_ID, BrokenStore())
    with pytest.raises(OSError):
        guard.sign_vote(prevote(1, 0, NIL))
    assert guard.state.height == 0  # nothing recorded, nothing returned


def test_damaged_record_stops_the_signer(tmp_path: Path) -> None:
    SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path)).sign_vote(prevote(1, 0, NIL))
    path = tmp_path / STATE_FILE
    path.write_bytes(path.read_bytes()[:100])  # the only record cut short in its slot
    with pytest.raises(ConsensusError):
        SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))


def test_record_of_another_key_or_chain_is_refused(tmp_path: Path) -> None:
    SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path)).sign_vote(prevote(1, 0, NIL))
    with pytest.raises(ConsensusError):
        SignerGuard(keys(1, b"other")[0], CHAIN_ID, FileSignerStore(tmp_path))
    with pytest.raises(ConsensusError):
        SignerGuard(KEY, "another-chain", FileSignerStore(tmp_path))


def test_leftover_temporary_file_is_harmless(tmp_path: Path) -> None:
    guard = SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))
    guard.sign_vote(prevote(1, 0, NIL))
    (tmp_path / (STATE_FILE + ".tmp")).write_bytes(b"half a record")  # crash mid-write
    reopened = SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))
    assert reopened.state == guard.state


def test_sigkill_at_random_instants_never_yields_a_conflict(tmp_path: Path) -> None:
    """A validator killed mid-signing, again and again, never signs two different votes."""
    rng = random.Random(2024)
    signed: dict[tuple[str, str, str], str] = {}
    total = 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for attempt in range(30):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.consensus.signer_child", str(tmp_path), str(attempt)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        # Killed after a random number of signatures (so a loaded machine signs as many as
        # an idle one), at a random instant while it signs the next ones.
        seen = "".join(child.stdout.readline() for _ in range(rng.randint(4, 10)))
        time.sleep(rng.uniform(0.0, 0.01))
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate()
        output = seen + rest
        assert child.returncode == -signal.SIGKILL
        if not output.endswith("\n"):
            output = output[: output.rfind("\n") + 1]  # killed in the middle of a line
        for line in output.splitlines():
            kind, height, round_, value = line.split()
            key = (kind, height, round_)
            assert signed.setdefault(key, value) == value, f"conflict at {key} (run {attempt})"
            total += 1
    assert total > 100  # the children really signed, and were killed while doing it
    # And afterwards the record still refuses a conflict with the last vote.
    guard = SignerGuard(CHILD_KEY, CHAIN_ID, FileSignerStore(tmp_path))
    last = guard.state
    assert last.height > 0
    vote_type = VoteType.PREVOTE if last.step == 2 else VoteType.PRECOMMIT
    for block in (NIL, block_hash("a"), block_hash("zzz")):
        request = SignVote(vote_type, last.height, last.round, block)
        if block == last.block_hash:
            assert guard.sign_vote(request).signature == last.signature
        else:
            with pytest.raises(DoubleSignError):
                guard.sign_vote(request)
