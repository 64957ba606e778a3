"""A node's answers, checked: state entries against a verified header's state root, and
a tx's inclusion against a verified header's tx root.

A state answer carries a `proof` object (fluxchain/api/queries.py `proven`):

    {"height": H, "header_raw": hex, "commit_raw": hex,
     "entries": [{"key": hex, "value": hex or null, "proof": [hex, ...]}, ...]}

one entry for every state key the node read to build its answer, each proven present
(with its value) or absent, and the entry of the validator set that signs the next block
(key `v`), which the light client keeps with the header. `verify_state_answer` returns
a State that holds exactly those entries: the caller recomputes the answer from it with
the same functions the node used, so a value the node did not prove cannot reach the
caller (reading any other key raises PROOF_INVALID). A tx answer's proof:

    {"height": H, "header_raw": hex, "commit_raw": hex,
     "tx_raw": hex, "index": i, "count": n, "path": [hex, ...],
     "events": [{"raw": hex, "index": i, "count": n, "path": [hex, ...]}, ...]}

where each of `events` proves one event the answer shows against the events root. A
block answer (`/blocks/{ref}?prove=1`) carries its header and commit in full (`raw`)
and a `proof` of every tx and event of the block:

    {"txs_raw": [hex, ...], "events_raw": [hex, ...]}

whose Merkle roots must be the verified header's tx root and events root.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fluxchain.core.block import Header
from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import unpack
from fluxchain.core.errors import FluxError
from fluxchain.core.events import Event
from fluxchain.core.merkle import merkle_root, verify_merkle_path
from fluxchain.core.records import VALIDATORS
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.statetree import verify_proof
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit
from fluxchain.light.client import LightClient, Source
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.wire import commit_of, field, header_of, hex_bytes, state_proof_of

MAX_ENTRIES = 1_000  # an app with 100 instances reads about 2 keys per instance


class ProvenEntries:
    """A state backing that holds only proven entries: any other read is a lie by
    omission (the node's answer depended on a key it did not prove)."""

    def __init__(self, entries: dict[bytes, bytes | None]) -> None:
        self.entries = entries

    def get(self, key: bytes) -> bytes | None:
        if key not in self.entries:
            raise LightError(
                LightReason.PROOF_INVALID,
                f"the answer depends on state key {key.hex()} but carries no proof of it",
            )
        return self.entries[key]

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise LightError(
            LightReason.PROOF_INVALID, "a listing of a whole table cannot be proven key by key"
        )


@dataclass(frozen=True, slots=True)
class ProvenState:
    """The state entries an answer proved, readable as a State, and the header under them."""

    state: State
    header: Header
    entries: dict[bytes, bytes | None]


def verify_state_answer(client: LightClient, source: Source, proof: Any) -> ProvenState:
    """Check a state answer's proof (see the module doc): its header is verified by the
    light client and fresh, and every entry verifies against its state root."""
    header = header_of(proof)
    # Freshness first: a stale header is refused before any request verifies it.
    client.check_fresh(header)
    client.verify_header(source, header, commit_of(proof))
    items = field(proof, "entries", list)
    if len(items) > MAX_ENTRIES:
        raise LightError(LightReason.MALFORMED_ANSWER, f"more than {MAX_ENTRIES} proven entries")
    entries: dict[bytes, bytes | None] = {}
    for number, item in enumerate(items):
        key = hex_bytes(field(item, "key", str), f"entry {number} key")
        raw_value = item.get("value")
        value = None if raw_value is None else hex_bytes(raw_value, f"entry {number} value")
        levels = state_proof_of(item.get("proof"), f"the proof of key {key.hex()}")
        if not verify_proof(header.state_root, key, value, levels):
            what = "its absence" if value is None else "its value"
            raise LightError(
                LightReason.PROOF_INVALID,
                f"the proof of state key {key.hex()} ({what}) does not match the state root"
                f" of header {header.height}",
            )
        entries[key] = value
    _learn_next_validators(client, header, entries.get(VALIDATORS))
    return ProvenState(new_state(ProvenEntries(entries)), header, entries)


def _learn_next_validators(client: LightClient, header: Header, value: bytes | None) -> None:
    """The proven set that signs the block after `header` (state key `v`): kept with the
    trusted header, it lets the next header be verified by CometBFT's adjacent rule."""
    if value is None:
        return
    try:
        validators = ValidatorSet.from_fields(unpack(value))
    except (FluxError, ValueError, TypeError) as exc:
        raise LightError(LightReason.PROOF_INVALID, f"the proven validator set: {exc}") from None
    client.store.learn_next_validators(header.height, header.hash(), validators)
    client.store.save()


def verify_events(header: Header, proof: Any) -> list[Event]:
    """The events a tx answer shows, each proven by its Merkle path to the verified
    header's events_root (`proof["events"]`: raw, index, count, path)."""
    events: list[Event] = []
    for number, item in enumerate(field(proof, "events", list)):
        raw = hex_bytes(field(item, "raw", str), f"event {number}")
        path = [hex_bytes(h, f"event {number} path") for h in field(item, "path", list)]
        index, count = field(item, "index", int), field(item, "count", int)
        if not verify_merkle_path(header.events_root, raw, index, count, path):
            raise LightError(
                LightReason.PROOF_INVALID,
                f"event {number}'s Merkle path does not lead to the events root of header"
                f" {header.height}",
            )
        try:
            events.append(Event.from_fields(unpack(raw)))
        except (FluxError, ValueError, TypeError) as exc:
            raise LightError(LightReason.MALFORMED_ANSWER, f"event {number}: {exc}") from None
    return events


def verify_tx_inclusion(
    client: LightClient, source: Source, tx_id: bytes, proof: Any
) -> tuple[bytes, Header]:
    """The tx's canonical bytes and the verified header of the block that includes it."""
    header = header_of(proof)
    client.verify_header(source, header, commit_of(proof))
    raw = hex_bytes(field(proof, "tx_raw", str), "tx_raw")
    if sha256(raw) != tx_id:
        raise LightError(LightReason.PROOF_INVALID, "the tx served is not the one asked for")
    path = [hex_bytes(h, "path") for h in field(proof, "path", list)]
    index, count = field(proof, "index", int), field(proof, "count", int)
    if not verify_merkle_path(header.tx_root, tx_id, index, count, path):
        raise LightError(
            LightReason.PROOF_INVALID,
            f"the tx's Merkle path does not lead to the tx root of header {header.height}",
        )
    return raw, header


@dataclass(frozen=True, slots=True)
class ProvenBlock:
    """A block whose header the light client verified, with its txs' canonical bytes and
    its events, both checked against the header's roots."""

    header: Header
    commit: Commit
    txs: list[bytes]
    events: list[Event]


def verify_block(client: LightClient, source: Source, body: Any, ref: str) -> ProvenBlock:
    """Check a block answer (`GET /blocks/{ref}?prove=1`): its header (`header.raw`) is
    the block asked for (`ref`: its height, its hash, or "latest"), it is verified by the
    light client from its commit (`commit.raw`, every signature checked), and the txs and
    events of `proof` are exactly those the header's tx root and events root commit to.
    A block asked by height or hash is history: no freshness is asked of it; "latest"
    must be fresh (any old true block would otherwise pass as the newest)."""
    header = header_of({"header_raw": _raw(body, "header")})
    _check_asked(client, header, ref)
    commit_body = body.get("commit") if isinstance(body, dict) else None
    if commit_body is None:
        raise LightError(
            LightReason.PROOF_INVALID,
            f"block {header.height} is served without its commit: nothing proves it final",
        )
    commit = commit_of({"commit_raw": _raw(body, "commit")})
    client.verify_header(source, header, commit)
    proof = field(body, "proof", dict)
    txs = [hex_bytes(raw, "a tx of the block") for raw in field(proof, "txs_raw", list)]
    if merkle_root([sha256(raw) for raw in txs]) != header.tx_root:
        raise LightError(
            LightReason.PROOF_INVALID,
            f"the txs served with block {header.height} are not the ones its tx root names",
        )
    leaves = [hex_bytes(raw, "an event of the block") for raw in field(proof, "events_raw", list)]
    if merkle_root(leaves) != header.events_root:
        raise LightError(
            LightReason.PROOF_INVALID,
            f"the events served with block {header.height} are not the ones its events root names",
        )
    try:
        events = [Event.from_fields(unpack(raw)) for raw in leaves]
    except (FluxError, ValueError, TypeError) as exc:
        raise LightError(LightReason.MALFORMED_ANSWER, f"an event of the block: {exc}") from None
    return ProvenBlock(header, commit, txs, events)


def _check_asked(client: LightClient, header: Header, ref: str) -> None:
    """Raise PROOF_INVALID unless `header` is the block `ref` names: a true block served
    for another question is still a lie (the txs of the block asked for are hidden)."""
    if ref == "latest":
        client.check_fresh(header)
        return
    if ref.isascii() and ref.isdigit():  # not "²", which int() refuses
        if header.height != int(ref):
            raise LightError(
                LightReason.PROOF_INVALID,
                f"asked for block {ref}, the node served block {header.height}",
            )
        return
    if header.hash().hex() != ref.strip().lower():
        raise LightError(
            LightReason.PROOF_INVALID,
            f"asked for block {ref}, the node served block {header.height} ({header.hash().hex()})",
        )


def _raw(body: Any, name: str) -> str:
    """`body[name]["raw"]`: the canonical bytes (hex) of the header or commit shown."""
    return field(field(body, name, dict), "raw", str)
