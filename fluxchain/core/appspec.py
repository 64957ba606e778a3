"""App specifications: the spec a customer signs, its two forms, and its one validation.

An app spec is shaped like Flux's v8 app specification, in our own snake_case:

    name, description, owner, contacts, components (each: name, description, image, ports,
    container_ports, environment, command, data_path, cpu, ram_mb, disk_gb), instances,
    expire, geolocation (allow/deny rules), min_tier, pinned_nodes

Two forms exist:

- the **canonical** form (`to_fields` / `from_fields`): positional msgpack arrays, integers
  only, inside APP_REGISTER / APP_UPDATE payloads and the app records of the state;
- the **JSON** form (`to_json` / `from_json`): what users write as YAML or JSON; cpu is
  written in cores with at most one decimal ("0.5"), the owner as a bech32 address.

`validate(spec, params)` reports every problem at once, each with a field path
(`components[0].environment[3]`), a problem code and a sentence; invisible and
typographic characters are named (`U+201C LEFT DOUBLE QUOTATION MARK at position 7`).
The state machine and the wallet call the same function, so a spec the wallet accepts is
a spec the chain accepts. Nothing here reads the state.

Units: cpu in tenths of a core, RAM in MB, disk in GB — integers everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Self

import bech32

from fluxchain.core.encoding import as_bytes, as_int, as_list, as_str
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.params import Params, Tier

# -- protocol bounds (fixed; the genesis-dependent ones are instances, expire, components) --

SPEC_VERSION: Final = 1
MAX_APP_NAME: Final = 63  # one DNS label (RFC 1035), so `<name>.app.<domain>` works
MAX_DESCRIPTION: Final = 256
MAX_CONTACTS: Final = 5
MAX_CONTACT: Final = 75
MAX_COMPONENTS_HARD: Final = 10  # decode bound; params.app_max_components may be lower
MAX_COMPONENT_NAME: Final = 63
MAX_IMAGE: Final = 200  # registry/repository:tag as Flux users write it
MAX_PORTS: Final = 5  # per component
MIN_HOST_PORT: Final = 31_000  # the range nodes open for apps; keeps node services out
MAX_HOST_PORT: Final = 39_999
MAX_CONTAINER_PORT: Final = 65_535
MAX_ENV: Final = 20  # entries per component
MAX_ENV_ENTRY: Final = 400
MAX_COMMAND: Final = 20  # arguments per component
MAX_COMMAND_ARG: Final = 400
MIN_DATA_PATH: Final = 2
MAX_DATA_PATH: Final = 200
MAX_GEO_RULES: Final = 10
MAX_PINNED: Final = 120
NODE_ID_SIZE: Final = 20  # same as tx.NODE_ID_SIZE (tx imports this module, not the reverse)
OWNER_SIZE: Final = 20
# Per instance, summed over components: what the largest tier can hold after its reserve.
MIN_COMPONENT_CPU: Final = 1  # 0.1 core
MAX_APP_CPU: Final = 150  # 15 cores
MIN_COMPONENT_RAM_MB: Final = 100
MAX_APP_RAM_MB: Final = 59_000
MIN_COMPONENT_DISK_GB: Final = 1
MAX_APP_DISK_GB: Final = 820
MAX_EXPIRE_HARD: Final = 2**32  # decode bound; params.app_max_expire is the real limit
MAX_INSTANCES_HARD: Final = 1_000  # decode bound; params.app_max_instances is the real limit

CONTINENTS: Final = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
TIER_NAMES: Final[dict[str, Tier]] = {t.name.lower(): t for t in Tier}

_NAME = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# [registry[:port]/]path[:tag][@sha256:digest], lowercase path components as Docker requires
_IMAGE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?"
)
_COUNTRY = re.compile(r"[A-Z]{2}")
_CPU = re.compile(r"([0-9]{1,4})(?:\.([0-9]))?")

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


# -- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Component:
    """One container of an app. Every instance of the app runs every component."""

    name: str
    description: str
    image: str
    ports: tuple[int, ...]  # published on the host, MIN_HOST_PORT..MAX_HOST_PORT
    container_ports: tuple[int, ...]  # same length: ports[i] forwards to container_ports[i]
    environment: tuple[str, ...]  # "KEY=value"
    command: tuple[str, ...]  # argv override; empty keeps the image's
    data_path: str  # persistent volume mount point inside the container
    cpu: int  # tenths of a core
    ram_mb: int
    disk_gb: int

    def to_fields(self) -> list[Any]:
        return [
            self.name,
            self.description,
            self.image,
            list(self.ports),
            list(self.container_ports),
            list(self.environment),
            list(self.command),
            self.data_path,
            self.cpu,
            self.ram_mb,
            self.disk_gb,
        ]

    @classmethod
    def from_fields(cls, f: Any, where: str) -> Self:
        (
            name,
            description,
            image,
            ports,
            container_ports,
            environment,
            command,
            data_path,
            cpu,
            ram_mb,
            disk_gb,
        ) = _shape(as_list, f, where, length=11)
        return cls(
            _shape(as_str, name, f"{where}.name", max_len=MAX_COMPONENT_NAME),
            _shape(as_str, description, f"{where}.description", max_len=MAX_DESCRIPTION),
            _shape(as_str, image, f"{where}.image", max_len=MAX_IMAGE),
            _ints(ports, f"{where}.ports", MAX_PORTS, MAX_CONTAINER_PORT),
            _ints(container_ports, f"{where}.container_ports", MAX_PORTS, MAX_CONTAINER_PORT),
            _strs(environment, f"{where}.environment", MAX_ENV, MAX_ENV_ENTRY),
            _strs(command, f"{where}.command", MAX_COMMAND, MAX_COMMAND_ARG),
            _shape(as_str, data_path, f"{where}.data_path", max_len=MAX_DATA_PATH),
            _shape(as_int, cpu, f"{where}.cpu", hi=MAX_APP_CPU),
            _shape(as_int, ram_mb, f"{where}.ram_mb", hi=MAX_APP_RAM_MB),
            _shape(as_int, disk_gb, f"{where}.disk_gb", hi=MAX_APP_DISK_GB),
        )


@dataclass(frozen=True, slots=True)
class GeoRule:
    """Allow or deny nodes of one continent, or of one country (`country` non-empty).

    JSON form: "EU" (a continent) or "EU_DE" (a country, qualified by its continent so that
    "NA" — North America — is never confused with Namibia).
    """

    allow: bool
    continent: str
    country: str  # "" for the whole continent

    def to_fields(self) -> list[Any]:
        return [int(self.allow), self.continent, self.country]

    @classmethod
    def from_fields(cls, f: Any, where: str) -> Self:
        allow, continent, country = _shape(as_list, f, where, length=3)
        return cls(
            bool(_shape(as_int, allow, f"{where}.allow", hi=1)),
            _shape(as_str, continent, f"{where}.continent", max_len=2),
            _shape(as_str, country, f"{where}.country", max_len=2),
        )

    def matches(self, continent: str, country: str) -> bool:
        """Whether a node at (continent, country) falls under this rule."""
        if self.country:
            return country == self.country
        return continent == self.continent

    @property
    def code(self) -> str:
        return f"{self.continent}_{self.country}" if self.country else self.continent


@dataclass(frozen=True, slots=True)
class AppSpec:
    """What a customer asks the network to run. `name` identifies the app for life."""

    name: str
    description: str
    owner: bytes  # 20-byte address; signs updates, receives refunds
    contacts: tuple[str, ...]
    components: tuple[Component, ...]
    instances: int
    expire: int  # blocks the app is paid for, counted from the tx's block
    geolocation: tuple[GeoRule, ...] = ()
    min_tier: Tier = Tier.CUMULUS
    pinned_nodes: tuple[bytes, ...] = ()  # when non-empty, only these nodes may host it
    version: int = field(default=SPEC_VERSION)

    # -- derived figures ---------------------------------------------------------------------

    @property
    def cpu(self) -> int:
        """Tenths of a core one instance needs (all components)."""
        return sum(c.cpu for c in self.components)

    @property
    def ram_mb(self) -> int:
        return sum(c.ram_mb for c in self.components)

    @property
    def disk_gb(self) -> int:
        return sum(c.disk_gb for c in self.components)

    @property
    def host_ports(self) -> tuple[int, ...]:
        """Every port one instance publishes on its node, sorted."""
        return tuple(sorted(p for c in self.components for p in c.ports))

    def location_allowed(self, continent: str, country: str) -> bool:
        """Allowed if no deny rule matches and, when allow rules exist, one of them matches."""
        allowed = True
        for rule in self.geolocation:
            if rule.allow:
                allowed = False
                break
        for rule in self.geolocation:
            if rule.matches(continent, country):
                if not rule.allow:
                    return False
                allowed = True
        return allowed

    # -- canonical form ----------------------------------------------------------------------

    def to_fields(self) -> list[Any]:
        return [
            self.version,
            self.name,
            self.description,
            self.owner,
            list(self.contacts),
            [c.to_fields() for c in self.components],
            self.instances,
            self.expire,
            [g.to_fields() for g in self.geolocation],
            int(self.min_tier),
            list(self.pinned_nodes),
        ]

    @classmethod
    def from_fields(cls, fields: Any) -> Self:
        """Decode the canonical form: shape and hard bounds only (see `validate`).

        Raises DecodeError(invalid_spec) naming the field.
        """
        (
            version,
            name,
            description,
            owner,
            contacts,
            components,
            instances,
            expire,
            geolocation,
            min_tier,
            pinned,
        ) = _shape(as_list, fields, "spec", length=11)
        if _shape(as_int, version, "spec.version", hi=255) != SPEC_VERSION:
            raise DecodeError(Reason.INVALID_SPEC, f"spec.version {version} is not supported")
        name = _shape(as_str, name, "spec.name", max_len=MAX_APP_NAME)
        check_app_name(name, "spec.name")
        return cls(
            name=name,
            description=_shape(as_str, description, "spec.description", max_len=MAX_DESCRIPTION),
            owner=_shape(as_bytes, owner, "spec.owner", size=OWNER_SIZE),
            contacts=_strs(contacts, "spec.contacts", MAX_CONTACTS, MAX_CONTACT),
            components=tuple(
                Component.from_fields(c, f"spec.components[{i}]")
                for i, c in enumerate(
                    _shape(as_list, components, "spec.components", max_len=MAX_COMPONENTS_HARD)
                )
            ),
            instances=_shape(as_int, instances, "spec.instances", hi=MAX_INSTANCES_HARD),
            expire=_shape(as_int, expire, "spec.expire", hi=MAX_EXPIRE_HARD),
            geolocation=tuple(
                GeoRule.from_fields(g, f"spec.geolocation[{i}]")
                for i, g in enumerate(
                    _shape(as_list, geolocation, "spec.geolocation", max_len=MAX_GEO_RULES)
                )
            ),
            min_tier=Tier(_shape(as_int, min_tier, "spec.min_tier", lo=1, hi=3)),
            pinned_nodes=tuple(
                _shape(as_bytes, n, f"spec.pinned_nodes[{i}]", size=NODE_ID_SIZE)
                for i, n in enumerate(
                    _shape(as_list, pinned, "spec.pinned_nodes", max_len=MAX_PINNED)
                )
            ),
        )

    # -- JSON form ---------------------------------------------------------------------------

    def to_json(self, hrp: str | None = None) -> dict[str, Any]:
        """The user-facing form; the owner as bech32 when `hrp` is given, else hex."""
        out: dict[str, Any] = {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "owner": _owner_text(self.owner, hrp),
            "contacts": list(self.contacts),
            "components": [
                {
                    "name": c.name,
                    "description": c.description,
                    "image": c.image,
                    "ports": list(c.ports),
                    "container_ports": list(c.container_ports),
                    "environment": list(c.environment),
                    "command": list(c.command),
                    "data_path": c.data_path,
                    "cpu": format_cpu(c.cpu),
                    "ram_mb": c.ram_mb,
                    "disk_gb": c.disk_gb,
                }
                for c in self.components
            ],
            "instances": self.instances,
            "expire": self.expire,
            "geolocation": {
                "allow": [g.code for g in self.geolocation if g.allow],
                "deny": [g.code for g in self.geolocation if not g.allow],
            },
            "min_tier": self.min_tier.name.lower(),
            "pinned_nodes": [n.hex() for n in self.pinned_nodes],
        }
        return out

    @classmethod
    def from_json(cls, obj: Any, hrp: str | None = None) -> Self:
        """Parse the user form; raise SpecError listing every structural problem.

        `hrp` is the network's address prefix; None accepts any (the wallet passes its own).
        Run `validate` on the result for the rules (limits, characters, consistency).
        """
        spec, problems = _parse_json(obj, hrp)
        if problems or spec is None:
            raise SpecError(problems)
        return cls(**{f: getattr(spec, f) for f in _SPEC_FIELDS})


_SPEC_FIELDS: Final = [
    "name",
    "description",
    "owner",
    "contacts",
    "components",
    "instances",
    "expire",
    "geolocation",
    "min_tier",
    "pinned_nodes",
    "version",
]


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
    if not _NAME.fullmatch(name):
        if _NAME.fullmatch(name.lower()):
            return f"{name!r} has capitals; names are lowercase ({name.lower()!r})"
        return (
            f"{name!r} is not DNS-safe: lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
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


def _char_problem(
    path: str, text: str, *, allow_typographic: bool, allow_newline: bool = False
) -> SpecProblem | None:
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


# -- validation -------------------------------------------------------------------------------


def validate(spec: AppSpec, params: Params) -> list[SpecProblem]:
    """Every problem of `spec` under `params`, in field order; [] means valid."""
    out: list[SpecProblem] = []

    def add(path: str, code: Problem, message: str) -> None:
        out.append(SpecProblem(path, code, message))

    # version: one format today
    if spec.version != SPEC_VERSION:
        add("version", Problem.OUT_OF_RANGE, f"version {spec.version} is not {SPEC_VERSION}")
    # name: one DNS label, the app's identity
    message = app_name_problem(spec.name)
    if message is not None:
        code = Problem.BAD_FORMAT
        if not spec.name:
            code = Problem.MISSING
        elif len(spec.name) > MAX_APP_NAME:
            code = Problem.TOO_LONG
        elif describe_characters(spec.name, allow_typographic=False):
            code = Problem.INVISIBLE_CHARACTER
        add("name", code, message)
    # description: human text; typographic quotes are fine here, invisible ones are not
    if len(spec.description) > MAX_DESCRIPTION:
        add("description", Problem.TOO_LONG, _too_long(spec.description, MAX_DESCRIPTION))
    _maybe(out, _char_problem("description", spec.description, allow_typographic=True))
    # owner: an address
    if len(spec.owner) != OWNER_SIZE:
        add("owner", Problem.BAD_ADDRESS, f"is {len(spec.owner)} bytes, not {OWNER_SIZE}")
    # contacts: at most five short strings
    if len(spec.contacts) > MAX_CONTACTS:
        add("contacts", Problem.TOO_MANY, f"{len(spec.contacts)} contacts, at most {MAX_CONTACTS}")
    for i, contact in enumerate(spec.contacts):
        path = f"contacts[{i}]"
        if not contact:
            add(path, Problem.MISSING, "is empty")
        if len(contact) > MAX_CONTACT:
            add(path, Problem.TOO_LONG, _too_long(contact, MAX_CONTACT))
        _maybe(out, _char_problem(path, contact, allow_typographic=False))
    # components: 1..app_max_components, unique names and host ports
    _validate_components(spec, params, add, out)
    # instances and expire: genesis params
    if not params.app_min_instances <= spec.instances <= params.app_max_instances:
        add(
            "instances",
            Problem.OUT_OF_RANGE,
            f"{spec.instances} is outside {params.app_min_instances}..{params.app_max_instances}",
        )
    if not params.app_min_expire <= spec.expire <= params.app_max_expire:
        add(
            "expire",
            Problem.OUT_OF_RANGE,
            f"{spec.expire} blocks is outside {params.app_min_expire}..{params.app_max_expire}",
        )
    # geolocation: continent codes or continent_country codes, no repeats, no contradiction
    if len(spec.geolocation) > MAX_GEO_RULES:
        add(
            "geolocation",
            Problem.TOO_MANY,
            f"{len(spec.geolocation)} rules, at most {MAX_GEO_RULES}",
        )
    seen_geo: dict[tuple[str, str], int] = {}
    for i, rule in enumerate(spec.geolocation):
        path = f"geolocation[{i}]"
        if rule.continent not in CONTINENTS:
            add(
                path,
                Problem.BAD_FORMAT,
                f"{rule.continent!r} is not a continent code ({', '.join(sorted(CONTINENTS))})",
            )
        if rule.country and not _COUNTRY.fullmatch(rule.country):
            add(path, Problem.BAD_FORMAT, f"{rule.country!r} is not a country code like 'DE'")
        key = (rule.continent, rule.country)
        if key in seen_geo:
            add(path, Problem.DUPLICATE, f"{rule.code} already appears at [{seen_geo[key]}]")
        else:
            seen_geo[key] = i
    # min_tier: one of the three tiers
    if int(spec.min_tier) not in {int(t) for t in Tier}:
        add("min_tier", Problem.OUT_OF_RANGE, f"{spec.min_tier} is not a tier")
    # pinned nodes: unique node ids, enough of them for every instance
    if len(spec.pinned_nodes) > MAX_PINNED:
        add("pinned_nodes", Problem.TOO_MANY, f"{len(spec.pinned_nodes)}, at most {MAX_PINNED}")
    seen_nodes: dict[bytes, int] = {}
    for i, node_id in enumerate(spec.pinned_nodes):
        path = f"pinned_nodes[{i}]"
        if len(node_id) != NODE_ID_SIZE:
            add(path, Problem.BAD_FORMAT, f"is {len(node_id)} bytes, not {NODE_ID_SIZE}")
        if node_id in seen_nodes:
            add(path, Problem.DUPLICATE, f"node already pinned at [{seen_nodes[node_id]}]")
        else:
            seen_nodes[node_id] = i
    if spec.pinned_nodes and len(seen_nodes) < spec.instances:
        add(
            "pinned_nodes",
            Problem.TOO_FEW,
            f"{len(seen_nodes)} distinct nodes pinned for {spec.instances} instances "
            "(one instance per node)",
        )
    return out


def _validate_components(spec: AppSpec, params: Params, add: Any, out: list[SpecProblem]) -> None:
    limit = min(params.app_max_components, MAX_COMPONENTS_HARD)
    if not spec.components:
        add("components", Problem.TOO_FEW, "an app needs at least one component")
    if len(spec.components) > limit:
        add("components", Problem.TOO_MANY, f"{len(spec.components)} components, at most {limit}")
    names: dict[str, int] = {}
    host_ports: dict[int, str] = {}
    for i, c in enumerate(spec.components):
        base = f"components[{i}]"
        # name: DNS-safe, unique within the app
        message = app_name_problem(c.name)
        if message is not None:
            add(f"{base}.name", Problem.MISSING if not c.name else Problem.BAD_FORMAT, message)
        elif c.name in names:
            add(
                f"{base}.name", Problem.DUPLICATE, f"{c.name!r} is also components[{names[c.name]}]"
            )
        else:
            names[c.name] = i
        if len(c.description) > MAX_DESCRIPTION:
            add(f"{base}.description", Problem.TOO_LONG, _too_long(c.description, MAX_DESCRIPTION))
        _maybe(out, _char_problem(f"{base}.description", c.description, allow_typographic=True))
        # image: a Docker reference
        path = f"{base}.image"
        problem = _char_problem(path, c.image, allow_typographic=False)
        if problem is not None:
            out.append(problem)
        elif not c.image:
            add(path, Problem.MISSING, "an image such as 'nginx:1.27' is required")
        elif len(c.image) > MAX_IMAGE:
            add(path, Problem.TOO_LONG, _too_long(c.image, MAX_IMAGE))
        elif not _IMAGE.fullmatch(c.image):
            add(path, Problem.BAD_FORMAT, f"{c.image!r} is not a Docker image reference")
        # ports: host ports in the app range, unique across the app; container ports match
        if len(c.ports) > MAX_PORTS:
            add(f"{base}.ports", Problem.TOO_MANY, f"{len(c.ports)} ports, at most {MAX_PORTS}")
        if len(c.container_ports) != len(c.ports):
            add(
                f"{base}.container_ports",
                Problem.MISMATCH,
                f"{len(c.container_ports)} container ports for {len(c.ports)} ports",
            )
        for j, port in enumerate(c.ports):
            path = f"{base}.ports[{j}]"
            if not MIN_HOST_PORT <= port <= MAX_HOST_PORT:
                add(
                    path,
                    Problem.OUT_OF_RANGE,
                    f"{port} is outside {MIN_HOST_PORT}..{MAX_HOST_PORT}",
                )
            elif port in host_ports:
                add(path, Problem.DUPLICATE, f"port {port} is also {host_ports[port]}")
            else:
                host_ports[port] = path
        for j, port in enumerate(c.container_ports):
            if not 1 <= port <= MAX_CONTAINER_PORT:
                add(
                    f"{base}.container_ports[{j}]",
                    Problem.OUT_OF_RANGE,
                    f"{port} is outside 1..{MAX_CONTAINER_PORT}",
                )
        # environment: KEY=value, unique keys, no invisible or typographic characters
        if len(c.environment) > MAX_ENV:
            add(
                f"{base}.environment",
                Problem.TOO_MANY,
                f"{len(c.environment)} entries, at most {MAX_ENV}",
            )
        keys: dict[str, int] = {}
        for j, entry in enumerate(c.environment):
            path = f"{base}.environment[{j}]"
            if len(entry) > MAX_ENV_ENTRY:
                add(path, Problem.TOO_LONG, _too_long(entry, MAX_ENV_ENTRY))
            problem = _char_problem(path, entry, allow_typographic=False)
            if problem is not None:
                out.append(problem)
            key, sep, _ = entry.partition("=")
            if not sep or not _ENV_KEY.fullmatch(key):
                add(path, Problem.BAD_FORMAT, f"{entry[:40]!r} is not KEY=value")
            elif key in keys:
                add(path, Problem.DUPLICATE, f"{key} is also set at environment[{keys[key]}]")
            else:
                keys[key] = j
        # command: argv strings
        if len(c.command) > MAX_COMMAND:
            add(
                f"{base}.command",
                Problem.TOO_MANY,
                f"{len(c.command)} arguments, at most {MAX_COMMAND}",
            )
        for j, arg in enumerate(c.command):
            path = f"{base}.command[{j}]"
            if len(arg) > MAX_COMMAND_ARG:
                add(path, Problem.TOO_LONG, _too_long(arg, MAX_COMMAND_ARG))
            _maybe(out, _char_problem(path, arg, allow_typographic=False, allow_newline=True))
        # data_path: an absolute path inside the container, not the root
        path = f"{base}.data_path"
        problem = _char_problem(path, c.data_path, allow_typographic=False)
        if problem is not None:
            out.append(problem)
        elif len(c.data_path) < MIN_DATA_PATH or not c.data_path.startswith("/"):
            add(path, Problem.BAD_FORMAT, f"{c.data_path!r} must be an absolute path, not '/'")
        elif len(c.data_path) > MAX_DATA_PATH:
            add(path, Problem.TOO_LONG, _too_long(c.data_path, MAX_DATA_PATH))
        elif ".." in c.data_path.split("/"):
            add(path, Problem.BAD_FORMAT, f"{c.data_path!r} must not contain '..'")
        # resources: each component asks for something
        if c.cpu < MIN_COMPONENT_CPU:
            add(f"{base}.cpu", Problem.OUT_OF_RANGE, "at least 0.1 core")
        if c.ram_mb < MIN_COMPONENT_RAM_MB:
            add(f"{base}.ram_mb", Problem.OUT_OF_RANGE, f"at least {MIN_COMPONENT_RAM_MB} MB")
        if c.disk_gb < MIN_COMPONENT_DISK_GB:
            add(f"{base}.disk_gb", Problem.OUT_OF_RANGE, f"at least {MIN_COMPONENT_DISK_GB} GB")
    # totals per instance: what one node of the largest tier can hold
    if spec.cpu > MAX_APP_CPU:
        add(
            "components",
            Problem.OUT_OF_RANGE,
            f"cpu totals {format_cpu(spec.cpu)} cores, at most {format_cpu(MAX_APP_CPU)}",
        )
    if spec.ram_mb > MAX_APP_RAM_MB:
        add(
            "components",
            Problem.OUT_OF_RANGE,
            f"RAM totals {spec.ram_mb} MB, at most {MAX_APP_RAM_MB}",
        )
    if spec.disk_gb > MAX_APP_DISK_GB:
        add(
            "components",
            Problem.OUT_OF_RANGE,
            f"disk totals {spec.disk_gb} GB, at most {MAX_APP_DISK_GB}",
        )


def check_spec(spec: AppSpec, params: Params) -> None:
    """Raise SpecError (a DecodeError with reason invalid_spec) listing every problem."""
    problems = validate(spec, params)
    if problems:
        raise SpecError(problems)


def validate_json(obj: Any, params: Params, hrp: str | None = None) -> list[SpecProblem]:
    """Every problem of a user-written spec: structure first, then the rules.

    Rule problems under a field that already has a structural problem are left out, so each
    mistake is reported once.
    """
    spec, problems = _parse_json(obj, hrp)
    if spec is None:
        return problems
    broken = [p.path for p in problems]
    for problem in validate(spec, params):
        if not any(_under(problem.path, b) for b in broken):
            problems.append(problem)
    return problems


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _too_long(text: str, limit: int) -> str:
    return f"is {len(text)} characters, at most {limit} are allowed"


def _maybe(out: list[SpecProblem], problem: SpecProblem | None) -> None:
    if problem is not None:
        out.append(problem)


# -- cpu text ---------------------------------------------------------------------------------


def format_cpu(tenths: int) -> str:
    """4 -> "0.4", 20 -> "2", 15 -> "1.5"."""
    whole, tenth = divmod(tenths, 10)
    return f"{whole}.{tenth}" if tenth else str(whole)


def parse_cpu(value: Any) -> int | None:
    """Cores as written by a user ("0.5", 2, 1.5) -> tenths; None if not exact in tenths.

    A YAML/JSON number with a fraction arrives as a Python float; its shortest repr ("0.1")
    is parsed as decimal text, so no binary fraction is ever used in arithmetic.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 10 if 0 <= value <= 1000 else None
    if isinstance(value, float):
        value = repr(value)
    if not isinstance(value, str):
        return None
    match = _CPU.fullmatch(value.strip())
    if match is None:
        return None
    return int(match.group(1)) * 10 + int(match.group(2) or 0)


# -- JSON parsing -----------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset(
    [
        "version",
        "name",
        "description",
        "owner",
        "contacts",
        "components",
        "instances",
        "expire",
        "geolocation",
        "min_tier",
        "pinned_nodes",
    ]
)
_COMPONENT_KEYS: Final = frozenset(
    [
        "name",
        "description",
        "image",
        "ports",
        "container_ports",
        "environment",
        "command",
        "data_path",
        "cpu",
        "ram_mb",
        "disk_gb",
    ]
)


@dataclass(slots=True)
class _Parsed:
    name: str = ""
    description: str = ""
    owner: bytes = b"\x00" * OWNER_SIZE
    contacts: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    instances: int = 0
    expire: int = 0
    geolocation: tuple[GeoRule, ...] = ()
    min_tier: Tier = Tier.CUMULUS
    pinned_nodes: tuple[bytes, ...] = ()
    version: int = SPEC_VERSION


class _Reader:
    """Collects structural problems while reading a JSON object."""

    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []

    def add(self, path: str, code: Problem, message: str) -> None:
        self.problems.append(SpecProblem(path, code, message))

    def keys(self, obj: dict[str, Any], allowed: frozenset[str], base: str) -> None:
        for key in sorted(str(k) for k in obj):
            if key not in allowed:
                near = _suggest(key, allowed)
                hint = f"; did you mean {near!r}?" if near else ""
                self.add(_join(base, key), Problem.UNKNOWN_FIELD, f"is not a spec field{hint}")

    def text(self, obj: dict[str, Any], key: str, base: str, default: str | None) -> str:
        path = _join(base, key)
        if key not in obj or obj[key] is None:
            if default is None:
                self.add(path, Problem.MISSING, "is required")
                return ""
            return default
        value = obj[key]
        if not isinstance(value, str):
            self.add(path, Problem.WRONG_TYPE, f"expected text, got {_kind(value)}")
            return ""
        return value

    def integer(self, obj: dict[str, Any], key: str, base: str, default: int | None) -> int:
        path = _join(base, key)
        if key not in obj or obj[key] is None:
            if default is None:
                self.add(path, Problem.MISSING, "is required")
                return 0
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, Problem.WRONG_TYPE, f"expected a whole number, got {_kind(value)}")
            return 0
        if not 0 <= value <= MAX_EXPIRE_HARD:
            self.add(path, Problem.OUT_OF_RANGE, f"{value} is out of range")
            return 0
        return value

    def items(self, obj: dict[str, Any], key: str, base: str) -> list[Any]:
        path = _join(base, key)
        if key not in obj or obj[key] is None:
            return []
        value = obj[key]
        if not isinstance(value, list):
            self.add(path, Problem.WRONG_TYPE, f"expected a list, got {_kind(value)}")
            return []
        return value

    def texts(self, obj: dict[str, Any], key: str, base: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.items(obj, key, base)):
            if isinstance(item, str):
                out.append(item)
            elif key == "environment" and isinstance(item, dict):
                self.add(
                    f"{_join(base, key)}[{i}]",
                    Problem.WRONG_TYPE,
                    "expected 'KEY=value' text (quote it in YAML), got a mapping",
                )
            else:
                self.add(
                    f"{_join(base, key)}[{i}]",
                    Problem.WRONG_TYPE,
                    f"expected text, got {_kind(item)}",
                )
        return tuple(out)

    def ints(self, obj: dict[str, Any], key: str, base: str) -> tuple[int, ...]:
        out: list[int] = []
        for i, item in enumerate(self.items(obj, key, base)):
            if isinstance(item, bool) or not isinstance(item, int):
                self.add(
                    f"{_join(base, key)}[{i}]",
                    Problem.WRONG_TYPE,
                    f"expected a whole number, got {_kind(item)}",
                )
            else:
                out.append(item)
        return tuple(out)


def _parse_json(obj: Any, hrp: str | None) -> tuple[AppSpec | None, list[SpecProblem]]:
    r = _Reader()
    if not isinstance(obj, dict):
        r.add("spec", Problem.WRONG_TYPE, f"expected a mapping of fields, got {_kind(obj)}")
        return None, r.problems
    r.keys(obj, _TOP_KEYS, "")
    p = _Parsed()
    p.version = r.integer(obj, "version", "", SPEC_VERSION)
    p.name = r.text(obj, "name", "", None)
    p.description = r.text(obj, "description", "", "")
    owner_text = r.text(obj, "owner", "", None)
    if owner_text:
        owner, why = _parse_owner(owner_text, hrp)
        if owner is None:
            r.add("owner", Problem.BAD_ADDRESS, why)
        else:
            p.owner = owner
    p.contacts = r.texts(obj, "contacts", "")
    components: list[Component] = []
    raw_components = r.items(obj, "components", "")
    if "components" not in obj:
        r.add("components", Problem.MISSING, "is required (a list of containers)")
    for i, item in enumerate(raw_components):
        component = _parse_component(r, item, f"components[{i}]")
        if component is not None:
            components.append(component)
    p.components = tuple(components)
    p.instances = r.integer(obj, "instances", "", 3)
    p.expire = r.integer(obj, "expire", "", None)
    p.geolocation = _parse_geolocation(r, obj.get("geolocation"))
    tier_text = r.text(obj, "min_tier", "", "cumulus")
    if tier_text.lower() in TIER_NAMES:
        p.min_tier = TIER_NAMES[tier_text.lower()]
    elif tier_text:
        r.add("min_tier", Problem.BAD_FORMAT, f"{tier_text!r} is not one of {sorted(TIER_NAMES)}")
    pinned: list[bytes] = []
    for i, text in enumerate(r.texts(obj, "pinned_nodes", "")):
        try:
            node_id = bytes.fromhex(text)
        except ValueError:
            node_id = b""
        if len(node_id) != NODE_ID_SIZE:
            r.add(
                f"pinned_nodes[{i}]", Problem.BAD_FORMAT, f"expected {NODE_ID_SIZE * 2} hex digits"
            )
        else:
            pinned.append(node_id)
    p.pinned_nodes = tuple(pinned)
    return AppSpec(**{f: getattr(p, f) for f in _SPEC_FIELDS}), r.problems


def _parse_component(r: _Reader, item: Any, base: str) -> Component | None:
    if not isinstance(item, dict):
        r.add(base, Problem.WRONG_TYPE, f"expected a mapping of fields, got {_kind(item)}")
        return None
    r.keys(item, _COMPONENT_KEYS, base)
    cpu_path = f"{base}.cpu"
    cpu = 0
    if "cpu" not in item:
        r.add(cpu_path, Problem.MISSING, "is required (cores, e.g. 0.5)")
    else:
        parsed = parse_cpu(item["cpu"])
        if parsed is None:
            r.add(
                cpu_path,
                Problem.BAD_FORMAT,
                f"{item['cpu']!r} is not cores with one decimal, like 0.5",
            )
        else:
            cpu = parsed
    return Component(
        name=r.text(item, "name", base, None),
        description=r.text(item, "description", base, ""),
        image=r.text(item, "image", base, None),
        ports=r.ints(item, "ports", base),
        container_ports=r.ints(item, "container_ports", base),
        environment=r.texts(item, "environment", base),
        command=r.texts(item, "command", base),
        data_path=r.text(item, "data_path", base, "/data"),
        cpu=cpu,
        ram_mb=r.integer(item, "ram_mb", base, None),
        disk_gb=r.integer(item, "disk_gb", base, None),
    )


def _parse_geolocation(r: _Reader, raw: Any) -> tuple[GeoRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        r.add("geolocation", Problem.WRONG_TYPE, "expected {allow: [...], deny: [...]}")
        return ()
    r.keys(raw, frozenset({"allow", "deny"}), "geolocation")
    rules: list[GeoRule] = []
    for mode in ("allow", "deny"):
        for i, code in enumerate(r.texts(raw, mode, "geolocation")):
            path = f"geolocation.{mode}[{i}]"
            continent, _, country = code.partition("_")
            if len(continent) != 2 or (country and len(country) != 2) or code.count("_") > 1:
                r.add(path, Problem.BAD_FORMAT, f"{code!r} is not like 'EU' or 'EU_DE'")
                continue
            rules.append(GeoRule(mode == "allow", continent, country))
    return tuple(rules)


def _parse_owner(text: str, hrp: str | None) -> tuple[bytes | None, str]:
    got_hrp, data = bech32.bech32_decode(text.strip())
    if got_hrp is None or data is None:
        return None, f"{text!r} is not a bech32 address"
    if hrp is not None and got_hrp != hrp:
        return None, f"address is for network {got_hrp!r}, not {hrp!r}"
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != OWNER_SIZE:
        return None, "address payload is not 20 bytes"
    return bytes(raw), ""


def _owner_text(owner: bytes, hrp: str | None) -> str:
    if hrp is None:
        return owner.hex()
    data = bech32.convertbits(owner, 8, 5)
    assert data is not None
    return str(bech32.bech32_encode(hrp, data))


def _suggest(key: str, allowed: Iterable[str]) -> str | None:
    """A Flux (camelCase) or misspelt key's likely intended name."""
    aliases = {
        "repotag": "image",
        "containerports": "container_ports",
        "environmentparameters": "environment",
        "enviromentparameters": "environment",
        "commands": "command",
        "containerdata": "data_path",
        "ram": "ram_mb",
        "hdd": "disk_gb",
        "disk": "disk_gb",
        "compose": "components",
        "nodes": "pinned_nodes",
    }
    folded = key.lower().replace("_", "")
    if folded in aliases:
        return aliases[folded]
    for name in sorted(allowed):
        if name.replace("_", "") == folded:
            return name
    return None


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# -- canonical decoding helpers -----------------------------------------------------------------


def _shape(check: Any, value: Any, where: str, **bounds: Any) -> Any:
    """Run an encoding `as_*` check, turning its failure into invalid_spec for this field."""
    try:
        return check(value, where, **bounds)
    except DecodeError as exc:
        raise DecodeError(Reason.INVALID_SPEC, exc.message) from None


def _ints(value: Any, where: str, max_len: int, hi: int) -> tuple[int, ...]:
    items = _shape(as_list, value, where, max_len=max_len)
    return tuple(_shape(as_int, v, f"{where}[{i}]", hi=hi) for i, v in enumerate(items))


def _strs(value: Any, where: str, max_len: int, max_item: int) -> tuple[str, ...]:
    items = _shape(as_list, value, where, max_len=max_len)
    return tuple(_shape(as_str, v, f"{where}[{i}]", max_len=max_item) for i, v in enumerate(items))
