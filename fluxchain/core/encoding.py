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

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import (
    Annotated,
    Any,
    ClassVar,
    Final,
    Self,
    TypeVar,
    cast,
    get_origin,
    get_type_hints,
)

import msgpack

from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.frozen import quick_init

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


# pack(obj) -> bytes: encode `obj` (nested lists of int, bytes, str) canonically. The
# packer's own bound method, not a function around it: block import packs a few values a
# transaction, and a Python call in front of each cost more than the packing.
pack: Final[Callable[[Any], bytes]] = _PACKER.pack


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


# -- declarative records -----------------------------------------------------------------------
#
# A record is a frozen, slotted dataclass whose fields each say, in their annotation, how
# they are checked: `balance: Annotated[int, Int(hi=MAX_AMOUNT)]`. A field annotated with
# another record type is that record, nested; one annotated with an IntEnum is that enum.
# `@record("account")` reads the declaration once and gives the class `to_fields` and
# `from_fields`, compiled from it: the wire form is the array of the fields in declaration
# order, every bound is the declared one, and a failure names the field's path
# ("payload.hardware.cores: ..."). Rules that relate several fields, or that are not about
# shape, go in the record's `check_decoded` method, which runs after every decode.
#
# The compiled decoder first tries the whole record as well-formed in one expression (block
# import decodes thousands of txs and votes); anything it does not accept goes through the
# field-by-field checks, which are the rule and name the failing field. Both paths run the
# same checkers' bounds, so they accept exactly the same inputs.


class Check:
    """How one field is checked and encoded. Subclasses override what differs."""

    __slots__ = ()

    def decode(self, value: Any, where: str) -> Any:
        """The field's value from its wire form; raise DecodeError naming `where`."""
        raise NotImplementedError

    def encode(self, value: Any) -> Any:
        """The wire form of the field's value."""
        return value

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str] | None:
        """Source of (condition, value) for the compiled decoder: when `condition` holds
        for the wire value named `var`, `value` is what `decode` returns for it. None: the
        compiled decoder calls `decode` itself. Objects the source needs go in `ns`."""
        return None

    def decode_source(self, var: str, where: str, ns: dict[str, Any]) -> str:
        """Source of a call that decodes `var` with the path `where` (source too), for
        the compiled decoder of a field without a `fast` form."""
        return f"{_bind(ns, self.decode)}({var}, {where})"

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        """Source of the wire form of `expr` for the compiled encoder."""
        return f"{_bind(ns, self.encode)}({expr})"


def _bind(ns: dict[str, Any], obj: Any) -> str:
    """Put `obj` in the compiled source's namespace under a fresh name; return the name."""
    name = f"_o{len(ns)}"
    ns[name] = obj
    return name


class Int(Check):
    """An integer (not a bool) within [lo, hi]."""

    __slots__ = ("hi", "lo")

    def __init__(self, lo: int = 0, hi: int = MAX_AMOUNT) -> None:
        self.lo, self.hi = int(lo), int(hi)  # an IntEnum bound prints as its name

    def decode(self, value: Any, where: str) -> int:
        return as_int(value, where, self.lo, self.hi)

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str]:
        return f"type({var}) is int and {self.lo} <= {var} <= {self.hi}", var

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return expr


class Bytes(Check):
    """A byte string of exactly `size` bytes (or empty, with `or_empty`), or at most `max_len`."""

    __slots__ = ("max_len", "or_empty", "size")

    def __init__(self, size: int | None = None, *, max_len: int = MAX_BIN, or_empty: bool = False):
        if or_empty and size is None:
            raise TypeError("or_empty needs a size")
        self.size, self.max_len, self.or_empty = size, max_len, or_empty

    def decode(self, value: Any, where: str) -> bytes:
        if not self.or_empty:
            return as_bytes(value, where, size=self.size, max_len=self.max_len)
        data = as_bytes(value, where, max_len=self.max_len)
        if len(data) not in (0, self.size):
            raise DecodeError(Reason.BAD_FIELD, f"{where}: expected 0 or {self.size} bytes")
        return data

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str]:
        if self.size is None:
            size = f"len({var}) <= {self.max_len}"
        elif self.or_empty:
            size = f"len({var}) in (0, {self.size})"
        else:
            size = f"len({var}) == {self.size}"
        return f"type({var}) is bytes and {size}", var

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return expr


class Str(Check):
    """A text string of at most `max_len` characters."""

    __slots__ = ("max_len",)

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def decode(self, value: Any, where: str) -> str:
        return as_str(value, where, max_len=self.max_len)

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str]:
        return f"type({var}) is str and len({var}) <= {self.max_len}", var

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return expr


class ChainId(Check):
    """A chain id: text of at most MAX_CHAIN_ID_BYTES bytes of UTF-8."""

    __slots__ = ()

    def decode(self, value: Any, where: str) -> str:
        return as_chain_id(value, where)

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str]:
        return f"type({var}) is str and {_bind(ns, chain_id_fits)}({var})", var

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return expr


class Bool(Check):
    """A flag, on the wire as the integer 0 or 1."""

    __slots__ = ()

    def decode(self, value: Any, where: str) -> bool:
        return bool(as_int(value, where, hi=1))

    def encode(self, value: Any) -> int:
        return int(value)

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str]:
        return f"type({var}) is int and 0 <= {var} <= 1", f"{var} == 1"

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return f"int({expr})"


class Enum(Check):
    """A member of an IntEnum, on the wire as its value; the bounds are the enum's own.

    With `unknown`, the wire value is any byte and one that names no member fails with
    that reason: a kind field (tx, event) tells "a kind this node does not know" apart
    from a malformed field, so a peer on a newer protocol gets a clear refusal."""

    __slots__ = ("enum", "hi", "lo", "members", "unknown")

    def __init__(self, enum: type[IntEnum], *, unknown: Reason | None = None) -> None:
        self.enum = enum
        self.members: dict[int, IntEnum] = {int(m): m for m in enum}
        self.unknown = unknown
        if unknown is None:
            self.lo, self.hi = min(self.members), max(self.members)
        else:
            self.lo, self.hi = 0, 255

    def decode(self, value: Any, where: str) -> IntEnum:
        value = as_int(value, where, self.lo, self.hi)
        if value not in self.members:
            reason = self.unknown or Reason.BAD_FIELD
            raise DecodeError(reason, f"{where}: {value} is not a {self.enum.__name__}")
        return self.members[value]

    def encode(self, value: Any) -> int:
        return int(value)

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str]:
        members = _bind(ns, self.members)
        return f"type({var}) is int and {var} in {members}", f"{members}[{var}]"

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return f"int({expr})"


class Opaque(Check):
    """Any value `unpack` returns, kept as it is: fields whose shape another rule gives
    (an event's fields, named per kind by EVENT_FIELDS); `unpack` has bounded them."""

    __slots__ = ()

    def decode(self, value: Any, where: str) -> Any:
        return value

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str]:
        return "True", var

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return expr


class ByKind(Check):
    """A record whose type an earlier field of the same record names: a tx's payload,
    by the tx's kind. `kind_field` is that field (an `Enum` checker); `table` maps each
    of its members to the record type, and must cover all of them."""

    __slots__ = ("kind_field", "table")

    def __init__(self, kind_field: str, table: dict[int, type[Any]]) -> None:
        self.kind_field = kind_field
        self.table = {int(kind): checker_of(cls) for kind, cls in table.items()}

    def decode(self, value: Any, where: str) -> Any:
        raise TypeError("ByKind decodes with its kind: decode_kinded")

    def decode_kinded(self, value: Any, where: str, kind: int) -> Any:
        """Decode `value` as the record `kind` names."""
        return self.table[kind].decode(value, where)

    def encode(self, value: Any) -> Any:
        return value.to_fields()

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return f"{expr}.to_fields()"


class Checked(Check):
    """`inner`, and then `predicate` must hold, or the field fails with `reason`/`message`."""

    __slots__ = ("inner", "message", "predicate", "reason")

    def __init__(
        self, inner: Check, predicate: Callable[[Any], bool], reason: Reason, message: str
    ) -> None:
        self.inner, self.predicate, self.reason, self.message = inner, predicate, reason, message

    def decode(self, value: Any, where: str) -> Any:
        value = self.inner.decode(value, where)
        if not self.predicate(value):
            raise DecodeError(self.reason, f"{where}: {self.message}")
        return value

    def encode(self, value: Any) -> Any:
        return self.inner.encode(value)

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str] | None:
        inner = self.inner.fast(var, ns)
        if inner is None:
            return None
        condition, value = inner
        return f"{condition} and {_bind(ns, self.predicate)}({value})", value

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return self.inner.encode_source(expr, ns)


class Nested(Check):
    """A record inside a record: its own array, its paths under the field's."""

    __slots__ = ("cls", "decoder")

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        takes_path = len(inspect.signature(cls.from_fields).parameters) > 1
        if isinstance(cls.__dict__.get("CODEC"), RecordCodec) or takes_path:
            self.decoder: Callable[[Any, str], Any] = cls.from_fields
        else:
            # A record with a hand-written codec that names its own paths (the app spec,
            # until core/appspec declares its records).
            self.decoder = _without_path(cls.from_fields)

    def decode(self, value: Any, where: str) -> Any:
        return self.decoder(value, where)

    def decode_source(self, var: str, where: str, ns: dict[str, Any]) -> str:
        return f"{_bind(ns, self.decoder)}({var}, {where})"

    def encode(self, value: Any) -> Any:
        return value.to_fields()

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        return f"{expr}.to_fields()"


def _without_path(decode: Callable[[Any], Any]) -> Callable[[Any, str], Any]:
    def decode_at(value: Any, where: str) -> Any:
        return decode(value)

    return decode_at


class Maybe(Check):
    """`inner`, or None; None is the empty array on the wire."""

    __slots__ = ("inner",)

    def __init__(self, inner: Check | type[Any]) -> None:
        self.inner = checker_of(inner)

    def decode(self, value: Any, where: str) -> Any:
        if type(value) is list and not value:
            return None
        return self.inner.decode(value, where)

    def encode(self, value: Any) -> Any:
        return [] if value is None else self.inner.encode(value)


class ListOf(Check):
    """A tuple of at most `max_len` items, each checked by `item`; an array on the wire.

    An item's path is the list's with its index: "commit.signatures[3].validator"."""

    __slots__ = ("_all_plain", "_decode_all", "_encode_all", "_plain", "item", "max_len")

    def __init__(self, item: Check | type[Any], *, max_len: int) -> None:
        self.item = checker_of(item)
        self.max_len = max_len
        # Items that decode to themselves (bytes, ints) are checked by one compiled loop
        # and the list kept as it is: a ring or a commit of many items costs one pass.
        # Other items with a fast form (tuples of such) are decoded by one compiled loop
        # that gives up on the first item it does not accept; the per-item checks, which
        # name the failing item, are the rule.
        ns: dict[str, Any] = {}
        fast = self.item.fast("v", ns)
        self._plain = fast is not None and fast[1] == "v"
        self._all_plain: Callable[[list[Any]], bool] | None = None
        self._decode_all: Callable[[list[Any]], tuple[Any, ...] | None] | None = None
        if self._plain and fast is not None:
            source = f"def all_plain(items):\n    for v in items:\n        if not ({fast[0]}):\n"
            source += "            return False\n    return True\n"
            exec(source, ns)  # the source is built from the checkers' own templates
            self._all_plain = ns["all_plain"]
        elif fast is not None:
            source = (
                "def decode_all(items):\n    out = []\n    for v in items:\n"
                f"        if not ({fast[0]}):\n            return None\n"
                f"        out.append({fast[1]})\n    return tuple(out)\n"
            )
            exec(source, ns)  # the source is built from the checkers' own templates
            self._decode_all = ns["decode_all"]
        encoded = self.item.encode_source("v", ns)
        self._plain = self._plain and encoded == "v"
        exec(f"def encode_all(value):\n    return [{encoded} for v in value]\n", ns)
        self._encode_all: Callable[[Any], list[Any]] = ns["encode_all"]

    def decode(self, value: Any, where: str) -> tuple[Any, ...]:
        items = as_list(value, where, max_len=self.max_len)
        if self._all_plain is not None and self._all_plain(items):
            return tuple(items)
        if self._decode_all is not None:
            decoded = self._decode_all(items)
            if decoded is not None:
                return decoded
        item = self.item
        return tuple(item.decode(v, f"{where}[{i}]") for i, v in enumerate(items))

    def encode(self, value: Any) -> list[Any]:
        if self._plain:
            return list(value)
        return self._encode_all(value)

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        if self._plain:
            return f"list({expr})"
        return f"{_bind(ns, self._encode_all)}({expr})"


class Tuple(Check):
    """A fixed tuple of named parts, an array on the wire: Tuple(validator=..., signature=...)."""

    __slots__ = ("parts",)

    def __init__(self, **parts: Check | type[Any]) -> None:
        self.parts = [(name, checker_of(part)) for name, part in parts.items()]

    def fast(self, var: str, ns: dict[str, Any]) -> tuple[str, str] | None:
        conditions, values = [f"type({var}) is list", f"len({var}) == {len(self.parts)}"], []
        for index, (_, part) in enumerate(self.parts):
            fast = part.fast(f"{var}[{index}]", ns)
            if fast is None:
                return None
            conditions.append(f"({fast[0]})")
            values.append(fast[1])
        return " and ".join(conditions), f"({', '.join(values)},)"

    def encode_source(self, expr: str, ns: dict[str, Any]) -> str:
        items = (part.encode_source(f"{expr}[{i}]", ns) for i, (_, part) in enumerate(self.parts))
        return f"[{', '.join(items)}]"

    def decode(self, value: Any, where: str) -> tuple[Any, ...]:
        items = as_list(value, where, length=len(self.parts))
        return tuple(
            part.decode(v, f"{where}.{name}")
            for (name, part), v in zip(self.parts, items, strict=True)
        )

    def encode(self, value: Any) -> list[Any]:
        return [part.encode(v) for (_, part), v in zip(self.parts, value, strict=True)]


def checker_of(spec: Any) -> Check:
    """The checker a field's annotation declares: an `Annotated[T, Check]`, a record type
    (nested), or an IntEnum."""
    if isinstance(spec, Check):
        return spec
    if get_origin(spec) is Annotated:
        checks = [m for m in spec.__metadata__ if isinstance(m, Check)]
        if len(checks) != 1:
            raise TypeError(f"{spec}: declare exactly one checker")
        return checks[0]
    if isinstance(spec, type) and issubclass(spec, IntEnum):
        return Enum(spec)
    if isinstance(spec, type) and hasattr(spec, "from_fields") and hasattr(spec, "to_fields"):
        return Nested(spec)
    raise TypeError(f"{spec!r} declares no checker")


class Record:
    """Base of declared records: what `@record` gives every one, for the type checker."""

    __slots__ = ()
    CODEC: ClassVar[RecordCodec]

    def to_fields(self) -> list[Any]:
        """The record's wire form: its fields' in declaration order."""
        raise NotImplementedError  # replaced by @record

    @classmethod
    def from_fields(cls, fields: Any, where: str | None = None, *off_wire: Any) -> Self:
        """Decode the wire form; raise DecodeError naming the field (paths start at
        `where`, by default the record's name). `off_wire`: the values of the record's
        off-wire fields, if any (else their defaults)."""
        raise NotImplementedError  # replaced by @record

    def check_decoded(self, where: str) -> None:
        """Rules beyond each field's shape, run after every decode (none by default)."""


@dataclass(frozen=True, slots=True)
class RecordCodec:
    """What `@record` read from a declaration: the record's name, its wire version (a
    constant first item, if any), its fields with their checkers, and the names of the
    fields kept off the wire (derived by whoever decodes, e.g. a tx's id from its bytes)."""

    name: str
    version: int | None
    fields: tuple[tuple[str, Check], ...]
    off_wire: tuple[str, ...] = ()
    # The last wire field is an optional tail (OPTIONAL_TAIL): this holds its default.
    tail: tuple[Any, ...] = ()


# `field(metadata=OFF_WIRE, ...)`: a field of a record that is not part of its wire form.
# Such fields come after every wire field, each with a default; a decoder passes their
# values after the path (`from_fields(f, where, raw, id)`), or they keep their defaults.
OFF_WIRE: Final = {"off_wire": True}

# `field(default=..., metadata=OPTIONAL_TAIL)`: a record's last wire field, added to the
# protocol after the record was (a transfer's memo). It is on the wire only when it holds
# something else than its default, so that every record without it keeps its old bytes
# (and signatures); written with its default, it is not canonical and refused. Its
# checker must encode values as they are (bytes, int, str).
OPTIONAL_TAIL: Final = {"optional_tail": True}

_R = TypeVar("_R", bound=type[Record])
_Rec = TypeVar("_Rec", bound=Record)

# The field types most records share.
Amount = Annotated[int, Int(0, MAX_AMOUNT)]  # base units; sums of two stay in range
Uint64 = Annotated[int, Int(0, U64)]  # heights, epochs, nonces, counters


def record(name: str, *, version: int | None = None) -> Callable[[_R], _R]:
    """Declare a frozen, slotted dataclass as a record named `name` (the root of its error
    paths). With `version`, the wire form starts with that constant, and a decoder refuses
    any other (UNKNOWN_VERSION). The class gets `quick_init`'s constructor unless it has a
    `__post_init__`: decoding builds records by the thousand."""

    def declare(cls: _R) -> _R:
        hints = get_type_hints(cls, include_extras=True)
        declared = dataclasses.fields(cast(Any, cls))
        off_wire = tuple(f.name for f in declared if f.metadata.get("off_wire"))
        wire = [f for f in declared if not f.metadata.get("off_wire")]
        off = declared[len(wire) :]
        if tuple(f.name for f in off) != off_wire:
            raise TypeError(f"{cls.__name__}: off-wire fields come after every wire field")
        if any(f.default is dataclasses.MISSING for f in off):
            raise TypeError(f"{cls.__name__}: an off-wire field needs a default")
        fields = tuple((f.name, checker_of(hints[f.name])) for f in wire)
        _check_kinds(cls.__name__, fields)
        codec = RecordCodec(name, version, fields, off_wire, _tail_of(cls.__name__, wire, fields))
        if "__post_init__" not in cls.__dict__:
            quick_init(cls)
        type.__setattr__(cls, "CODEC", codec)
        type.__setattr__(cls, "to_fields", _compile_encoder(cls, codec))
        type.__setattr__(cls, "from_fields", staticmethod(_compile_decoder(cls, codec)))
        return cls

    return declare


def _tail_of(
    name: str, wire: list[dataclasses.Field[Any]], fields: tuple[tuple[str, Check], ...]
) -> tuple[Any, ...]:
    """(default,) if the record's last wire field is an optional tail, else ()."""
    tails = [i for i, f in enumerate(wire) if f.metadata.get("optional_tail")]
    if not tails:
        return ()
    last = wire[-1]
    if tails != [len(wire) - 1] or last.default is dataclasses.MISSING:
        raise TypeError(f"{name}: an optional tail is the last wire field, with a default")
    if fields[-1][1].encode_source("x", {}) != "x":
        raise TypeError(f"{name}.{last.name}: an optional tail must encode values as they are")
    return (last.default,)


def _with_tail(codec: RecordCodec, value: Any, where: str) -> Any:
    """A record's wire list with its optional tail filled in (its default when absent);
    refuse the tail written with its default (NON_CANONICAL). Anything else unchanged."""
    if type(value) is not list:
        return value
    count = len(codec.fields) + (codec.version is not None)
    if len(value) == count - 1:
        return [*value, codec.tail[0]]
    if len(value) == count and value[-1] == codec.tail[0]:
        raise DecodeError(
            Reason.NON_CANONICAL, f"{where}.{codec.fields[-1][0]}: its default is left off"
        )
    return value


def _check_kinds(name: str, fields: tuple[tuple[str, Check], ...]) -> None:
    """A `ByKind` field names an earlier `Enum` field, and covers every member of it."""
    earlier: dict[str, Check] = {}
    for field_name, check in fields:
        if isinstance(check, ByKind):
            kind = earlier.get(check.kind_field)
            if not isinstance(kind, Enum) or set(check.table) != set(kind.members):
                raise TypeError(
                    f"{name}.{field_name}: ByKind needs an earlier Enum field it covers"
                )
        earlier[field_name] = check


def _compile_encoder(cls: type[Record], codec: RecordCodec) -> Callable[[Any], list[Any]]:
    ns: dict[str, Any] = {}
    items = [] if codec.version is None else [str(codec.version)]
    items += [check.encode_source(f"self.{name}", ns) for name, check in codec.fields]
    source = f"def to_fields(self):\n    return [{', '.join(items)}]\n"
    if codec.tail:  # left off while it holds its default
        ns["_tail_default"] = codec.tail[0]
        last = f"self.{codec.fields[-1][0]}"
        source = (
            f"def to_fields(self):\n    f = [{', '.join(items[:-1])}]\n"
            f"    if {last} != _tail_default:\n        f.append({last})\n    return f\n"
        )
    exec(source, ns)  # the source is built from field names and the checkers' templates
    encoder: Callable[[Any], list[Any]] = ns["to_fields"]
    encoder.__qualname__ = f"{cls.__qualname__}.to_fields"
    encoder.__doc__ = Record.to_fields.__doc__
    return encoder


def _compile_decoder(cls: type[Record], codec: RecordCodec) -> Callable[..., Any]:
    ns: dict[str, Any] = {"_cls": cls, "_slow": partial(_decode_slowly, cls, codec)}
    variables = [f"v{i}" for i in range(len(codec.fields))]
    names = variables if codec.version is None else ["version", *variables]
    by_name = {name: var for (name, _), var in zip(codec.fields, variables, strict=True)}
    conditions: list[str] = []
    values: list[str] = []
    if codec.version is not None:
        conditions.append(f"type(version) is int and version == {codec.version}")
    for (name, check), var in zip(codec.fields, variables, strict=True):
        where = f"where + {'.' + name!r}"
        if isinstance(check, ByKind):
            # The kind field's condition (an Enum member) holds here: the table covers it.
            table = {kind: _decoder_of(c) for kind, c in check.table.items()}
            decoders = _bind(ns, table)
            values.append(f"{decoders}[{by_name[check.kind_field]}]({var}, {where})")
            continue
        fast = check.fast(var, ns)
        if fast is None:
            values.append(check.decode_source(var, where, ns))
        else:
            conditions.append(fast[0])
            values.append(fast[1])
    post = "check_decoded" in cls.__dict__
    # Off-wire fields are parameters after the path, defaulting to the fields' defaults.
    defaults = {f.name: f.default for f in dataclasses.fields(cast(Any, cls))}
    off_wire = [f"_off_{name}" for name in codec.off_wire]
    for name, param in zip(codec.off_wire, off_wire, strict=True):
        ns[f"{param}_default"] = defaults[name]
    params = ", ".join(["f", f"where={codec.name!r}", *(f"{p}={p}_default" for p in off_wire)])
    passed = ", ".join(["f", "where", *off_wire])
    ns["_with_tail"] = partial(_with_tail, codec)
    wire = "g" if codec.tail else "f"  # g: the wire list with its optional tail filled in
    # The commonest form of a record with an optional tail is without it: filled in here
    # as `_with_tail` does, without the call.
    ns["_tail_default"] = codec.tail[0] if codec.tail else None
    without_tail = len(names) - 1
    lines = [
        f"def from_fields({params}):",
        (
            f"    g = [*f, _tail_default] if type(f) is list and len(f) == {without_tail}"
            " else _with_tail(f, where)"
        )
        if codec.tail
        else "",
        f"    if type({wire}) is list and len({wire}) == {len(names)}:",
        f"        {', '.join(names)}{',' if len(names) == 1 else ''} = {wire}" if names else "",
        f"        if {' and '.join(f'({c})' for c in conditions) or 'True'}:",
        f"            record = _cls({', '.join([*values, *off_wire])})",
        "            record.check_decoded(where)" if post else "",
        "            return record",
        f"    return _slow({passed})",
    ]
    exec("\n".join(lines) + "\n", ns)  # built from field names and the checkers' templates
    decoder: Callable[..., Any] = ns["from_fields"]
    decoder.__qualname__ = f"{cls.__qualname__}.from_fields"
    decoder.__doc__ = Record.from_fields.__doc__
    return decoder


def _decoder_of(check: Check) -> Callable[[Any, str], Any]:
    """The callable that decodes a value at a path for `check`: a nested record's own
    `from_fields` (one call less on the hot path), else the checker's `decode`."""
    return check.decoder if isinstance(check, Nested) else check.decode


def decode_field_by_field(cls: type[_Rec], value: Any, where: str | None = None) -> _Rec:
    """Decode a record field by field, naming the first that fails: the rule that its
    compiled `from_fields` shortcuts (tests hold the two equal)."""
    return cast(_Rec, _decode_slowly(cls, cls.CODEC, value, where or cls.CODEC.name))


def _decode_slowly(
    cls: type[Record], codec: RecordCodec, value: Any, where: str, *extra: Any
) -> Any:
    """Field by field, naming the first that fails."""
    count = len(codec.fields) + (codec.version is not None)
    if codec.tail:
        value = _with_tail(codec, value, where)
    items = as_list(value, where, length=count)
    if codec.version is not None:
        version = as_int(items[0], f"{where}.version", hi=255)
        if version != codec.version:
            raise DecodeError(Reason.UNKNOWN_VERSION, f"{where}.version {version} is not supported")
        items = items[1:]
    decoded: dict[str, Any] = {}
    for (name, check), item in zip(codec.fields, items, strict=True):
        if isinstance(check, ByKind):
            kind = decoded[check.kind_field]
            decoded[name] = check.decode_kinded(item, f"{where}.{name}", kind)
        else:
            decoded[name] = check.decode(item, f"{where}.{name}")
    out = cls(*decoded.values(), *extra)
    out.check_decoded(where)
    return out
