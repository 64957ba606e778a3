"""The signer record's two slots (issue 24): one sync a signature, and no crash, torn write
or garbled slot loses a durable record or lets the guard sign below it.

A save writes the slot that does not hold the newest durable record, so a crash can only
tear a record whose signature never left (the save had not returned). Each test writes
records through the real store, then puts the file into the state a crash or a damaged
disk would leave, and opens it again as a restarted node would.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.errors import ConsensusError, DoubleSignError
from consensus.events import SignVote
from consensus.signer import (
    LEGACY_STATE_FILE,
    SLOT_SIZE,
    STATE_FILE,
    FileSignerStore,
    SignerGuard,
    SignerState,
    decode_slot,
    encode_slot,
)
from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason
from fluxchain.core.votes import MAX_ROUND, NIL, VoteType
from tests.consensus.helpers import CHAIN_ID, keys

KEY = keys(1)[0]
SEED = 24


def prevote(height: int, round_: int = 0) -> SignVote:
    return SignVote(VoteType.PREVOTE, height, round_, NIL)


def signed_heights(home: Path, heights: int) -> tuple[SignerGuard, list[SignerState]]:
    """A guard that signed a prevote at heights 1..`heights`, and its record after each."""
    guard = SignerGuard(KEY, CHAIN_ID, FileSignerStore(home))
    records = []
    for height in range(1, heights + 1):
        guard.sign_vote(prevote(height))
        records.append(guard.state)
    return guard, records


def reopen(home: Path, signing_height: int | None = None) -> SignerGuard:
    return SignerGuard(KEY, CHAIN_ID, FileSignerStore(home), signing_height=signing_height)


def slot_of(data: bytes, index: int) -> bytes:
    return data[index * SLOT_SIZE : (index + 1) * SLOT_SIZE]


def with_slot(data: bytes, index: int, slot: bytes) -> bytes:
    return data[: index * SLOT_SIZE] + slot + data[(index + 1) * SLOT_SIZE :]


def newest_slot(data: bytes, record: SignerState) -> int:
    """Which slot holds `record` (its signature is in exactly one of them)."""
    holders = [i for i in (0, 1) if record.signature in slot_of(data, i)]
    assert len(holders) == 1
    return holders[0]


def assert_refuses_below(guard: SignerGuard, record: SignerState) -> None:
    """The reopened guard stands at `record`: nothing at or below it but the same vote."""
    assert guard.state == record
    with pytest.raises(DoubleSignError):
        guard.sign_vote(prevote(record.height - 1, 5))
    assert guard.sign_vote(prevote(record.height)).signature == record.signature


def assert_stands_above(guard: SignerGuard, signing_height: int) -> None:
    """The reopened guard refuses everything up to `signing_height` (a lost record may have
    been any signature there) and signs above it."""
    assert (guard.state.height, guard.state.round) == (signing_height, MAX_ROUND)
    assert guard.state.signature == b"" and guard.last_vote() is None
    assert guard.resume_for(signing_height) is None  # the height starts afresh, unsigned
    for height in range(1, signing_height + 1):
        for round_ in (0, 7):
            with pytest.raises(DoubleSignError):
                guard.sign_vote(prevote(height, round_))
    guard.sign_vote(prevote(signing_height + 1))


def test_a_crash_between_the_slot_write_and_its_sync_never_lets_the_guard_sign_below_it(
    tmp_path: Path,
) -> None:
    """The next record (height 4, the node's committed height 3) was being written (any
    prefix of its slot reached the disk, or all of it, or none) when the node died before
    the sync returned: the restarted guard holds the old record if the slot is unchanged,
    the new one if all of it landed, and stands above height 4 if the slot is torn (a torn
    slot and a damaged durable one look the same: either may have held a signature)."""
    rng = random.Random(SEED)
    _, records = signed_heights(tmp_path, 3)
    durable = records[-1]
    path = tmp_path / STATE_FILE
    before = path.read_bytes()
    target = 1 - newest_slot(before, durable)  # where the next save writes
    next_record = replace(durable, height=durable.height + 1)
    new_slot = encode_slot(slot_sequence(before, 1 - target) + 1, next_record)
    cuts = sorted({0, SLOT_SIZE, *(rng.randrange(SLOT_SIZE) for _ in range(40))})
    for cut in cuts:
        torn = new_slot[:cut] + slot_of(before, target)[cut:]
        path.write_bytes(with_slot(before, target, torn))
        guard = reopen(tmp_path, signing_height=next_record.height)
        if torn == slot_of(before, target):
            assert_refuses_below(guard, durable)
        elif decode_slot(torn) is not None:
            assert guard.state == next_record, f"cut at byte {cut} (seed {SEED})"
        else:
            assert_stands_above(guard, next_record.height)
        guard.close()


def test_a_torn_write_into_either_slot_stands_the_guard_above_every_height_it_signed_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves alternate between the slots: a crash tears whichever one is written next,
    and each time the restarted guard signs nothing up to the height being decided."""
    for heights in (2, 3):  # the next save goes to one slot, then to the other
        home = tmp_path / f"h{heights}"
        home.mkdir()
        guard, records = signed_heights(home, heights)

        def crash(fd: int) -> None:
            raise SystemExit("crashed before the sync returned")  # the slot is written

        path = home / STATE_FILE
        before = path.read_bytes()
        with monkeypatch.context() as patched:
            patched.setattr(os, "fdatasync", crash)
            with pytest.raises(SystemExit):
                guard.sign_vote(prevote(heights + 1))
        assert guard.state == records[-1]  # no signature came back
        written = path.read_bytes()
        target = 1 - newest_slot(before, records[-1])
        assert slot_of(written, 1 - target) == slot_of(before, 1 - target)  # untouched
        # The page cache lost most of the new slot: the disk holds a torn one.
        half = 60  # inside the record: its checksum cannot hold
        half_slot = slot_of(written, target)[:half] + slot_of(before, target)[half:]
        path.write_bytes(with_slot(written, target, half_slot))
        restarted = reopen(home, signing_height=heights + 1)
        assert_stands_above(restarted, heights + 1)
        restarted.close()
        assert reopen(home).state == restarted.state  # the floor is durable, both slots whole


@pytest.mark.parametrize("damage", ["zeroed", "magic", "sequence", "length", "record", "checksum"])
@pytest.mark.parametrize("which", ["older", "newest"])
def test_a_damaged_slot_never_lets_the_guard_sign_below_the_record_it_may_have_held(
    tmp_path: Path, damage: str, which: str
) -> None:
    """A slot garbled after its sync (failing media, a bit flip): if it was the newest, its
    signature left the node, and resuming from the other slot would sign below it (a
    double sign at that height). Prevotes at heights 1..5, the node's committed height 4:
    the guard stands above height 5 either way, and goes on signing above it."""
    _, records = signed_heights(tmp_path, 5)
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    newest = newest_slot(data, records[-1])
    damaged = newest if which == "newest" else 1 - newest
    path.write_bytes(with_slot(data, damaged, _garble(slot_of(data, damaged), damage)))
    guard = reopen(tmp_path, signing_height=5)
    assert_stands_above(guard, 5)
    guard.close()
    assert reopen(tmp_path).state == guard.state


def test_a_damaged_slot_without_a_committed_height_refuses_to_start(tmp_path: Path) -> None:
    """Without the node's committed height nothing bounds what the lost record held."""
    _, records = signed_heights(tmp_path, 2)
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    damaged = _garble(slot_of(data, newest_slot(data, records[-1])), "record")
    path.write_bytes(with_slot(data, newest_slot(data, records[-1]), damaged))
    written = path.read_bytes()
    with pytest.raises(ConsensusError) as refused:
        reopen(tmp_path)
    assert refused.value.reason == Reason.SIGNER_STATE
    assert path.read_bytes() == written


@pytest.mark.parametrize("damage", ["zeroed", "magic", "record", "checksum"])
def test_both_slots_damaged_refuses_to_start_and_keeps_the_file(
    tmp_path: Path, damage: str
) -> None:
    signed_heights(tmp_path, 2)
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    for index in (0, 1):
        data = with_slot(data, index, _garble(slot_of(data, index), damage))
    path.write_bytes(data)
    with pytest.raises(ConsensusError) as refused:
        reopen(tmp_path)
    assert refused.value.reason == Reason.SIGNER_STATE
    assert "no slot holds a record" in refused.value.message
    assert path.read_bytes() == data  # nothing rewritten: the operator still has it all


def test_a_record_file_of_another_size_refuses_to_start(tmp_path: Path) -> None:
    """The file is written once at two slots' size and never resized: a cut or grown one
    is no crash of the store (a half-copied home, a damaged file system) and may have lost
    the newest slot whole."""
    signed_heights(tmp_path, 2)
    path = tmp_path / STATE_FILE
    whole = path.read_bytes()
    for size in (0, 20, SLOT_SIZE - 1, SLOT_SIZE, SLOT_SIZE + 100, 3 * SLOT_SIZE):
        cut = (whole * 2)[:size]
        path.write_bytes(cut)
        with pytest.raises(ConsensusError) as refused:
            reopen(tmp_path, signing_height=3)
        assert refused.value.reason == Reason.SIGNER_STATE
        assert path.read_bytes() == cut


def test_slots_that_disagree_refuse_to_start(tmp_path: Path) -> None:
    """Two valid slots whose newer one stands below the older: not written by this store."""
    _, records = signed_heights(tmp_path, 2)
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    newer = newest_slot(data, records[-1])
    data = with_slot(data, newer, encode_slot(99, records[0]))
    data = with_slot(data, 1 - newer, encode_slot(98, records[-1]))
    path.write_bytes(data)
    with pytest.raises(ConsensusError) as refused:
        reopen(tmp_path)
    assert refused.value.reason == Reason.SIGNER_STATE


def test_the_old_single_record_file_is_migrated_once(tmp_path: Path) -> None:
    record = SignerState(CHAIN_ID, KEY.public_key, height=7, round=2, step=2)
    (tmp_path / LEGACY_STATE_FILE).write_bytes(pack(record.to_fields()))
    guard = reopen(tmp_path)
    assert guard.state == record
    assert not (tmp_path / LEGACY_STATE_FILE).exists()
    assert (tmp_path / STATE_FILE).exists()
    with pytest.raises(DoubleSignError):
        guard.sign_vote(prevote(7, 1))
    assert reopen(tmp_path).state == record


def test_a_damaged_old_record_file_refuses_to_start_and_is_kept(tmp_path: Path) -> None:
    record = SignerState(CHAIN_ID, KEY.public_key, height=7, round=2, step=2)
    damaged = pack(record.to_fields())[:-3]
    (tmp_path / LEGACY_STATE_FILE).write_bytes(damaged)
    with pytest.raises(ConsensusError) as refused:
        reopen(tmp_path)
    assert refused.value.reason == Reason.SIGNER_STATE
    assert (tmp_path / LEGACY_STATE_FILE).read_bytes() == damaged
    assert not (tmp_path / STATE_FILE).exists()


def slot_sequence(data: bytes, index: int) -> int:
    decoded = decode_slot(slot_of(data, index))
    assert decoded is not None
    return decoded[0]


def _garble(slot: bytes, damage: str) -> bytes:
    length = int.from_bytes(slot[16:20], "big")
    if damage == "zeroed":
        return bytes(SLOT_SIZE)
    offsets = {"magic": 0, "sequence": 12, "length": 18, "record": 20 + length // 2}
    at_byte = offsets.get(damage, 20 + length + 5)  # else: the checksum
    return slot[:at_byte] + bytes([slot[at_byte] ^ 0x5A]) + slot[at_byte + 1 :]


def test_an_old_record_file_beside_the_slots_yields_the_later_record(tmp_path: Path) -> None:
    """Upgraded, rolled back (the old binary signs on in the old file), upgraded again:
    both files exist. Whichever record stands later wins; the stale slots never do."""
    _, records = signed_heights(tmp_path, 2)
    later = replace(records[-1], height=9)
    (tmp_path / LEGACY_STATE_FILE).write_bytes(pack(later.to_fields()))
    guard = reopen(tmp_path)
    assert guard.state == later
    assert not (tmp_path / LEGACY_STATE_FILE).exists()
    guard.close()
    assert reopen(tmp_path).state == later
    (tmp_path / LEGACY_STATE_FILE).write_bytes(pack(records[0].to_fields()))  # an older one
    assert reopen(tmp_path).state == later
    assert not (tmp_path / LEGACY_STATE_FILE).exists()
