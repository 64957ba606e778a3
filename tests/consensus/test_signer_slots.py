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
    encode_slot,
)
from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason
from fluxchain.core.votes import NIL, VoteType
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


def reopen(home: Path) -> SignerGuard:
    return SignerGuard(KEY, CHAIN_ID, FileSignerStore(home))


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


def test_a_crash_between_the_slot_write_and_its_sync_keeps_the_last_durable_record(
    tmp_path: Path,
) -> None:
    """The next record was being written (any prefix of its slot reached the disk, or all
    of it, or none) when the node died before the sync returned: the restarted guard holds
    the last durable record, or the new one if the whole slot landed, never less."""
    rng = random.Random(SEED)
    _, records = signed_heights(tmp_path, 3)
    durable = records[-1]
    path = tmp_path / STATE_FILE
    before = path.read_bytes()
    target = 1 - newest_slot(before, durable)  # where the next save writes
    next_record = replace(durable, height=durable.height + 1)
    new_slot = encode_slot(4, next_record)
    cuts = sorted({0, SLOT_SIZE, *(rng.randrange(SLOT_SIZE) for _ in range(40))})
    for cut in cuts:
        torn = new_slot[:cut] + slot_of(before, target)[cut:]
        path.write_bytes(with_slot(before, target, torn))
        guard = reopen(tmp_path)
        expected = next_record if cut >= len(_used(new_slot)) else durable
        assert guard.state == expected, f"cut at byte {cut} (seed {SEED})"
        if expected is durable:
            assert_refuses_below(guard, durable)
        guard._store.close()  # type: ignore[attr-defined]


def test_a_torn_write_into_either_slot_never_loses_the_newest_durable_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves alternate between the slots: a crash tears whichever one is written next,
    and each time the other one, the newest durable record, is what the guard resumes."""
    for heights in (2, 3):  # the next save goes to slot 0, then to slot 1
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
        assert_refuses_below(reopen(home), records[-1])


@pytest.mark.parametrize(
    "damage",
    ["zeroed", "magic", "sequence", "length", "record", "checksum", "truncated"],
)
def test_a_garbled_older_slot_is_ignored_and_the_newest_record_kept(
    tmp_path: Path, damage: str
) -> None:
    _, records = signed_heights(tmp_path, 5)
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    older = 1 - newest_slot(data, records[-1])
    if damage == "truncated":
        assert older == 1  # five saves: slots 0, 1, 0, 1, 0
        data = data[: SLOT_SIZE + 100]  # the file cut inside its last slot
    else:
        data = with_slot(data, older, _garble(slot_of(data, older), damage))
    path.write_bytes(data)
    guard = reopen(tmp_path)
    assert_refuses_below(guard, records[-1])
    guard.sign_vote(prevote(6))  # and it goes on signing, into the damaged slot
    assert reopen(tmp_path).state == guard.state


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


def test_a_truncated_record_file_refuses_to_start(tmp_path: Path) -> None:
    signed_heights(tmp_path, 1)
    path = tmp_path / STATE_FILE
    for size in (0, 20, SLOT_SIZE - 1):
        path.write_bytes(path.read_bytes()[:size] if size else b"")
        with pytest.raises(ConsensusError) as refused:
            reopen(tmp_path)
        assert refused.value.reason == Reason.SIGNER_STATE


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


def _used(slot: bytes) -> bytes:
    """The slot's meaningful bytes (header, record, checksum), without the padding."""
    length = int.from_bytes(slot[16:20], "big")
    return slot[: 20 + length + 32]


def _garble(slot: bytes, damage: str) -> bytes:
    length = int.from_bytes(slot[16:20], "big")
    if damage == "zeroed":
        return bytes(SLOT_SIZE)
    offsets = {"magic": 0, "sequence": 12, "length": 18, "record": 20 + length // 2}
    at_byte = offsets.get(damage, 20 + length + 5)  # else: the checksum
    return slot[:at_byte] + bytes([slot[at_byte] ^ 0x5A]) + slot[at_byte + 1 :]
