"""Every protocol object: encode → decode → encode is the identity; mutations never pass."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any, get_args, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxchain.core.block import Block, Header
from fluxchain.core.crypto import TAG_TX, SigningKey, tagged_hash
from fluxchain.core.encoding import (
    chain_id_fits,
    decode_field_by_field,
    pack,
    unpack,
    unpack_fields,
)
from fluxchain.core.errors import BlockError, DecodeError, TxError
from fluxchain.core.events import Event, EventKind
from fluxchain.core.params import Tier
from fluxchain.core.placement.records import (
    Accrual,
    Count,
    Demand,
    Instance,
    NetworkTotals,
    NodeLoad,
    Placement,
    Refill,
    Wanting,
)
from fluxchain.core.records import Account, DequeHead, Meta, Node, NodeStatus, Ring, UptimeTally
from fluxchain.core.tx import (
    MAX_MEMO,
    TX_VERSION,
    AppCancel,
    AppExtend,
    Benchmark,
    Evidence,
    Hardware,
    NodeConfirm,
    NodeRegister,
    NodeUnregister,
    NodeUpdate,
    Transfer,
    Tx,
    TxKind,
    UptimeAttest,
    UptimeReport,
    _decode_transfer,
    _MemoTransferWire,
    _TransferWire,
)
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.core.votes import Commit, Vote, VoteType, evidence_pair, sign_commit
from tests.support.chain import vrf_key_of

KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
u32 = st.integers(0, 2**32 - 1)
amount = st.integers(1, 2**62)
b20 = st.binary(min_size=20, max_size=20)
b32 = st.binary(min_size=32, max_size=32)
key = st.sampled_from(KEYS)
country = st.sampled_from(["DE", "US", "JP"])
continent = st.sampled_from(["EU", "NA", "AS"])
endpoint = st.sampled_from(["127.0.0.1:26600", "node.example.org:16127", "[::1]:80"])
hardware = st.builds(Hardware, st.integers(1, 64), st.integers(1, 2**20), st.integers(1, 2**16))
benchmark = st.builds(Benchmark, u32, u32, u32, u32, u32, u32, u32)
app_name = st.from_regex(r"[a-z][a-z0-9]{0,20}", fullmatch=True)


def _vote(k: SigningKey, h: int, r: int, block_hash: bytes, t: VoteType = VoteType.PREVOTE) -> Vote:
    return Vote.create(k, "flux-test", t, h, r, block_hash)


votes = st.builds(
    _vote, key, st.integers(1, 2**40), st.integers(0, 100), st.sampled_from([b"", b"\x01" * 32])
)
evidence = st.builds(
    lambda k, h: Evidence(
        *evidence_pair(_vote(k, h, 0, b"\x01" * 32), _vote(k, h, 0, b"\x02" * 32))
    ),
    key,
    st.integers(1, 1000),
)

vrf_keys = st.sampled_from([vrf_key_of(k) for k in KEYS])

payloads = st.one_of(
    st.builds(Transfer, b20, amount),
    st.builds(
        NodeRegister,
        st.sampled_from(list(Tier)),
        st.sampled_from([k.public_key for k in KEYS]),
        endpoint,
        country,
        continent,
        hardware,
        st.binary(min_size=64, max_size=64),
        vrf_keys,
        st.binary(min_size=96, max_size=96),
    ),
    st.builds(
        lambda node_id, where, c, ct, key, proof, top_up, vrf_key, vrf_proof: NodeUpdate(
            node_id,
            where,
            c,
            ct,
            key,
            proof if key else b"",
            top_up,
            vrf_key if key else b"",
            vrf_proof if key else b"",
        ),
        b20,
        endpoint,
        country,
        continent,
        st.sampled_from([b""] + [k.public_key for k in KEYS]),
        st.binary(min_size=64, max_size=64),
        st.one_of(st.just(0), amount),
        vrf_keys,
        st.binary(min_size=96, max_size=96),
    ),
    st.builds(NodeConfirm, b20, benchmark, st.text(max_size=10)),
    st.builds(
        UptimeAttest,
        b20,
        u32,
        st.lists(
            st.builds(UptimeReport, b20, st.booleans(), u32),
            max_size=5,
            unique_by=lambda r: r.target,
        ).map(tuple),
    ),
    st.builds(NodeUnregister, b20),
    st.builds(AppExtend, app_name, st.integers(1, 2**31)),
    st.builds(AppCancel, app_name),
    evidence,
)

txs = st.builds(
    lambda k, nonce, fee, p: Tx.create(k, "flux-test", nonce, fee, p),
    key,
    st.integers(0, 2**63),
    st.integers(0, 2**40),
    payloads,
)

nodes = st.builds(
    Node,
    b20,
    b20,
    st.sampled_from([k.public_key for k in KEYS]),
    st.sampled_from(list(Tier)),
    st.sampled_from(list(NodeStatus)),
    endpoint,
    country,
    continent,
    hardware,
    amount,
    u32,
    u32,
    u32,
    st.one_of(st.none(), benchmark),
    st.text(max_size=10),
    u32,
    u32,
    u32,
    u32,
    amount,
    u32,
    vrf_keys,
    st.sampled_from([b"", b"\x07" * 32]),
)

# Placement's records, declared in core/placement/records.py.
instances = st.builds(Instance, st.integers(0, 1000), b20, u32)
placement_records = st.one_of(
    instances,
    st.builds(Accrual, b20, b20, u32),
    st.builds(
        Placement,
        app_name,
        st.integers(0, 1000),
        st.builds(
            Demand,
            u32,
            u32,
            u32,
            st.lists(st.integers(1, 65_535), max_size=3).map(tuple),
            st.sampled_from(list(Tier)),
            st.just(()),
            st.lists(b20, max_size=3).map(tuple),
        ),
        st.lists(instances, max_size=3).map(tuple),
        st.lists(st.builds(Accrual, b20, b20, u32), max_size=3).map(tuple),
        st.sampled_from(["", "capacity"]),
        u32,
    ),
    st.builds(
        NodeLoad,
        b20,
        b20,
        st.sampled_from(list(Tier)),
        country,
        continent,
        *([u32] * 9),
        st.lists(st.tuples(app_name, st.integers(0, 1000)), max_size=3).map(tuple),
        st.lists(st.integers(1, 65_535), max_size=3).map(tuple),
        b32,
    ),
    st.builds(NetworkTotals, u32, st.tuples(u32, u32, u32), u32, u32, u32, u32, u32),
    st.builds(Count, u32),
    st.builds(Wanting, u32, u32),
    st.builds(Refill, u32, u32),
)

events = st.builds(
    Event,
    st.sampled_from(list(EventKind)),
    st.lists(st.one_of(u32, b20, app_name), max_size=4).map(tuple),
)

records = st.one_of(
    placement_records,
    events,
    st.builds(Account, amount, u32),
    nodes,
    st.builds(Meta, u32, u32, b32, amount, amount, b32, b32),
    st.builds(DequeHead, u32, u32),
    st.builds(Ring, u32, st.lists(b20, max_size=5).map(tuple)),
    st.builds(
        UptimeTally,
        u32,
        st.integers(0, 1000),
        st.lists(b20, max_size=5).map(tuple),
        st.lists(b20, max_size=5).map(tuple),
    ),
)

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@given(txs)
def test_tx_round_trip(tx: Tx) -> None:
    again = Tx.decode(tx.raw, 1 << 20)
    assert again == tx and again.raw == tx.raw and again.id == tx.id
    assert pack(unpack(tx.raw)) == tx.raw
    assert again.signature_valid()


def _unsigned_digest(tx: Tx) -> bytes:
    return tagged_hash(TAG_TX, tx.chain_id, pack(unpack(tx.raw)[:7]))


@given(txs)
def test_signing_digest_equals_reencoding_without_signature(tx: Tx) -> None:
    assert tx.signing_digest() == _unsigned_digest(tx)


@given(txs, st.data())
def test_mutated_tx_is_rejected_or_another_tx(tx: Tx, data: st.DataObject) -> None:
    raw = bytearray(tx.raw)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        other = Tx.decode(bytes(raw), 1 << 20)
    except (DecodeError, TxError, ValueError):
        return
    assert other.id != tx.id
    assert not other.signature_valid() or other.sender != tx.sender or other == tx


@given(records)
def test_record_round_trip(record: Any) -> None:
    raw = pack(record.to_fields())
    again = type(record).from_fields(unpack(raw))
    assert again == record and pack(again.to_fields()) == raw


@given(st.lists(votes, max_size=3), st.integers(1, 1000), b32)
def test_vote_commit_validators_round_trip(vs: list[Vote], height: int, block_hash: bytes) -> None:
    for v in vs:
        assert Vote.from_fields(unpack(pack(v.to_fields()))) == v
    commit = sign_commit(KEYS[1:], "flux-test", height, 0, block_hash)
    assert Commit.from_fields(unpack(pack(commit.to_fields()))) == commit
    vset = ValidatorSet.of(
        [Validator(k.public_key, i + 1, vrf_key_of(k)) for i, k in enumerate(KEYS)]
    )
    assert ValidatorSet.from_fields(unpack(pack(vset.to_fields()))) == vset
    commit.verify("flux-test", vset, height, block_hash)  # 9 of 10
    short = sign_commit(KEYS[:3], "flux-test", height, 0, block_hash)  # 6 of 10: not > 2/3
    with pytest.raises(BlockError):
        short.verify("flux-test", vset, height, block_hash)


@given(st.lists(txs, max_size=4), b32, st.integers(1, 1000))
def test_block_and_events_round_trip(block_txs: list[Tx], root: bytes, height: int) -> None:
    header = Header(
        "flux-test",
        height,
        0,
        5,
        root,
        KEYS[0].public_key,
        bytes(96),
        root,
        root,
        root,
        root,
        root,
    )
    commit = sign_commit(KEYS[:3], "flux-test", 1, 0, root) if height > 1 else None
    block = Block(header, tuple(t.raw for t in block_txs), commit)
    raw = block.encode()
    again = Block.decode(raw, 1 << 22, 100)
    assert again == block and again.encode() == raw and again.hash() == block.hash()
    event = Event(EventKind.ASSIGNED, ("app", b"\x01" * 20, 2))
    assert Event.from_fields(unpack(pack(event.to_fields()))) == event


# Wire values a hostile encoder could put in any field: wrong types, edges of every bound.
_HOSTILE = [
    -1,
    0,
    1,
    2,
    7,
    2**32,
    2**63,
    2**64,
    True,
    b"",
    b"\x00" * 20,
    b"\x02" * 33,
    b"\x01" * 32,
    b"x" * 200,
    "",
    "DE",
    "x" * 200,
    [],
    [0],
    None,
]


@given(st.one_of(records, payloads, votes, txs), st.data())
def test_compiled_decoder_accepts_exactly_what_the_field_checks_accept(
    record: Any, data: st.DataObject
) -> None:
    """The compiled fast path of a record's decoder is a shortcut, not a second rule: with
    any one field replaced by a hostile value, it returns the same record or raises the
    same reason and message as the field-by-field checks."""
    fields = record.to_fields()
    index = data.draw(st.integers(0, len(fields) - 1))
    fields[index] = data.draw(st.sampled_from(_HOSTILE))
    cls = type(record)
    outcomes = []
    for decode in (cls.from_fields, lambda f: decode_field_by_field(cls, f)):
        try:
            outcomes.append(decode(fields))
        except DecodeError as exc:
            outcomes.append((exc.reason, exc.message))
    assert outcomes[0] == outcomes[1]


# -- the transfer shortcut of Tx.decode against the generic codec (issue 24) ----------------

# Transfers as a block carries them, and the edges of each field's bounds: chain ids at and
# past 64 bytes (and not ASCII), nonces and fees at their limits, memos at both ends.
_transfer_txs = st.builds(
    lambda k, chain_id, nonce, fee, to, amount, memo: Tx.create(
        k, chain_id, nonce, fee, Transfer(to, amount, memo)
    ),
    key,
    st.sampled_from(["flux-test", "", "x" * 64, "é" * 32, "é" * 33, "x" * 65]),
    st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 127, 128, 255, 256, 2**64 - 1])),
    st.one_of(st.integers(0, 2**63 - 1), st.sampled_from([0, 2**63 - 1, 2**63])),
    st.one_of(b20, st.binary(max_size=21)),
    st.one_of(amount, st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1])),
    st.one_of(st.just(b""), st.binary(min_size=1, max_size=4), st.just(b"m" * 1025)),
)


def _wide(value: int | str | bytes) -> bytes:
    """`value` in a longer msgpack form than the canonical one (same value when read)."""
    if isinstance(value, int):
        return b"\xcf" + value.to_bytes(8, "big")
    data = value.encode() if isinstance(value, str) else value
    return (b"\xda" if isinstance(value, str) else b"\xc5") + len(data).to_bytes(2, "big") + data


def _with_wide_field(raw: bytes, index: int) -> bytes:
    """The tx encoding `raw` with its field `index` written in a longer form."""
    fields = unpack_fields(raw)
    parts = [pack(f) for f in fields]
    if type(fields[index]) is list:  # the payload: widen its first item (if a scalar)
        inner = [pack(f) for f in fields[index]]
        if inner and isinstance(fields[index][0], (int, str, bytes)):  # Evidence's: a vote
            inner[0] = _wide(fields[index][0])
        parts[index] = pack(fields[index])[:1] + b"".join(inner)
    else:
        parts[index] = _wide(fields[index])
    return raw[:1] + b"".join(parts)


def _outcome(decode: Any, raw: bytes, max_bytes: int) -> Any:
    try:
        tx = decode(raw, max_bytes)
    except DecodeError as exc:
        return (exc.reason, exc.message)
    return (tx, tx.raw, tx.id, tx.sender_address, type(tx.kind), type(tx.payload))


def _same_verdict(raw: bytes, max_bytes: int = 1 << 20) -> None:
    assert _outcome(Tx.decode, raw, max_bytes) == _outcome(Tx.decode_by_codec, raw, max_bytes)


@given(_transfer_txs)
def test_the_transfer_shortcut_decodes_as_the_codec_does(tx: Tx) -> None:
    """Valid or not (a chain id past its bound, a zero amount, a memo too long, a payee
    of the wrong size), a transfer decodes to the same Tx, or fails with the same reason
    and message, by `Tx.decode` (msgspec, for transfers with a memo or without) and by the
    codec; and a valid one takes the shortcut, so that this compares something."""
    _same_verdict(tx.raw)
    _same_verdict(tx.raw, max_bytes=len(tx.raw) - 1)  # TOO_LARGE either way
    payload = tx.payload
    valid = len(payload.memo) <= MAX_MEMO and 0 < payload.amount < 2**63 and len(payload.to) == 20
    if valid and chain_id_fits(tx.chain_id) and tx.fee < 2**63:
        assert _decode_transfer(Tx, tx.raw, None) is not None


@given(_transfer_txs.filter(lambda tx: _decode_transfer(Tx, tx.raw, None) is not None))
def test_a_transfer_built_by_the_shortcut_is_a_frozen_tx_like_the_codecs(tx: Tx) -> None:
    """The shortcut fills a draft and turns it into a Tx (core/frozen.py `draft_class`):
    what comes out is a Tx and a Transfer in every way a caller can see: type, equality,
    hash, repr, frozen fields, `dataclasses.replace` and `fields`, pickling (as sent to
    another process)."""
    fast, slow = Tx.decode(tx.raw, 1 << 20), Tx.decode_by_codec(tx.raw, 1 << 20)
    assert type(fast) is Tx and type(fast.payload) is Transfer
    assert (fast, fast.payload) == (slow, slow.payload)
    assert hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert [getattr(fast, f.name) for f in dataclasses.fields(fast)] == [
        getattr(slow, f.name) for f in dataclasses.fields(slow)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.nonce = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.payload.amount = 1  # type: ignore[misc]
    assert dataclasses.replace(fast, fee=fast.fee + 1) == dataclasses.replace(
        slow, fee=slow.fee + 1
    )
    copy = pickle.loads(pickle.dumps(fast))
    assert copy == slow and copy.raw == slow.raw and copy.id == slow.id


@given(st.one_of(_transfer_txs, txs), st.data())
def test_mutated_transfers_get_the_codecs_verdict(tx: Tx, data: st.DataObject) -> None:
    """Bytes flipped, inserted, cut or appended, a field in a non-minimal form, a memo
    written with its default, another kind: the same verdict and reason as the codec's."""
    raw = bytearray(tx.raw)
    how = data.draw(st.sampled_from(["flip", "insert", "cut", "append", "wide", "memo"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif how == "insert":
        raw.insert(data.draw(st.integers(0, len(raw))), data.draw(st.integers(0, 255)))
    elif how == "cut":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    elif how == "append":
        raw += data.draw(st.binary(min_size=1, max_size=3))
    elif how == "wide":
        raw = bytearray(_with_wide_field(bytes(raw), data.draw(st.integers(0, 7))))
    else:  # the payload's optional memo written out with its default, b""
        fields = unpack(bytes(raw))
        if tx.kind is TxKind.TRANSFER and len(fields[6]) == 2:
            fields[6].append(b"")
            raw = bytearray(pack(fields))
    _same_verdict(bytes(raw))


@given(st.binary(max_size=200))
def test_random_bytes_get_the_codecs_verdict_as_a_tx(raw: bytes) -> None:
    _same_verdict(raw)


def test_the_transfer_shortcut_declares_the_txs_version_and_kind() -> None:
    """`_TransferWire` and `_MemoTransferWire` spell the tx version and the TRANSFER kind
    as literals."""
    for wire in (_TransferWire, _MemoTransferWire):
        hints = get_type_hints(wire)
        assert get_args(hints["version"]) == (TX_VERSION,)
        assert get_args(hints["kind"]) == (TxKind.TRANSFER.value,)
