"""Canonical msgpack: the one encoding of every consensus object, on the wire and on disk.

Rules (docs/protocol.md has the full table):
- objects are positional arrays, never maps; amounts and counters are integers;
- byte strings are msgpack bin, human text is msgpack str (UTF-8);
- an encoding is valid only if re-encoding what it decodes to reproduces it byte for byte,
  so every object has exactly one encoding and therefore one hash (no malleability);
- every length is bounded before any allocation happens.

Typed objects (transactions, blocks, records) check the shape of what `unpack` returns
with the `as_*` helpers below; each failure names the field.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from fluxchain.core.errors import DecodeError, Reason

U64: Final = 2**64 - 1
# Amounts stay below 2**63 so that sums of two never leave msgpack's integer range.
MAX_AMOUNT: Final = 2**63 - 1

MAX_OBJECT_BYTES: Final = 8 * 1024 * 1024  # a full block plus its commit, with headroom
MAX_STR: Final = 64 * 1024
MAX_BIN: Final = 8 * 1024 * 1024  # a proposal carries a whole block as one byte string
MAX_ARRAY: Final = 100_000  # txs in the largest block the params allow, with headroom
# A chain id is bounded in bytes, not characters: signed digests carry its length in one
# byte (crypto.tag_prefix), and 64 characters of UTF-8 can take 256 bytes.
MAX_CHAIN_ID_BYTES: Final = 64

# One packer for every call: `packb` builds a new one each time, which costs as much as
# packing a small object. Packing lists of int/bytes/str never leaves C code, so calls
# from several threads cannot interleave; a failed call resets the packer.
_PACKER: Final = msgpack.Packer(use_bin_type=True, autoreset=True)


def pack(obj: Any) -> bytes:
    """Encode `obj` (nested lists of int, bytes, str) canonically."""
    return _PACKER.pack(obj)  # type: ignore[no-any-return]


def unpack(
    data: bytes,
    *,
    max_bytes: int = MAX_OBJECT_BYTES,
    max_str: int = MAX_STR,
    max_array: int = MAX_ARRAY,
) -> Any:
    """Decode canonical bytes; raise DecodeError unless re-encoding reproduces `data`.

    Callers that know their objects are small (p2p frames) pass tighter bounds.
    """
    if len(data) > max_bytes:
        raise DecodeError(Reason.TOO_LARGE, f"{len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_str,
            max_bin_len=MAX_BIN,
            max_array_len=max_array,
            max_map_len=0,
            max_ext_len=0,
        )
    # msgpack raises several exception families (ValueError, its own UnpackException,
    # TypeError, StackError); all of them mean "not a well-formed object" to us.
    except Exception as exc:
        raise DecodeError(Reason.MALFORMED, f"not valid msgpack: {exc}") from None
    if pack(obj) != data:
        raise DecodeError(Reason.NON_CANONICAL, "encoding is not canonical")
    return obj


def unpack_fields(data: bytes) -> Any:
    """Decode without the canonical check, within bounds msgpack derives from the length:
    for a reader after a few fields of bytes whose canonical form is checked elsewhere
    (a verifier process reading a tx's signature while the importer decodes the tx)."""
    try:
        return msgpack.unpackb(data, max_map_len=0, max_ext_len=0)
    except Exception as exc:
        raise DecodeError(Reason.MALFORMED, f"not valid msgpack: {exc}") from None


def as_int(value: Any, field: str, lo: int = 0, hi: int = MAX_AMOUNT) -> int:
    """Check `value` is an integer (not a bool) within [lo, hi]."""
    if type(value) is not int:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: expected an integer")
    if not lo <= value <= hi:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: {value} is outside [{lo}, {hi}]")
    return value


def as_bytes(value: Any, field: str, *, size: int | None = None, max_len: int = MAX_BIN) -> bytes:
    """Check `value` is a byte string of exactly `size` bytes, or at most `max_len`."""
    if type(value) is not bytes:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: expected bytes")
    if size is not None and len(value) != size:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: expected {size} bytes, got {len(value)}")
    if len(value) > max_len:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: longer than {max_len} bytes")
    return value


def as_str(value: Any, field: str, *, max_len: int) -> str:
    """Check `value` is a text string of at most `max_len` characters."""
    if type(value) is not str:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: expected a string")
    if len(value) > max_len:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: longer than {max_len} characters")
    return value


def chain_id_fits(chain_id: str) -> bool:
    """True if `chain_id` is at most MAX_CHAIN_ID_BYTES bytes of UTF-8."""
    if chain_id.isascii():  # one byte a character; decided without encoding
        return len(chain_id) <= MAX_CHAIN_ID_BYTES
    if len(chain_id) > MAX_CHAIN_ID_BYTES:
        return False
    try:
        return len(chain_id.encode()) <= MAX_CHAIN_ID_BYTES
    except UnicodeEncodeError:  # a lone surrogate: never the text of a valid id
        return False


def as_chain_id(value: Any, field: str) -> str:
    """Check `value` is a text string of at most MAX_CHAIN_ID_BYTES bytes of UTF-8."""
    if type(value) is not str:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: expected a string")
    if not chain_id_fits(value):
        raise DecodeError(Reason.BAD_FIELD, f"{field}: longer than {MAX_CHAIN_ID_BYTES} bytes")
    return value


def as_list(
    value: Any, field: str, *, length: int | None = None, max_len: int = MAX_ARRAY
) -> list[Any]:
    """Check `value` is an array with exactly `length` items, or at most `max_len`."""
    if type(value) is not list:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: expected an array")
    if length is not None and len(value) != length:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: expected {length} items, got {len(value)}")
    if len(value) > max_len:
        raise DecodeError(Reason.BAD_FIELD, f"{field}: more than {max_len} items")
    return value
