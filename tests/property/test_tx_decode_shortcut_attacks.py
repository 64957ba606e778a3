"""Review rev10 (issue 24): Tx.decode's msgspec shortcut against the codec, field by field.

tests/property/test_codec.py mutates bytes (flips, cuts, wider ints); here each field of
a valid transfer is replaced by a value of another msgpack type (bool for int, float,
nil, str for bin and bin for str, an ext, a map, a nested array, a negative or a huge
int, a payload with a third item). A defence that holds: `Tx.decode` gives the codec's
verdict, reason and message, or the same Tx with the same id, for each of them.
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import DecodeError
from fluxchain.core.tx import Transfer, Tx

_TX = Tx.create(SigningKey(b"\x05" * 32), "flux-test", 7, 100, Transfer(b"\x02" * 20, 9))
_FIELDS: list[Any] = msgpack.unpackb(_TX.raw)

_foreign = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False),
    st.none(),
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
    st.lists(st.integers(0, 3), max_size=3),
    st.just([[[[[[1]]]]]]),
    st.just(2**63),
    st.just(0),
)


def _verdict(decode: Any, raw: bytes) -> Any:
    try:
        tx = decode(raw, 1 << 20)
    except DecodeError as exc:
        return (exc.reason, exc.message)
    return (tx, tx.raw, tx.id, tx.sender_address, tx.kind, type(tx.payload))


@seed(20261206)
@settings(max_examples=1500, deadline=None)
@given(
    st.integers(0, 9),  # 0-7: an envelope field; 8, 9: the payload's to, amount
    _foreign,
    st.sampled_from(["replace", "memo", "extra"]),
)
def test_a_field_of_another_type_gets_the_codecs_verdict_through_the_shortcut(
    index: int, value: Any, how: str
) -> None:
    fields: list[Any] = [list(f) if isinstance(f, list) else f for f in _FIELDS]
    if how == "memo":
        fields[6].append(value)  # a third payload item: a memo, or junk where one goes
    elif how == "extra":
        fields.append(value)  # a ninth envelope field
    elif index < 8:
        fields[index] = value
    else:
        fields[6][index - 8] = value
    raw = msgpack.packb(fields, use_bin_type=True)
    assert _verdict(Tx.decode, raw) == _verdict(Tx.decode_by_codec, raw)
