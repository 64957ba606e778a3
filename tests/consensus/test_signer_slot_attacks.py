"""Review of the signer record's two slots (rev11): attacks that the slot layout lets
through. Each test writes records through the real store, damages the file as a disk or
an operator's copy would, and opens it again as a restarted node does."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.errors import ConsensusError
from consensus.events import SignVote
from consensus.signer import SLOT_SIZE, STATE_FILE, FileSignerStore, SignerGuard
from fluxchain.core.errors import Reason
from fluxchain.core.votes import NIL, VoteType
from tests.consensus.helpers import CHAIN_ID, keys

KEY = keys(1)[0]


def test_a_signer_file_cut_before_its_newest_slot_lets_the_guard_sign_below_it(
    tmp_path: Path,
) -> None:
    """The store writes the file once at 2 * SLOT_SIZE bytes and never changes its size,
    so a file of another size was not left by any crash of this store (an interrupted copy
    of the home, a damaged file system). Two saves put the newest record (height 2) in
    slot 1; the file cut to one slot still holds a valid slot 0 (height 1), and the guard
    resumes from it: it then signs a second, different prevote at height 2, a double
    sign. A file of the wrong size must refuse to start (`signer_state`), as a file with
    no valid slot does."""
    guard = SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))
    guard.sign_vote(SignVote(VoteType.PREVOTE, 1, 0, NIL))
    released = guard.sign_vote(SignVote(VoteType.PREVOTE, 2, 0, NIL))  # into slot 1
    path = tmp_path / STATE_FILE
    assert path.stat().st_size == 2 * SLOT_SIZE
    path.write_bytes(path.read_bytes()[:SLOT_SIZE])  # slot 1, the newest, is gone

    try:
        restarted = SignerGuard(KEY, CHAIN_ID, FileSignerStore(tmp_path))
    except ConsensusError as refused:
        assert refused.reason == Reason.SIGNER_STATE
        return
    resumed = restarted.state.height
    second = restarted.sign_vote(SignVote(VoteType.PREVOTE, 2, 0, b"\x07" * 32))
    pytest.fail(
        f"the guard resumed at height {resumed} from a file of "
        f"{SLOT_SIZE} bytes and signed a second prevote at height 2 "
        f"({released.block_hash.hex()[:8] or 'nil'} then {second.block_hash.hex()[:8]})"
    )
