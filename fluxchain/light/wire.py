"""The node API's JSON into core objects: every object travels as the hex of its
canonical encoding (`*_raw`), which is decoded and re-encoded here, so a light client
never reads a field the node could have phrased two ways."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fluxchain.core.block import Header
from fluxchain.core.encoding import unpack
from fluxchain.core.errors import FluxError
from fluxchain.core.statetree import StateProof
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.verifier import LightBlock

_T = TypeVar("_T")


def field(body: Any, name: str, kind: type[_T]) -> _T:
    """`body[name]`, of type `kind`, or MALFORMED_ANSWER naming it."""
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise LightError(
            LightReason.MALFORMED_ANSWER,
            f"the answer's {name!r} is missing or not a {kind.__name__}",
        )
    return value


def hex_bytes(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise LightError(LightReason.MALFORMED_ANSWER, f"{what} is not a hex string")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise LightError(LightReason.MALFORMED_ANSWER, f"{what} is not hex") from None


def decoded(body: Any, name: str, decode: Callable[[Any], _T]) -> _T:
    """The object whose canonical encoding `body[name]` holds in hex."""
    raw = hex_bytes(field(body, name, str), name)
    try:
        return decode(unpack(raw))
    except (FluxError, ValueError, TypeError) as exc:
        raise LightError(LightReason.MALFORMED_ANSWER, f"{name} does not decode: {exc}") from None


def header_of(body: Any) -> Header:
    return decoded(body, "header_raw", Header.from_fields)


def commit_of(body: Any) -> Commit:
    return decoded(body, "commit_raw", Commit.from_fields)


def validators_of(body: Any) -> ValidatorSet:
    return decoded(body, "validators_raw", ValidatorSet.from_fields)


def light_block_of(header_body: Any, validators_body: Any) -> LightBlock:
    """A light block from `/headers/{h}` and `/validators?height=h` answers."""
    return LightBlock(
        header_of(header_body), commit_of(header_body), validators_of(validators_body)
    )


def state_proof_of(levels: Any, what: str) -> StateProof:
    if not isinstance(levels, list):
        raise LightError(LightReason.MALFORMED_ANSWER, f"{what} is not a list")
    blobs = [hex_bytes(level, what) for level in levels]
    try:
        return StateProof.from_fields(blobs)
    except FluxError as exc:
        raise LightError(LightReason.PROOF_INVALID, f"{what}: {exc.message}") from None
