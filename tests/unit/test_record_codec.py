"""The declarative record codec (core/encoding.py): paths, bounds and declarations."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Annotated, Any

import pytest

from fluxchain.core.block import Header
from fluxchain.core.encoding import (
    OFF_WIRE,
    ByKind,
    Record,
    Uint64,
    decode_field_by_field,
    pack,
    record,
    unpack,
)
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.events import Event, EventKind
from fluxchain.core.params import Tier
from fluxchain.core.placement.records import NodeLoad
from fluxchain.core.records import Node, NodeStatus
from fluxchain.core.tx import (
    Benchmark,
    Hardware,
    NodeRegister,
    Transfer,
    Tx,
    TxKind,
    UptimeAttest,
    UptimeReport,
)
from tests.support.chain import devnet_genesis, node_hot_key, vrf_key_of

KEY = node_hot_key(0)


def _register() -> NodeRegister:
    hardware = Hardware(4, 8192, 220)
    sig = b"\x01" * 64
    return NodeRegister(
        Tier.CUMULUS,
        KEY.public_key,
        "n.example:1",
        "DE",
        "EU",
        hardware,
        sig,
        vrf_key_of(KEY),
        b"\x02" * 96,
    )


def _refusal(cls: type[Record], fields: object) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        cls.from_fields(fields)
    return caught.value


def test_a_nested_field_is_named_by_its_full_path() -> None:
    fields = _register().to_fields()
    fields[5] = [0, 8192, 220]
    refusal = _refusal(NodeRegister, fields)
    assert refusal.reason is Reason.BAD_FIELD
    assert refusal.message == "payload.hardware.cores: 0 is outside [1, 4096]"


def test_a_list_item_is_named_by_its_index() -> None:
    reports = (UptimeReport(b"\x01" * 20, True, 5), UptimeReport(b"\x02" * 20, False, 9))
    fields = UptimeAttest(b"\x03" * 20, 4, reports).to_fields()
    fields[2][1][1] = 2
    assert _refusal(UptimeAttest, fields).message == "payload.reports[1].up: 2 is outside [0, 1]"


def test_a_key_that_is_not_on_the_curve_keeps_its_reason() -> None:
    fields = _register().to_fields()
    fields[1] = b"\x05" + b"\xff" * 32
    refusal = _refusal(NodeRegister, fields)
    assert refusal.reason is Reason.BAD_PUBKEY
    assert refusal.message.startswith("payload.node_key: ")


def test_a_cross_field_rule_runs_after_the_fields() -> None:
    fields = _register().to_fields()
    fields[2] = "no port"
    refusal = _refusal(NodeRegister, fields)
    assert refusal.message == "payload.endpoint: 'no port' is not host:port"


def test_a_version_other_than_the_declared_one_is_unknown() -> None:
    zero = b"\x00" * 32
    header = Header("c", 1, 0, 5, zero, KEY.public_key, b"\x03" * 96, zero, zero, zero, zero, zero)
    fields = header.to_fields()
    assert fields[0] == 1 and Header.from_fields(unpack(pack(fields))) == header
    fields[0] = 2
    refusal = _refusal(Header, fields)
    assert (refusal.reason, refusal.message) == (
        Reason.UNKNOWN_VERSION,
        "header.version 2 is not supported",
    )


class _Gapped(IntEnum):
    FIRST = 1
    THIRD = 3


@record("gapped")
@dataclass(frozen=True, slots=True)
class _HoldsGapped(Record):
    kind: _Gapped


def test_an_enum_value_outside_or_between_its_members_is_refused() -> None:
    assert _HoldsGapped.from_fields([3]) == _HoldsGapped(_Gapped.THIRD)
    assert _refusal(_HoldsGapped, [4]).message == "gapped.kind: 4 is outside [1, 3]"
    assert _refusal(_HoldsGapped, [2]).message == "gapped.kind: 2 is not a _Gapped"


def _node(benchmark: Benchmark | None = None) -> Node:
    return Node(
        b"\x01" * 20,
        b"\x02" * 20,
        KEY.public_key,
        Tier.NIMBUS,
        NodeStatus.CONFIRMED,
        "n.example:1",
        "DE",
        "EU",
        Hardware(4, 8192, 220),
        12_500,
        1,
        2,
        3,
        benchmark,
        "1.0",
        0,
        0,
        4,
        1,
        0,
        0,
        vrf_key_of(KEY),
        b"",
    )


def test_node_benchmark_is_none_only_as_the_empty_array() -> None:
    """An absent benchmark has one encoding, []: other empty values (0, b"", "") used to
    decode to None as well, giving one record several encodings."""
    fields = _node().to_fields()
    assert fields[13] == [] and Node.from_fields(fields) == _node()
    measured = _node(Benchmark(4, 8, 8192, 220, 200, 1000, 100))
    assert Node.from_fields(measured.to_fields()) == measured
    for other_empty in (0, b"", ""):
        fields[13] = other_empty
        assert _refusal(Node, fields).message == "node.benchmark: expected an array"


def test_a_field_without_a_checker_is_refused_when_declared() -> None:
    with pytest.raises(TypeError, match="declares no checker"):

        @record("loose")
        @dataclass(frozen=True, slots=True)
        class Loose(Record):
            count: int


def _transfer_tx_fields() -> list[object]:
    tx = Tx.create(KEY, "c", 0, 1_000, Transfer(b"\x09" * 20, 5))
    fields: list[object] = unpack(tx.raw)
    return fields


def test_a_tx_payload_is_decoded_as_the_kind_before_it_names() -> None:
    """The envelope's payload is the record its kind names: the same fields under another
    kind are that kind's payload (and fail as one), each failure under tx.payload."""
    fields = _transfer_tx_fields()
    assert Tx.from_fields(fields).payload == Transfer(b"\x09" * 20, 5)
    fields[2] = int(TxKind.NODE_UNREGISTER)  # one field, of a node id's size: 20 bytes
    assert _refusal(Tx, fields).message == "tx.payload: expected 1 items, got 2"
    fields[2] = int(TxKind.TRANSFER)
    fields[6] = [b"\x09" * 20, 0]
    refusal = _refusal(Tx, fields)
    assert (refusal.reason, refusal.message) == (
        Reason.ZERO_AMOUNT,
        "tx.payload.amount: a transfer moves at least 1 unit",
    )


def test_a_kind_nobody_declared_is_unknown_not_malformed() -> None:
    """A tx or event kind within a byte but not one this node knows gets UNKNOWN_KIND (a
    peer on a newer protocol); beyond a byte, the field is malformed."""
    fields = _transfer_tx_fields()
    fields[2] = 99
    refusal = _refusal(Tx, fields)
    assert (refusal.reason, refusal.message) == (Reason.UNKNOWN_KIND, "tx.kind: 99 is not a TxKind")
    fields[2] = 256
    assert _refusal(Tx, fields).reason is Reason.BAD_FIELD
    refusal = _refusal(Event, [19, []])  # between APP kinds and node kinds: no such event
    assert (refusal.reason, refusal.message) == (
        Reason.UNKNOWN_KIND,
        "event.kind: 19 is not a EventKind",
    )
    assert Event.from_fields([25, ["app", b"\x01" * 20, 2]]).kind is EventKind.ASSIGNED


def test_off_wire_fields_are_not_encoded_and_come_from_the_decoder() -> None:
    """A tx's raw bytes, id and sender address are derived, never encoded; a genesis's dev
    mnemonic is not part of what its hash commits to."""
    tx = Tx.create(KEY, "c", 0, 1_000, Transfer(b"\x09" * 20, 5))
    assert pack(tx.to_fields()) == tx.raw
    again = Tx.decode(tx.raw, 1 << 20)
    assert (again.raw, again.id, again.sender_address) == (tx.raw, tx.id, tx.sender_address)
    assert Tx.from_fields(unpack(tx.raw)).raw == b""  # no decoder told it: the default
    genesis = devnet_genesis()
    with_words = replace(genesis, insecure_dev_mnemonic="word " * 12)
    assert with_words.to_fields() == genesis.to_fields()
    assert with_words.hash() == genesis.hash()


class _Kind(IntEnum):
    ONE = 1
    TWO = 2


def test_a_declaration_that_cannot_be_decoded_is_refused() -> None:
    """ByKind needs an earlier enum field whose every member it maps; off-wire fields come
    after every wire field (a decoder passes them last)."""
    with pytest.raises(TypeError, match="ByKind"):

        @record("partial")
        @dataclass(frozen=True, slots=True)
        class Partial(Record):
            kind: _Kind
            body: Annotated[Any, ByKind("kind", {_Kind.ONE: Transfer})]

    with pytest.raises(TypeError, match="off-wire"):

        @record("early")
        @dataclass(frozen=True, slots=True)
        class Early(Record):
            cache: bytes = field(default=b"", metadata=OFF_WIRE)
            count: Uint64 = 0


def test_a_list_of_tuples_decodes_in_one_pass_and_names_a_bad_item() -> None:
    """A node's hosted (name, index) pairs are checked by one compiled loop; an item it
    does not accept is named by the per-item checks, the same verdict either way."""
    load = NodeLoad(
        b"\x01" * 20, b"\x02" * 20, Tier.NIMBUS, "DE", "EU", 8, 9, 10, 7, 8, 9, 1, 2, 3,
        (("app", 0), ("web", 2)), (31000,), b"\x03" * 32,
    )  # fmt: skip
    assert NodeLoad.from_fields(load.to_fields()) == load
    for hostile, message in (
        (["web", True], "load.hosted[1].index: expected an integer"),
        (["web"], "load.hosted[1]: expected 2 items, got 1"),
        ([b"web", 2], "load.hosted[1].name: expected a string"),
        ("web", "load.hosted[1]: expected an array"),
    ):
        fields = load.to_fields()
        fields[14][1] = hostile
        assert _refusal(NodeLoad, fields).message == message
        with pytest.raises(DecodeError, match=re.escape(message)):
            decode_field_by_field(NodeLoad, fields)
