"""Canonical encoding: one encoding per object, bounded, typed."""

from __future__ import annotations

import msgpack
import pytest

from fluxchain.core.encoding import as_bytes, as_int, as_list, as_str, pack, unpack
from fluxchain.core.errors import DecodeError, Reason


def test_round_trip() -> None:
    obj = [1, b"\x00\xff", "text", [2**63 - 1, []], -5]
    assert unpack(pack(obj)) == obj


@pytest.mark.parametrize(
    "raw",
    [
        b"\xce\x00\x00\x00\x05",  # 5 as uint32: valid msgpack, not the shortest form
        b"\xd9\x01a",  # "a" as str8 instead of fixstr
        b"\xdc\x00\x01\x01",  # [1] as array16
        b"\xc4\x01a\x00",  # trailing byte
    ],
)
def test_non_canonical_or_trailing_rejected(raw: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        unpack(raw)
    assert err.value.reason in (Reason.NON_CANONICAL, Reason.MALFORMED)


def test_str_where_bin_expected_is_not_canonical_bytes() -> None:
    raw = msgpack.packb(["a"], use_bin_type=False)  # old-style raw: decodes to str
    assert unpack(raw) == ["a"]
    with pytest.raises(DecodeError):
        as_bytes(unpack(raw)[0], "f")


def test_maps_floats_bools_rejected() -> None:
    with pytest.raises(DecodeError):
        unpack(msgpack.packb({"a": 1}))
    value = unpack(msgpack.packb(1.5))
    with pytest.raises(DecodeError, match="expected an integer"):
        as_int(value, "f")
    with pytest.raises(DecodeError, match="expected an integer"):
        as_int(unpack(msgpack.packb(True)), "f")


def test_bounds() -> None:
    with pytest.raises(DecodeError) as err:
        unpack(pack(b"x" * 100), max_bytes=50)
    assert err.value.reason is Reason.TOO_LARGE
    with pytest.raises(DecodeError):
        as_int(-1, "f")
    with pytest.raises(DecodeError):
        as_str("abc", "f", max_len=2)
    with pytest.raises(DecodeError):
        as_list([1, 2], "f", length=3)
    with pytest.raises(DecodeError):
        as_bytes(b"ab", "f", size=3)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    raw = b"\x91" * 100_000 + b"\x00"
    with pytest.raises(DecodeError):
        unpack(raw)


def test_invalid_utf8_is_malformed() -> None:
    with pytest.raises(DecodeError) as err:
        unpack(b"\xa2\xff\xfe")
    assert err.value.reason is Reason.MALFORMED
