"""What is wrong with a spec, said so a user can fix it: problem codes with a field path,
and the names of invisible and typographic characters (`U+201C LEFT DOUBLE QUOTATION MARK
at position 7`) that make a field look right and still fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from fluxchain.core.appspec.limits import (
    DOMAIN_LABEL,
    MAX_APP_NAME,
    MAX_DOMAIN,
    MAX_DOMAIN_LABEL,
    NAME,
)
from fluxchain.core.errors import DecodeError, Reason

# Characters that are never what the user meant in a machine-read field. The table is ours
# (not `unicodedata`), so the verdict cannot change with the Python build's Unicode version.
_TYPOGRAPHIC: Final[dict[int, str]] = {
    0x00AB: "LEFT-POINTING DOUBLE ANGLE QUOTATION MARK",
    0x00BB: "RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK",
    0x2010: "HYPHEN",
    0x2011: "NON-BREAKING HYPHEN",
    0x2012: "FIGURE DASH",
    0x2013: "EN DASH",
    0x2014: "EM DASH",
    0x2015: "HORIZONTAL BAR",
    0x2018: "LEFT SINGLE QUOTATION MARK",
    0x2019: "RIGHT SINGLE QUOTATION MARK",
    0x201A: "SINGLE LOW-9 QUOTATION MARK",
    0x201B: "SINGLE HIGH-REVERSED-9 QUOTATION MARK",
    0x201C: "LEFT DOUBLE QUOTATION MARK",
    0x201D: "RIGHT DOUBLE QUOTATION MARK",
    0x201E: "DOUBLE LOW-9 QUOTATION MARK",
    0x201F: "DOUBLE HIGH-REVERSED-9 QUOTATION MARK",
    0x2032: "PRIME",
    0x2033: "DOUBLE PRIME",
    0x2039: "SINGLE LEFT-POINTING ANGLE QUOTATION MARK",
    0x203A: "SINGLE RIGHT-POINTING ANGLE QUOTATION MARK",
    0x2212: "MINUS SIGN",
    0xFF02: "FULLWIDTH QUOTATION MARK",
    0xFF07: "FULLWIDTH APOSTROPHE",
}
_INVISIBLE_NAMES: Final[dict[int, str]] = {
    0x0009: "CHARACTER TABULATION",
    0x000A: "LINE FEED",
    0x000D: "CARRIAGE RETURN",
    0x007F: "DELETE",
    0x00A0: "NO-BREAK SPACE",
    0x00AD: "SOFT HYPHEN",
    0x034F: "COMBINING GRAPHEME JOINER",
    0x061C: "ARABIC LETTER MARK",
    0x115F: "HANGUL CHOSEONG FILLER",
    0x1160: "HANGUL JUNGSEONG FILLER",
    0x180E: "MONGOLIAN VOWEL SEPARATOR",
    0x200B: "ZERO WIDTH SPACE",
    0x200C: "ZERO WIDTH NON-JOINER",
    0x200D: "ZERO WIDTH JOINER",
    0x200E: "LEFT-TO-RIGHT MARK",
    0x200F: "RIGHT-TO-LEFT MARK",
    0x2028: "LINE SEPARATOR",
    0x2029: "PARAGRAPH SEPARATOR",
    0x202F: "NARROW NO-BREAK SPACE",
    0x205F: "MEDIUM MATHEMATICAL SPACE",
    0x2060: "WORD JOINER",
    0x3000: "IDEOGRAPHIC SPACE",
    0x3164: "HANGUL FILLER",
    0xFEFF: "ZERO WIDTH NO-BREAK SPACE (BYTE ORDER MARK)",
    0xFFA0: "HALFWIDTH HANGUL FILLER",
}
# Ranges of invisible / control / format code points (inclusive), checked in order.
_INVISIBLE_RANGES: Final[tuple[tuple[int, int, str], ...]] = (
    (0x0000, 0x001F, "control character"),
    (0x007F, 0x009F, "control character"),
    (0x2000, 0x200A, "space"),
    (0x200B, 0x200F, "format character"),
    (0x2028, 0x202F, "format character"),
    (0x205F, 0x206F, "format character"),
    (0xD800, 0xDFFF, "surrogate"),
    (0xFE00, 0xFE0F, "variation selector"),
    (0xFFF0, 0xFFFF, "special"),
    (0xE0000, 0xE0FFF, "tag or variation selector"),
    (0xF0000, 0x10FFFF, "private use"),
    (0xE000, 0xF8FF, "private use"),
)


class Problem(StrEnum):
    """What is wrong with one field of a spec (the tx is rejected as invalid_spec)."""

    MISSING = "missing"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_FIELD = "unknown_field"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    TOO_MANY = "too_many"
    TOO_FEW = "too_few"
    OUT_OF_RANGE = "out_of_range"
    BAD_FORMAT = "bad_format"
    DUPLICATE = "duplicate"
    MISMATCH = "mismatch"
    INVISIBLE_CHARACTER = "invisible_character"
    TYPOGRAPHIC_CHARACTER = "typographic_character"
    BAD_ADDRESS = "bad_address"


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One problem: where (a field path), what (a code), and a sentence for humans."""

    path: str
    code: Problem
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.code}]"


class SpecError(DecodeError):
    """A spec with problems; `problems` lists every one of them."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        super().__init__(Reason.INVALID_SPEC, "; ".join(str(p) for p in problems))
        self.problems = problems


# -- names ------------------------------------------------------------------------------------


def check_app_name(name: str, where: str) -> None:
    """Raise DecodeError(invalid_spec) unless `name` is a valid app name."""
    message = app_name_problem(name)
    if message is not None:
        raise DecodeError(Reason.INVALID_SPEC, f"{where}: {message}")


def app_name_problem(name: str) -> str | None:
    """Why `name` is not a DNS-safe app name, or None if it is one."""
    if not name:
        return "is empty"
    if len(name) > MAX_APP_NAME:
        return f"is {len(name)} characters, at most {MAX_APP_NAME} are allowed"
    odd = describe_characters(name, allow_typographic=False)
    if odd:
        return odd
    if not NAME.fullmatch(name):
        if NAME.fullmatch(name.lower()):
            return f"{name!r} has capitals; names are lowercase ({name.lower()!r})"
        return (
            f"{name!r} is not DNS-safe: lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    if name[2:4] == "--":
        # RFC 5891 reserves `??--` for encoded labels: `xn--80ak6aa92e` shows in a browser
        # as Cyrillic letters that look like `apple`, a phishing copy under every gateway
        return f"{name!r}: '--' as its 3rd and 4th characters marks an encoded (IDN) label"
    return None


def domain_problem(domain: str) -> tuple[Problem, str] | None:
    """What is wrong with `domain` as a spec domain, or None if it is a valid one.

    Accepted: lowercase ASCII names of at least two labels (letters, digits, '-' inside a
    label), at most 253 characters, written without the trailing dot; internationalized
    names in their punycode form ("xn--..."), compared as written. Refused, each with the
    fix: capitals, a trailing dot, non-ASCII letters, wildcards, IP addresses, single
    labels, and loopback names (RFC 6761 `localhost`, under which devnet gateways serve).
    Invisible characters are reported apart (`char_problem`).
    """
    if not domain:
        return Problem.MISSING, "is empty"
    if len(domain) > MAX_DOMAIN:
        return Problem.TOO_LONG, f"is {len(domain)} characters, at most {MAX_DOMAIN} are allowed"
    message = _domain_text_problem(domain) or _domain_labels_problem(domain)
    return None if message is None else (Problem.BAD_FORMAT, message)


def _domain_text_problem(domain: str) -> str | None:
    # mistakes of the whole name, each with its fix
    if domain.endswith("."):
        return f"{domain!r} ends with a dot; write {domain.rstrip('.')!r}"
    if "*" in domain:
        return f"{domain!r}: wildcards are not supported; name each host"
    if not domain.isascii():
        return f"{domain!r} has non-ASCII letters; write the name in punycode ('xn--...')"
    if domain != domain.lower():
        return f"{domain!r} has capitals; domains are lowercase"
    if ":" in domain or "/" in domain:
        return f"{domain!r}: a domain is a host name only: no IP address, port or path"
    return None


def _domain_labels_problem(domain: str) -> str | None:
    # two labels at least, each a DNS label; not an IPv4 address nor a loopback name
    labels = domain.split(".")
    if len(labels) < 2:
        return f"{domain!r} is a single label, not a public domain name"
    for label in labels:
        if len(label) > MAX_DOMAIN_LABEL:
            return f"label {label[:20]!r}… is over {MAX_DOMAIN_LABEL} characters"
        if not DOMAIN_LABEL.fullmatch(label):
            return (
                f"{domain!r}: each label is letters, digits and '-', not starting or ending "
                "with '-' (and no empty label)"
            )
    if labels[-1].isdigit():
        return f"{domain!r} is an IP address, not a domain name"
    if labels[-1] == "localhost":
        return f"{domain!r} is a loopback name (RFC 6761), not a public one"
    return None


# -- characters -------------------------------------------------------------------------------


def _invisible_name(code: int) -> str | None:
    if code in _INVISIBLE_NAMES:
        return _INVISIBLE_NAMES[code]
    for lo, hi, kind in _INVISIBLE_RANGES:
        if lo <= code <= hi:
            return kind.upper()
    return None


def describe_characters(text: str, *, allow_typographic: bool, allow_newline: bool = False) -> str:
    """Name every invisible (and, unless allowed, typographic) character of `text`.

    Returns "" when there is none, else e.g. "contains U+201C LEFT DOUBLE QUOTATION MARK
    at position 7 (a smart quote pasted from a document? type a plain \" instead)".
    Positions count characters from 0.
    """
    if text.isascii() and (
        text.isprintable() or (allow_newline and text.replace("\n", "").isprintable())
    ):
        return ""  # the common case: plain printable ASCII has nothing to report
    found: list[str] = []
    hint = ""
    for position, char in enumerate(text):
        code = ord(char)
        if allow_newline and char == "\n":
            continue
        name = _invisible_name(code)
        if name is None and not allow_typographic and code in _TYPOGRAPHIC:
            name = _TYPOGRAPHIC[code]
            if "QUOTATION" in name or "APOSTROPHE" in name or "PRIME" in name:
                hint = " (pasted from a document? type a plain ' or \" instead)"
            else:
                hint = " (pasted from a document? type a plain - instead)"
        if name is not None:
            found.append(f"U+{code:04X} {name} at position {position}")
            if len(found) == 5:
                found.append("…")
                break
    if not found:
        return ""
    return "contains " + ", ".join(found) + hint


def char_problem(
    path: str, text: str, *, allow_typographic: bool, allow_newline: bool = False
) -> SpecProblem | None:
    """The problem of a field whose text has characters `describe_characters` names: an
    invisible one if any, else a typographic one; None if there is none."""
    message = describe_characters(
        text, allow_typographic=allow_typographic, allow_newline=allow_newline
    )
    if not message:
        return None
    has_invisible = any(
        _invisible_name(ord(c)) is not None and not (allow_newline and c == "\n") for c in text
    )
    code = Problem.INVISIBLE_CHARACTER if has_invisible else Problem.TYPOGRAPHIC_CHARACTER
    return SpecProblem(path, code, message)


def format_cpu(tenths: int) -> str:
    """4 -> "0.4", 20 -> "2", 15 -> "1.5"."""
    whole, tenth = divmod(tenths, 10)
    return f"{whole}.{tenth}" if tenth else str(whole)
