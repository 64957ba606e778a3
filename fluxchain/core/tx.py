"""Transactions: the envelope, one payload type per kind, and their stateless checks.

Envelope (canonical msgpack array, 8 fields):
    [version, chain_id, kind, sender_pubkey, nonce, fee, payload, signature]
The signature covers `tagged_hash(TAG_TX, chain_id, encoding of the first 7 fields)`;
the tx id is SHA-256 of the whole canonical encoding. Stateful checks (nonce, balance,
signer rights) belong to the domain modules that apply each kind.
"""

from __future__ import annotations

import contextlib
import hashlib
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import repeat
from typing import Annotated, Any, ClassVar, Final, Literal, Protocol, Self, TypeVar

import msgspec

from fluxchain.core import vrf
from fluxchain.core.appspec import MAX_APP_NAME, AppSpec, check_app_name
from fluxchain.core.crypto import (
    ADDRESS_SIZE,
    PUBKEY_SIZE,
    SIGNATURE_SIZE,
    TAG_NODE_KEY,
    TAG_TX,
    Address,
    PubKey,
    Signature,
    SigningKey,
    address_of,
    first_invalid,
    is_valid_pubkey,
    sha256,
    tag_prefix,
    tagged_hash,
    verdicts,
    verify,
)
from fluxchain.core.encoding import (
    MAX_AMOUNT,
    OFF_WIRE,
    OPTIONAL_TAIL,
    Amount,
    Bool,
    ByKind,
    Bytes,
    ChainId,
    Checked,
    Enum,
    Int,
    ListOf,
    Record,
    Str,
    Uint64,
    chain_id_fits,
    pack,
    record,
    unpack,
    unpack_fields,
)
from fluxchain.core.errors import DecodeError, Reason, TxError
from fluxchain.core.frozen import draft_class
from fluxchain.core.params import MEMO_BYTES_PER_MIN_FEE, Params, Tier
from fluxchain.core.sealing import (
    AEAD_TAG_SIZE,
    KEY_CHECK_SIZE,
    KEY_SALT_SIZE,
    SEALED_KEY_SIZE,
    VALUE_NONCE_SIZE,
)
from fluxchain.core.votes import Vote, check_equivocation, evidence_pair
from fluxchain.core.vrf import VRF_KEY_SIZE, VRF_SIGNATURE_SIZE

TX_VERSION: Final = 1
NODE_ID_SIZE: Final = 20
MAX_ENDPOINT: Final = 128
MAX_VERSION_STR: Final = 32
MAX_REPORTS: Final = 64  # an attester has at most 2 * checkers_per_node targets (<= 64)
MAX_MEMO: Final = 1024  # a note to the payee, not storage: CometBFT QA's txs are 1 KB
CONTINENTS: Final = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
_COUNTRY = re.compile(r"[A-Z]{2}")
# host:port with a DNS name, IPv4 or bracketed IPv6 host; nothing that needs escaping.
_ENDPOINT = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,100}):[0-9]{1,5}")
# The signature is the last field, encoded as bin8 of 64 bytes: 0xc4 0x40 + 64 bytes.
_SIG_TAIL: Final = 2 + SIGNATURE_SIZE


class TxKind(IntEnum):
    TRANSFER = 1
    NODE_REGISTER = 2
    NODE_UPDATE = 3
    NODE_CONFIRM = 4
    UPTIME_ATTEST = 5
    NODE_UNREGISTER = 6
    APP_REGISTER = 7
    APP_UPDATE = 8
    APP_EXTEND = 9
    APP_CANCEL = 10
    EVIDENCE = 11
    APP_SECRETS = 12  # the owner sets an app's sealed secrets and seals its key to hosts
    APP_SECRETS_SEAL = 13  # a hosting node seals the app's key to a newly placed host
    APP_SECRETS_REJECT = 14  # a host whose sealed key does not open refuses it and its sealer


# Node duties and evidence cost nothing: the rules already allow at most one per node per
# window/epoch (or per offence), and the keys that send them hold no funds. Being free,
# they are checked against committed state before a node pools them (core/admission.py).
FEE_FREE: Final = frozenset(
    {
        TxKind.NODE_CONFIRM,
        TxKind.UPTIME_ATTEST,
        TxKind.EVIDENCE,
        TxKind.APP_SECRETS_SEAL,
        TxKind.APP_SECRETS_REJECT,
    }
)


class Payload(Protocol):
    KIND: ClassVar[TxKind]

    def to_fields(self) -> list[Any]: ...


def check_endpoint(endpoint: str, where: str) -> None:
    """An endpoint is host:port with a port in 1..65535."""
    if not _ENDPOINT.fullmatch(endpoint) or not 0 < int(endpoint.rsplit(":", 1)[1]) < 65536:
        raise DecodeError(Reason.BAD_FIELD, f"{where}: {endpoint!r} is not host:port")


def check_location(country: str, continent: str, where: str) -> None:
    """Country is an ISO 3166-1 alpha-2 code, continent one of the seven two-letter codes."""
    if not _COUNTRY.fullmatch(country):
        raise DecodeError(Reason.BAD_FIELD, f"{where}.country: {country!r} is not like 'DE'")
    if continent not in CONTINENTS:
        raise DecodeError(
            Reason.BAD_FIELD, f"{where}.continent: {continent!r} is not one of {sorted(CONTINENTS)}"
        )


def _is_no_key_or_node_key(key: bytes) -> bool:
    return key == b"" or is_valid_pubkey(key)


_NOT_A_KEY: Final = "not a compressed secp256k1 key"
# A node key named by a tx: a point on the curve, since it will sign and be verified.
NodeKey = Annotated[
    bytes, Checked(Bytes(PUBKEY_SIZE), is_valid_pubkey, Reason.BAD_PUBKEY, _NOT_A_KEY)
]
# The same, or b"" for none (NODE_UPDATE without a key rotation).
NewNodeKey = Annotated[
    bytes,
    Checked(
        Bytes(PUBKEY_SIZE, or_empty=True), _is_no_key_or_node_key, Reason.BAD_PUBKEY, _NOT_A_KEY
    ),
]
NodeId = Annotated[bytes, Bytes(NODE_ID_SIZE)]
Endpoint = Annotated[str, Str(MAX_ENDPOINT)]
CountryCode = Annotated[str, Str(2)]
AppName = Annotated[str, Str(MAX_APP_NAME)]


@record("payload")
@dataclass(frozen=True, slots=True)
class Transfer(Record):
    KIND: ClassVar[TxKind] = TxKind.TRANSFER
    to: Address
    amount: Amount
    # Opaque bytes for the payee (an invoice, an exchange's deposit tag), paid by size in
    # the fee rule (`memo_fee`). Off the wire when empty: a transfer without one has the
    # bytes it had before memos existed.
    memo: Annotated[bytes, Bytes(max_len=MAX_MEMO)] = field(default=b"", metadata=OPTIONAL_TAIL)

    def check_decoded(self, where: str) -> None:
        if self.amount == 0:
            raise DecodeError(
                Reason.ZERO_AMOUNT, f"{where}.amount: a transfer moves at least 1 unit"
            )


@record("hardware")
@dataclass(frozen=True, slots=True)
class Hardware(Record):
    """What an operator declares its server has."""

    cores: Annotated[int, Int(1, 4096)]
    ram_mb: Annotated[int, Int(1, 2**32)]
    disk_gb: Annotated[int, Int(1, 2**32)]


def node_key_proof_digest(
    chain_id: str, owner: bytes, nonce: int, node_key: bytes, node_id: bytes
) -> bytes:
    """What a node key signs to prove that its holder lets `owner` (the collateral key
    that sends the tx, at `nonce`) name it for the node `node_id` (b"" for a new node).

    Binding the owner stops a watcher from copying a pending key into its own register
    tx (front-running, squatting); binding the owner's nonce makes each proof good for
    one tx only; the chain id and tag keep it from meaning anything anywhere else.
    """
    return tagged_hash(TAG_NODE_KEY, chain_id, pack([owner, nonce, node_key, node_id]))


def prove_node_key(
    key: SigningKey, chain_id: str, owner: bytes, nonce: int, node_id: bytes = b""
) -> bytes:
    """The node key's proof of possession for a NODE_REGISTER (node_id b"") or a
    NODE_UPDATE that rotates to it, sent by `owner` at `nonce`."""
    return key.sign(node_key_proof_digest(chain_id, owner, nonce, key.public_key, node_id))


@record("payload")
@dataclass(frozen=True, slots=True)
class NodeRegister(Record):
    KIND: ClassVar[TxKind] = TxKind.NODE_REGISTER
    tier: Tier
    node_key: NodeKey
    endpoint: Endpoint
    country: CountryCode
    continent: CountryCode
    hardware: Hardware
    key_proof: Signature  # the node key's signature: `prove_node_key(node key, ..., node_id=b"")`
    # The node's BLS key for block reveals (core/vrf.py), derived from the node secret, and
    # its proof of possession for this chain and node key (`vrf.pop_prove`).
    vrf_key: Annotated[bytes, Bytes(VRF_KEY_SIZE)]
    vrf_proof: Annotated[bytes, Bytes(VRF_SIGNATURE_SIZE)]

    def check_decoded(self, where: str) -> None:
        check_endpoint(self.endpoint, f"{where}.endpoint")
        check_location(self.country, self.continent, where)


@record("payload")
@dataclass(frozen=True, slots=True)
class NodeUpdate(Record):
    KIND: ClassVar[TxKind] = TxKind.NODE_UPDATE
    node_id: NodeId
    endpoint: Endpoint
    country: CountryCode
    continent: CountryCode
    new_node_key: NewNodeKey  # b"" keeps the current key
    # b"" with no new key; else `prove_node_key(new key, ..., node_id)`
    new_key_proof: Annotated[bytes, Bytes(SIGNATURE_SIZE, or_empty=True)]
    # Base units moved from the owner's balance into the node's collateral: how a slashed
    # node gets back to its tier's collateral (never beyond it). 0: none.
    top_up: Amount
    # With a new node key, the VRF key derived from it and its proof of possession for the
    # new node key (`vrf.pop_prove`); b"" without one.
    new_vrf_key: Annotated[bytes, Bytes(VRF_KEY_SIZE, or_empty=True)] = b""
    new_vrf_proof: Annotated[bytes, Bytes(VRF_SIGNATURE_SIZE, or_empty=True)] = b""

    def check_decoded(self, where: str) -> None:
        rotating = self.new_node_key != b""
        parts = (self.new_key_proof, self.new_vrf_key, self.new_vrf_proof)
        if any((part != b"") != rotating for part in parts):
            raise DecodeError(
                Reason.BAD_FIELD,
                f"{where}.new_key_proof, new_vrf_key, new_vrf_proof: 64, 48 and 96 bytes with"
                " a new node key, empty without one",
            )
        check_endpoint(self.endpoint, f"{where}.endpoint")
        check_location(self.country, self.continent, where)


@record("benchmark")
@dataclass(frozen=True, slots=True)
class Benchmark(Record):
    """What the node measured on itself; checked against its tier's minimums."""

    cores: Annotated[int, Int(hi=2**32)]
    threads: Annotated[int, Int(hi=2**32)]
    ram_mb: Annotated[int, Int(hi=2**32)]
    disk_gb: Annotated[int, Int(hi=2**32)]
    disk_write_mbps: Annotated[int, Int(hi=2**32)]
    cpu_score: Annotated[int, Int(hi=2**32)]
    bandwidth_mbit: Annotated[int, Int(hi=2**32)]


@record("payload")
@dataclass(frozen=True, slots=True)
class NodeConfirm(Record):
    KIND: ClassVar[TxKind] = TxKind.NODE_CONFIRM
    node_id: NodeId
    benchmark: Benchmark
    version: Annotated[str, Str(MAX_VERSION_STR)]


@record("report")
@dataclass(frozen=True, slots=True)
class UptimeReport(Record):
    """One checker's verdict on one target."""

    target: NodeId
    up: Annotated[bool, Bool()]
    # A uint32, top included, as priced by nodes.attestation_bytes (a 2**32 would encode
    # in 9 bytes, not 5, and make an attestation larger than the active cap assumes).
    latency_ms: Annotated[int, Int(hi=2**32 - 1)]


@record("payload")
@dataclass(frozen=True, slots=True)
class UptimeAttest(Record):
    KIND: ClassVar[TxKind] = TxKind.UPTIME_ATTEST
    node_id: NodeId  # the checker
    epoch: Uint64
    reports: Annotated[tuple[UptimeReport, ...], ListOf(UptimeReport, max_len=MAX_REPORTS)]

    def check_decoded(self, where: str) -> None:
        targets = {r.target for r in self.reports}
        if len(targets) != len(self.reports):
            raise DecodeError(Reason.DUPLICATE_TARGET, f"{where}.reports: a target appears twice")


@record("payload")
@dataclass(frozen=True, slots=True)
class NodeUnregister(Record):
    KIND: ClassVar[TxKind] = TxKind.NODE_UNREGISTER
    node_id: NodeId


@record("payload")
@dataclass(frozen=True, slots=True)
class AppRegister(Record):
    KIND: ClassVar[TxKind] = TxKind.APP_REGISTER
    spec: AppSpec


@record("payload")
@dataclass(frozen=True, slots=True)
class AppUpdate(Record):
    KIND: ClassVar[TxKind] = TxKind.APP_UPDATE
    spec: AppSpec


@record("payload")
@dataclass(frozen=True, slots=True)
class AppExtend(Record):
    KIND: ClassVar[TxKind] = TxKind.APP_EXTEND
    name: AppName
    blocks: Annotated[int, Int(1, 2**32)]

    def check_decoded(self, where: str) -> None:
        check_app_name(self.name, f"{where}.name")


@record("payload")
@dataclass(frozen=True, slots=True)
class AppCancel(Record):
    KIND: ClassVar[TxKind] = TxKind.APP_CANCEL
    name: AppName

    def check_decoded(self, where: str) -> None:
        check_app_name(self.name, f"{where}.name")


@record("payload")
@dataclass(frozen=True, slots=True)
class Evidence(Record):
    KIND: ClassVar[TxKind] = TxKind.EVIDENCE
    vote_a: Vote
    vote_b: Vote

    def check_decoded(self, where: str) -> None:
        if (self.vote_a, self.vote_b) != evidence_pair(self.vote_a, self.vote_b):
            raise DecodeError(
                Reason.BAD_EVIDENCE_VOTES, f"{where}: votes must be ordered by block hash"
            )


# -- sealed app secrets (core/secrets.py applies them; core/sealing.py is the cryptography) --


# Variables the hosting agent sets in every workload's environment (agent/runtime.py
# `workload_env`), after the secrets: a secret of that name would never be seen.
RESERVED_VARIABLES: Final = frozenset({"PORT", "HOST"})
RESERVED_PREFIX: Final = "FLUX_"


def is_reserved_variable(name: str) -> bool:
    """Whether the hosting agent sets variable `name` itself (PORT, HOST, FLUX_*)."""
    return name in RESERVED_VARIABLES or name.startswith(RESERVED_PREFIX)


class SecretKind(IntEnum):
    """What a secret value is for."""

    ENV = 1  # an environment variable of the component: name = the variable
    REGISTRY_AUTH = 2  # "user:password" for the registry `name` the component's image is in


MAX_SECRETS: Final = 32  # per app: 20 variables of a component and a few registry logins
MAX_SECRET_NAME: Final = 128
MAX_SECRET_VALUE: Final = 4096  # a TLS key in PEM fits; the tx stays far below max_tx_bytes
MAX_SECRET_CIPHERTEXT: Final = MAX_SECRET_VALUE + VALUE_NONCE_SIZE + AEAD_TAG_SIZE
MAX_SEALS: Final = 100  # an app has at most 100 instances, so at most 100 hosts
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_REGISTRY_NAME = re.compile(r"[A-Za-z0-9.-]{1,120}(:[0-9]{1,5})?")


@record("secret")
@dataclass(frozen=True, slots=True)
class Secret(Record):
    """One secret value of one component, encrypted under the app's data key."""

    component: Annotated[str, Str(MAX_APP_NAME)]
    kind: Annotated[SecretKind, Enum(SecretKind, unknown=Reason.UNKNOWN_KIND)]
    name: Annotated[str, Str(MAX_SECRET_NAME)]
    ciphertext: Annotated[bytes, Bytes(max_len=MAX_SECRET_CIPHERTEXT)]

    def check_decoded(self, where: str) -> None:
        pattern = _ENV_NAME if self.kind is SecretKind.ENV else _REGISTRY_NAME
        if not pattern.fullmatch(self.name):
            raise DecodeError(Reason.BAD_FIELD, f"{where}.name: {self.name!r} is not a valid name")
        if len(self.ciphertext) < VALUE_NONCE_SIZE + AEAD_TAG_SIZE:
            raise DecodeError(Reason.BAD_FIELD, f"{where}.ciphertext: too short to be one")


@record("seal")
@dataclass(frozen=True, slots=True)
class Seal(Record):
    """An app's data key sealed (ECIES) to the node key of `node_id`."""

    node_id: NodeId
    sealed: Annotated[bytes, Bytes(SEALED_KEY_SIZE)]


def _check_seal_targets(seals: tuple[Seal, ...], where: str) -> None:
    if len({seal.node_id for seal in seals}) != len(seals):
        raise DecodeError(Reason.DUPLICATE_TARGET, f"{where}.seals: a node appears twice")


@record("payload")
@dataclass(frozen=True, slots=True)
class AppSecrets(Record):
    """The owner sets the app's secrets (replacing any before) and seals their key to
    hosts. The same secrets and key with new seals is a re-seal; no secrets removes them."""

    KIND: ClassVar[TxKind] = TxKind.APP_SECRETS
    name: AppName
    key_salt: Annotated[bytes, Bytes(KEY_SALT_SIZE)]
    key_check: Annotated[bytes, Bytes(KEY_CHECK_SIZE)]
    secrets: Annotated[tuple[Secret, ...], ListOf(Secret, max_len=MAX_SECRETS)]
    seals: Annotated[tuple[Seal, ...], ListOf(Seal, max_len=MAX_SEALS)]

    def check_decoded(self, where: str) -> None:
        check_app_name(self.name, f"{where}.name")
        named = {(s.component, s.kind, s.name) for s in self.secrets}
        if len(named) != len(self.secrets):
            raise DecodeError(Reason.BAD_FIELD, f"{where}.secrets: a secret is named twice")
        _check_seal_targets(self.seals, where)


@record("payload")
@dataclass(frozen=True, slots=True)
class AppSecretsSeal(Record):
    """A host of the app (`node_id`, signing with its node key) seals the app's data key,
    the one `key_check` names, to newly placed hosts."""

    KIND: ClassVar[TxKind] = TxKind.APP_SECRETS_SEAL
    name: AppName
    node_id: NodeId
    key_check: Annotated[bytes, Bytes(KEY_CHECK_SIZE)]
    seals: Annotated[tuple[Seal, ...], ListOf(Seal, max_len=MAX_SEALS)]

    def check_decoded(self, where: str) -> None:
        check_app_name(self.name, f"{where}.name")
        if not self.seals:
            raise DecodeError(Reason.BAD_FIELD, f"{where}.seals: seals at least one node")
        _check_seal_targets(self.seals, where)


@record("payload")
@dataclass(frozen=True, slots=True)
class AppSecretsReject(Record):
    """A host (`node_id`, signing with its node key) whose sealed key of the current data
    key does not open, or is not the app's: the key is dropped and its sealer may not seal
    to this host again, so another host (or the owner) seals a good one."""

    KIND: ClassVar[TxKind] = TxKind.APP_SECRETS_REJECT
    name: AppName
    node_id: NodeId
    key_check: Annotated[bytes, Bytes(KEY_CHECK_SIZE)]

    def check_decoded(self, where: str) -> None:
        check_app_name(self.name, f"{where}.name")


_PAYLOADS: Final[dict[int, Any]] = {
    TxKind.TRANSFER: Transfer,
    TxKind.NODE_REGISTER: NodeRegister,
    TxKind.NODE_UPDATE: NodeUpdate,
    TxKind.NODE_CONFIRM: NodeConfirm,
    TxKind.UPTIME_ATTEST: UptimeAttest,
    TxKind.NODE_UNREGISTER: NodeUnregister,
    TxKind.APP_REGISTER: AppRegister,
    TxKind.APP_UPDATE: AppUpdate,
    TxKind.APP_EXTEND: AppExtend,
    TxKind.APP_CANCEL: AppCancel,
    TxKind.EVIDENCE: Evidence,
    TxKind.APP_SECRETS: AppSecrets,
    TxKind.APP_SECRETS_SEAL: AppSecretsSeal,
    TxKind.APP_SECRETS_REJECT: AppSecretsReject,
}


@record("tx", version=TX_VERSION)
@dataclass(frozen=True, slots=True)
class Tx(Record):
    """A signed transaction. `raw` is its canonical encoding and `id` the hash of it."""

    chain_id: Annotated[str, ChainId()]
    kind: Annotated[TxKind, Enum(TxKind, unknown=Reason.UNKNOWN_KIND)]
    sender: PubKey
    nonce: Uint64
    fee: Amount
    payload: Annotated[Any, ByKind("kind", _PAYLOADS)]  # the payload class `kind` names
    signature: Signature
    # Derived from the bytes by whoever builds the Tx (`create`, `decode`), never encoded.
    raw: bytes = field(default=b"", repr=False, compare=False, metadata=OFF_WIRE)
    id: bytes = field(default=b"", compare=False, metadata=OFF_WIRE)
    # The sender's address, derived once and used by every rule.
    sender_address: bytes = field(default=b"", repr=False, compare=False, metadata=OFF_WIRE)

    @classmethod
    def create(cls, key: SigningKey, chain_id: str, nonce: int, fee: int, payload: Payload) -> Self:
        """Build and sign a transaction."""
        sender = key.public_key
        # The wire form without its last field, the signature (b"" until signed).
        unsigned = cls(chain_id, payload.KIND, sender, nonce, fee, payload, b"").to_fields()[:-1]
        signature = key.sign(tagged_hash(TAG_TX, chain_id, pack(unsigned)))
        raw = pack([*unsigned, signature])
        return cls(
            chain_id,
            payload.KIND,
            sender,
            nonce,
            fee,
            payload,
            signature,
            raw,
            sha256(raw),
            address_of(sender),
        )

    @classmethod
    def decode(cls, raw: bytes, max_bytes: int, tx_id: bytes | None = None) -> Self:
        """Parse canonical bytes into a Tx; checks shape only, not the signature.
        `tx_id`: SHA-256 of `raw`, if the caller has hashed it already (block import)."""
        if len(raw) <= max_bytes:
            # Most txs are transfers: `_decode_transfer` builds those without the generic
            # codec, accepting only what it accepts (None for anything else).
            tx = _decode_transfer(cls, raw, tx_id)
            if tx is not None:
                return tx
        return cls.decode_by_codec(raw, max_bytes, tx_id)

    @classmethod
    def decode_by_codec(cls, raw: bytes, max_bytes: int, tx_id: bytes | None = None) -> Self:
        """`decode` through the generic codec alone: the rule that `decode`'s transfer
        shortcut is held to (tests/property/test_codec.py), and the verdict on anything
        that shortcut does not accept."""
        fields = unpack(raw, max_bytes=max_bytes)
        # The sender's address is derived before the codec has checked the sender: if it
        # is not a public key, decoding fails and the address is never seen.
        sender = fields[3] if type(fields) is list and len(fields) == 8 else None
        address = address_of(sender) if type(sender) is bytes else b""
        if tx_id is None:
            tx_id = hashlib.sha256(raw).digest()
        return cls.from_fields(fields, "tx", raw, tx_id, address)

    def signing_digest(self) -> bytes:
        """What the sender signed: the canonical encoding without the signature, tagged."""
        return signing_digest(self.chain_id, self.raw)

    def signature_valid(self) -> bool:
        return verify(self.sender, self.signing_digest(), self.signature)


# -- the transfer's fast decoder ----------------------------------------------------------
#
# Block import decodes thousands of transfers a block, and building them through the generic
# codec (parse, canonical re-encode, field checks in Python, then the objects) was the
# largest cost of an import after the signature. msgspec checks a transfer's whole shape
# in C from its declaration below (types, sizes, bounds: the same as Tx's and Transfer's
# declared checkers), and the canonical check is its re-encoding compared byte for byte
# (msgspec, like msgpack, writes minimal ints, str as str and bytes as bin, so any other
# encoding of the same values differs). Anything this does not accept whole goes through
# `Tx.from_fields`, which gives the verdict and the reason; tests/property/test_codec.py
# holds the two decoders to the same verdicts.


class _TransferWire(msgspec.Struct, array_like=True, frozen=True):
    """A TRANSFER tx's envelope on the wire (the module docstring's 8 fields)."""

    version: Literal[1]  # TX_VERSION (tests/property/test_codec.py checks they agree)
    chain_id: str  # its byte bound is checked after (`chain_id_fits`)
    kind: Literal[1]  # TxKind.TRANSFER
    sender: Annotated[bytes, msgspec.Meta(min_length=PUBKEY_SIZE, max_length=PUBKEY_SIZE)]
    nonce: Annotated[int, msgspec.Meta(ge=0)]  # msgpack holds no int beyond 2**64 - 1
    fee: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
    # [to, amount]: a transfer with a memo (a third item) takes the generic path. The
    # amount is at least 1: `Transfer.check_decoded` refuses 0 (ZERO_AMOUNT) there.
    payload: tuple[
        Annotated[bytes, msgspec.Meta(min_length=ADDRESS_SIZE, max_length=ADDRESS_SIZE)],
        Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)],
    ]
    signature: Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_SIZE, max_length=SIGNATURE_SIZE)]


class _MemoTransferWire(msgspec.Struct, array_like=True, frozen=True):
    """A TRANSFER with a memo: `_TransferWire` with the payload [to, amount, memo]. Tried
    by `Tx.decode` only (gossip and the API: the WAN's 1 KB txs all carry one), after the
    memo-less shape failed; never by `decode_transfer_run`, whose fee check has no memo."""

    version: Literal[1]
    chain_id: str
    kind: Literal[1]
    sender: Annotated[bytes, msgspec.Meta(min_length=PUBKEY_SIZE, max_length=PUBKEY_SIZE)]
    nonce: Annotated[int, msgspec.Meta(ge=0)]
    fee: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
    # An empty memo written out is not canonical: left to the codec's verdict.
    payload: tuple[
        Annotated[bytes, msgspec.Meta(min_length=ADDRESS_SIZE, max_length=ADDRESS_SIZE)],
        Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)],
        Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_MEMO)],
    ]
    signature: Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_SIZE, max_length=SIGNATURE_SIZE)]


_TRANSFER_WIRE: Final = msgspec.msgpack.Decoder(_TransferWire)
_MEMO_TRANSFER_WIRE: Final = msgspec.msgpack.Decoder(_MemoTransferWire)
_AnyTx = TypeVar("_AnyTx", bound=Tx)
_WIRE_ENCODER: Final = msgspec.msgpack.Encoder()


def _decode_transfer(cls: type[_AnyTx], raw: bytes, tx_id: bytes | None) -> _AnyTx | None:
    """The TRANSFER that `raw` canonically encodes, as `Tx.decode` builds it, or None if
    `raw` is anything else (another kind, a malformed or non-canonical encoding, a bound
    broken): the generic decoder then gives the verdict."""
    wire: _TransferWire | _MemoTransferWire
    try:
        wire = _TRANSFER_WIRE.decode(raw)
        to, amount = wire.payload
        memo = b""
    except msgspec.DecodeError:  # ValidationError is one too
        try:
            wire = _MEMO_TRANSFER_WIRE.decode(raw)
        except msgspec.DecodeError:
            return None
        to, amount, memo = wire.payload
    if _WIRE_ENCODER.encode(wire) != raw or not chain_id_fits(wire.chain_id):
        return None
    sender = wire.sender
    tx_id = hashlib.sha256(raw).digest() if tx_id is None else tx_id
    if cls is not Tx:  # a subclass has its own layout: no draft of it
        return cls(
            wire.chain_id,
            TxKind.TRANSFER,
            sender,
            wire.nonce,
            wire.fee,
            Transfer(to, amount, memo),
            wire.signature,
            raw,
            tx_id,
            address_of(sender),
        )
    # As `Tx(...)` and `Transfer(to, amount)` build them, for half the cost: every slot
    # filled by a plain store, then the finished object frozen (core/frozen.py).
    payload = _TRANSFER_DRAFT()
    payload.to = to
    payload.amount = amount
    payload.memo = memo
    payload.__class__ = Transfer
    tx = _TX_DRAFT()
    tx.chain_id = wire.chain_id
    tx.kind = TxKind.TRANSFER
    tx.sender = sender
    tx.nonce = wire.nonce
    tx.fee = wire.fee
    tx.payload = payload
    tx.signature = wire.signature
    tx.raw = raw
    tx.id = tx_id
    tx.sender_address = address_of(sender)
    tx.__class__ = cls
    built: _AnyTx = tx
    return built


_TX_DRAFT: Final = draft_class(Tx)
_TRANSFER_DRAFT: Final = draft_class(Transfer)


def signing_digest(chain_id: str, raw: bytes) -> bytes:
    """The digest the sender of the canonical tx encoding `raw` signed.

    The unsigned encoding is cut from `raw` rather than re-encoded: the array header
    loses one item (fixarray 0x98 → 0x97) and the trailing 66-byte bin8 signature goes.
    """
    head = _SIGNED_HEADS.get(chain_id) or _signed_head(chain_id)
    return hashlib.sha256(head + raw[1:-_SIG_TAIL]).digest()


def _signed_head(chain_id: str) -> bytes:
    """What precedes a tx's fields in its signed digest's preimage on `chain_id`, kept
    (once per chain: block import computes a digest for every tx)."""
    head = tag_prefix(TAG_TX, chain_id) + b"\x97"
    if len(_SIGNED_HEADS) < 64:
        _SIGNED_HEADS[chain_id] = head
    return head


# chain id -> what precedes a tx's fields in its signed digest's preimage
_SIGNED_HEADS: dict[str, bytes] = {}


def first_bad_signature(txs: Sequence[Tx]) -> int | None:
    """The index of the first of `txs` whose signature is not valid for its sender and
    contents (what `Tx.signature_valid` says of each), None if every one is: for block
    import, which checks a block's signatures in one go, without a Python call a tx."""
    senders, digests, signatures = _signed_fields(txs)
    return first_invalid(senders, digests, signatures)


def signature_verdicts_of(txs: Sequence[Tx]) -> bytearray:
    """One byte per tx of `txs`: 1 if its signature is valid (`Tx.signature_valid`), 0 if
    not; for block import's own share of a block's signatures beside its verifier
    processes, in one loop as theirs (`signature_verdicts`)."""
    senders, digests, signatures = _signed_fields(txs)
    return verdicts(senders, digests, signatures)


def _signed_fields(txs: Sequence[Tx]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The senders, signed digests (as `signing_digest`) and signatures of `txs`."""
    head, sha, tail = _SIGNED_HEADS.get, hashlib.sha256, _SIG_TAIL
    digests = [
        sha((head(tx.chain_id) or _signed_head(tx.chain_id)) + tx.raw[1:-tail]).digest()
        for tx in txs
    ]
    return [tx.sender for tx in txs], digests, [tx.signature for tx in txs]


def signature_verdicts(raws: Sequence[bytes]) -> bytearray:
    """One byte per tx encoding in `raws`: 1 if its signature is valid for its sender and
    contents (what `Tx.signature_valid` says of it), 0 if not or if it does not parse.

    Reads only the three fields a signature check needs, so that block import can hand
    the raw txs to its verifier processes before it has decoded them itself; then checks
    all the signatures it could read in one loop (`crypto.verdicts`).
    """
    head, sha, tail, fits = _SIGNED_HEADS.get, hashlib.sha256, _SIG_TAIL, chain_id_fits
    readable: list[int] = []
    senders: list[bytes] = []
    digests: list[bytes] = []
    signatures: list[bytes] = []
    for index, raw in enumerate(raws):
        try:
            fields = unpack_fields(raw)
        except DecodeError:
            continue
        # A non-canonical tx may get a verdict here: its decoding refuses it anyway.
        if type(fields) is list and len(fields) == 8:
            chain_id, sender, signature = fields[1], fields[3], fields[7]
            # A chain id beyond its byte bound cannot be tagged (and decoding refuses it).
            if (
                type(chain_id) is str
                and fits(chain_id)
                and type(sender) is bytes
                and type(signature) is bytes
            ):
                readable.append(index)
                senders.append(sender)
                # As `signing_digest`: the signed fields are cut from the encoding.
                digests.append(
                    sha((head(chain_id) or _signed_head(chain_id)) + raw[1:-tail]).digest()
                )
                signatures.append(signature)
    checked = verdicts(senders, digests, signatures)
    if len(readable) == len(raws):
        return checked
    out = bytearray(len(raws))
    for index, verdict in zip(readable, checked, strict=True):
        out[index] = verdict
    return out


def memo_fee(memo: bytes, params: Params) -> int:
    """What a transfer's memo adds to the minimum fee: one min_fee per started
    MEMO_BYTES_PER_MIN_FEE bytes (its bytes are in every block and every node's history)."""
    return -(-len(memo) // MEMO_BYTES_PER_MIN_FEE) * params.min_fee


def secrets_fee(ciphertext_bytes: int, params: Params) -> int:
    """What an APP_SECRETS adds to the minimum fee for its secret values: priced like a
    memo's bytes (one min_fee per started MEMO_BYTES_PER_MIN_FEE bytes of ciphertext), as
    they are in the block too and stay in every node's state besides (a pending set until
    its sender deletes it), so state cannot grow by a full tx for one flat min_fee."""
    return -(-ciphertext_bytes // MEMO_BYTES_PER_MIN_FEE) * params.min_fee


def check_stateless(tx: Tx, params: Params) -> None:
    """Checks that need no state: chain, size, fee floor, self-contained evidence."""
    check_stateless_rules(tx, params)
    check_proofs(tx, params.chain_id)


def check_stateless_rules(tx: Tx, params: Params) -> None:
    """`check_stateless` but for the proofs a tx carries (`check_proofs`): a few
    comparisons, cheap enough to run before any ground to refuse a tx that reads state."""
    if tx.chain_id != params.chain_id:
        raise TxError(
            Reason.WRONG_CHAIN, f"tx is for chain {tx.chain_id!r}, not {params.chain_id!r}"
        )
    if len(tx.raw) > params.max_tx_bytes:
        raise TxError(Reason.TOO_LARGE, f"tx is {len(tx.raw)} bytes, limit {params.max_tx_bytes}")
    kind = tx.payload.KIND
    if kind not in FEE_FREE and tx.fee < params.min_fee:
        raise TxError(Reason.FEE_TOO_LOW, f"fee {tx.fee} is below the minimum {params.min_fee}")
    if kind is TxKind.TRANSFER:  # the commonest tx: its rules, and none of the others'
        _check_transfer(tx, params)
        return
    # Rules on the bytes alone that a handler checked only: here, an honest node never
    # pools (beyond its sender's next nonce, where no handler dry-runs it) nor relays a tx
    # they refuse, so a peer that sends one is sending garbage (rev23adm 2).
    if carries_key_proof(tx):
        named = tx.payload.node_key if kind is TxKind.NODE_REGISTER else tx.payload.new_node_key
        if named == tx.sender:  # as `nodes.check_new_node_key`
            raise TxError(Reason.BAD_FIELD, "the node key must differ from the collateral key")
        return
    if kind is TxKind.APP_SECRETS:
        _check_secrets_bytes(tx.payload)
    if kind is TxKind.APP_SECRETS and tx.payload.secrets:
        stored = sum(len(secret.ciphertext) for secret in tx.payload.secrets)
        needed = params.min_fee + secrets_fee(stored, params)
        if tx.fee < needed:
            raise TxError(
                Reason.FEE_TOO_LOW,
                f"fee {tx.fee} is below {needed}: the minimum plus the {stored} bytes of"
                " secret values it keeps in state",
            )


def _check_secrets_bytes(payload: AppSecrets) -> None:
    """APP_SECRETS' rules on its bytes alone, as its handler's (`secrets`): seals only
    with secrets, and no secret variable the hosting agent sets itself."""
    if not payload.secrets and payload.seals:
        raise TxError(Reason.BAD_FIELD, "seals need secrets")
    for index, secret in enumerate(payload.secrets):
        if secret.kind is SecretKind.ENV and is_reserved_variable(secret.name):
            raise TxError(
                Reason.BAD_FIELD,
                f"secrets[{index}]: {secret.name} is set by the hosting agent (PORT, HOST, FLUX_*)",
            )


def check_proofs(tx: Tx, chain_id: str) -> None:
    """The stateless checks that cost signature checks or more: a node key's and its VRF
    key's proofs of possession (an Ed25519 verify and a BLS pairing check, ~1.6 ms, rev22v)
    and evidence's two vote signatures. A transfer carries none."""
    if carries_key_proof(tx):
        check_key_proof(tx, chain_id)
    elif tx.payload.KIND is TxKind.EVIDENCE:
        try:
            check_equivocation(tx.payload.vote_a, tx.payload.vote_b, chain_id)
        except Exception as exc:  # BlockError from the vote layer becomes a tx rejection
            raise TxError(Reason.BAD_EVIDENCE_VOTES, str(exc)) from None


def carries_key_proof(tx: Tx) -> bool:
    """Whether `tx` names a node key with its proofs of possession (`check_key_proof`): a
    NODE_REGISTER, or a NODE_UPDATE that rotates the key."""
    kind = tx.payload.KIND
    return kind is TxKind.NODE_REGISTER or (
        kind is TxKind.NODE_UPDATE and tx.payload.new_node_key != b""
    )


def _check_transfer(tx: Tx, params: Params) -> None:
    """A transfer's stateless rules beyond the fee floor: its memo's fee, no self-transfer."""
    payload = tx.payload
    if payload.memo:
        needed = params.min_fee + memo_fee(payload.memo, params)
        if tx.fee < needed:
            raise TxError(
                Reason.FEE_TOO_LOW,
                f"fee {tx.fee} is below {needed}: the minimum plus the memo's"
                f" {len(payload.memo)} bytes",
            )
    if payload.to == tx.sender_address:
        raise TxError(Reason.SELF_TRANSFER, "a transfer to oneself only burns its fee")


def check_key_proof(tx: Tx, chain_id: str) -> None:
    """A NODE_REGISTER, or a NODE_UPDATE that rotates the key, carries the node key's
    signature over `node_key_proof_digest`: nobody names a key they do not hold."""
    payload = tx.payload
    if payload.KIND is TxKind.NODE_REGISTER:
        key, proof, node_id = payload.node_key, payload.key_proof, b""
    else:
        key, proof, node_id = payload.new_node_key, payload.new_key_proof, payload.node_id
    digest = node_key_proof_digest(chain_id, tx.sender, tx.nonce, key, node_id)
    if not verify(key, digest, proof):
        raise TxError(
            Reason.BAD_KEY_PROOF,
            "the node key did not sign this owner's proof of possession for this tx",
        )
    if payload.KIND is TxKind.NODE_REGISTER:
        vrf_key, vrf_proof = payload.vrf_key, payload.vrf_proof
    else:
        vrf_key, vrf_proof = payload.new_vrf_key, payload.new_vrf_proof
    # The VRF key is a real key (not the identity, in the subgroup), and its holder lets
    # this node key use it on this chain: a key copied from another node cannot be named.
    try:
        proved = vrf.pop_verify(vrf_key, vrf_proof, chain_id, key)
    except DecodeError as exc:
        raise TxError(Reason.BAD_VRF_KEY, exc.message) from None
    if not proved:
        raise TxError(
            Reason.BAD_VRF_KEY,
            "the VRF key did not sign its proof of possession for this node key and chain",
        )


def decode_tx(raw: bytes, params: Params, tx_id: bytes | None = None) -> Tx:
    """Decode and run every stateless check, signature included; raise TxError on failure.
    `tx_id`: SHA-256 of `raw`, if the caller has hashed it already."""
    tx = decode_unverified(raw, params, tx_id)
    check_proofs(tx, params.chain_id)
    check_signature(tx)
    return tx


def decode_unverified(raw: bytes, params: Params, tx_id: bytes | None = None) -> Tx:
    """`decode_tx` but for the proofs (`check_proofs`) and the signature
    (`check_signature`): for a caller that can refuse a tx on a cheaper ground before it
    pays for them."""
    try:
        tx = Tx.decode(raw, params.max_tx_bytes, tx_id)
    except DecodeError as exc:
        raise TxError(exc.reason, exc.message) from None
    check_stateless_rules(tx, params)
    return tx


def check_signature(tx: Tx) -> None:
    """Raise TxError(bad_signature) unless `tx` is signed by its sender."""
    if not tx.signature_valid():
        raise TxError(Reason.BAD_SIGNATURE, "signature does not match the sender and contents")


def decode_transfer_run(
    raws: Sequence[bytes],
    start: int,
    ids: Sequence[bytes] | None,
    params: Params,
    seen: set[bytes],
    out: list[Tx],
) -> int:
    """Decode the run of memo-less TRANSFERs that begins at `raws[start]` as `Tx.decode`
    then `check_stateless` would, one by one, for a block's import: append each to `out`
    and its id to `seen`, and return the index of the first tx not taken: the end of the
    run, or a tx the shortcut does not take whole (another kind, a memo, anything
    `_decode_transfer` leaves to the codec), one that `check_stateless` would refuse, or
    an id already in `seen`. The caller gives that tx its verdict by the general path.

    Why: a block of transfers otherwise costs about six Python calls a tx in decoding
    and checking it (the decoder, its shortcut, the chain id's bound, the address, the
    stateless checks and the transfer's own). Here the run's decoding, canonical check,
    size, chain, fee floor, ids and duplicates are each one pass in C over the whole run
    (`map` over the decoder, the encoder, the hash), and one Python loop a tx is left:
    the address, the self-transfer check and the objects. Where one of those passes
    finds a tx it does not take, `_decode_transfers_one_by_one` decodes the run again
    tx by tx and gives the verdict (a refused block, or a run cut short: rare).
    `ids[i]`, if given, is the SHA-256 of `raws[i]` (hashed once). The objects are built
    as `_decode_transfer` builds them (tests/property/test_transfer_runs.py holds the
    paths to the same txs and the same verdicts)."""
    chain_id = params.chain_id
    if not chain_id_fits(chain_id):
        return start  # the general path's verdict on a chain id this long
    tail = raws[start:]
    wires: list[_TransferWire] = []
    # the longest prefix that decodes: `extend` keeps what it took before a failure
    with contextlib.suppress(msgspec.DecodeError):
        wires.extend(map(_TRANSFER_WIRE.decode, tail))
    count = len(wires)
    if count == 0:
        return start  # not a memo-less transfer: the general path's, as tx by tx
    taken = tail[:count]
    tx_ids: Sequence[bytes]
    if ids is None:
        tx_ids = list(map(_DIGEST, map(hashlib.sha256, taken)))
    else:
        tx_ids = ids[start : start + count]
    if (
        max(map(len, taken)) > params.max_tx_bytes
        or any(map(operator.ne, map(_WIRE_ENCODER.encode, wires), taken))
        or any(map(operator.ne, map(_CHAIN_ID, wires), repeat(chain_id, count)))
        or min(map(_FEE, wires)) < params.min_fee
        or not seen.isdisjoint(tx_ids)
        or len(set(tx_ids)) < count
    ):
        return _decode_transfers_one_by_one(raws, start, ids, params, seen, out)
    # A for loop, not a while: CPython 3.11 specializes a function's bytecode on its
    # 8th call or a for loop's 8th turn, never on a while loop's, and this runs once a
    # block (measured: 7k instructions a transfer more while unspecialized).
    before = len(out)
    for wire, raw, tx_id in zip(wires, taken, tx_ids, strict=True):
        to, amount = wire.payload
        sender = wire.sender
        address = address_of(sender)
        if to == address:  # `check_stateless`: no transfer to oneself
            count = len(out) - before
            break
        payload = _TRANSFER_DRAFT()
        payload.to = to
        payload.amount = amount
        payload.memo = b""
        payload.__class__ = Transfer
        tx = _TX_DRAFT()
        tx.chain_id = chain_id
        tx.kind = TxKind.TRANSFER
        tx.sender = sender
        tx.nonce = wire.nonce
        tx.fee = wire.fee
        tx.payload = payload
        tx.signature = wire.signature
        tx.raw = raw
        tx.id = tx_id
        tx.sender_address = address
        tx.__class__ = Tx
        out.append(tx)
    seen.update(tx_ids[:count])
    return start + count


_DIGEST: Final = type(hashlib.sha256()).digest
_CHAIN_ID: Final = operator.attrgetter("chain_id")
_FEE: Final = operator.attrgetter("fee")


def _decode_transfers_one_by_one(
    raws: Sequence[bytes],
    start: int,
    ids: Sequence[bytes] | None,
    params: Params,
    seen: set[bytes],
    out: list[Tx],
) -> int:
    """`decode_transfer_run` one tx at a time: its verdicts wherever the run's checks
    in one go find a tx they do not pass (each check in the loop's order)."""
    chain_id = params.chain_id
    if not chain_id_fits(chain_id):
        return start  # the general path's verdict on a chain id this long
    min_fee, max_bytes = params.min_fee, params.max_tx_bytes
    decode, encode, sha = _TRANSFER_WIRE.decode, _WIRE_ENCODER.encode, hashlib.sha256
    end = len(raws)
    # A for loop, not a while: CPython 3.11 specializes a function's bytecode on its
    # 8th call or a for loop's 8th turn, never on a while loop's, and this runs once a
    # block (measured: 7k instructions a transfer more while unspecialized).
    for i in range(start, end):
        raw = raws[i]
        if len(raw) > max_bytes:
            break
        try:
            wire = decode(raw)
        except msgspec.DecodeError:
            break
        # canonical bytes (as `_decode_transfer`), then `check_stateless`: the chain
        # (which fits, checked above), the fee floor, and no transfer to oneself
        if encode(wire) != raw or wire.chain_id != chain_id or wire.fee < min_fee:
            break
        to, amount = wire.payload
        sender = wire.sender
        address = address_of(sender)
        if to == address:
            break
        tx_id = sha(raw).digest() if ids is None else ids[i]
        if tx_id in seen:
            break
        seen.add(tx_id)
        payload = _TRANSFER_DRAFT()
        payload.to = to
        payload.amount = amount
        payload.memo = b""
        payload.__class__ = Transfer
        tx = _TX_DRAFT()
        tx.chain_id = wire.chain_id
        tx.kind = TxKind.TRANSFER
        tx.sender = sender
        tx.nonce = wire.nonce
        tx.fee = wire.fee
        tx.payload = payload
        tx.signature = wire.signature
        tx.raw = raw
        tx.id = tx_id
        tx.sender_address = address
        tx.__class__ = Tx
        out.append(tx)
    else:
        i = end
    return i
