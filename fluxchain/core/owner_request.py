"""Owner-signed requests: how an app's owner asks a hosting node to operate the app.

An owner request is not a transaction: it never enters a block and costs nothing. It
names what to do (`method`), to which app, which instance (or all the app's instances on
the node), on which node, until when, and a random nonce; the app owner's key signs it
under its own domain tag (`TAG_OWNER_REQUEST`), so a request is never a valid tx, vote or
handshake signature, nor any of those a valid request.

The hosting node checks it (`check_owner_request`) against its committed state: the
signer's address must be the app's owner there, the request must name this node, it must
not have expired nor be dated more than `MAX_AHEAD_MS` ahead, and its nonce must not have
been used within that window (`NonceBook`). These checks read the wall clock (the
request's expiry is wall-clock time): they are the node's API policy, never consensus.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from fluxchain.core import apps, placement
from fluxchain.core.crypto import (
    ADDRESS_SIZE,
    PUBKEY_SIZE,
    SIGNATURE_SIZE,
    SigningKey,
    address_of,
    tagged_hash,
    verify,
)
from fluxchain.core.encoding import pack
from fluxchain.core.state import State

TAG_OWNER_REQUEST: Final = b"fluxchain/owner-request/1"

ALL_INSTANCES: Final = -1
NONCE_SIZE: Final = 16
# A request is good for a few minutes: long enough to follow logs for a while, short
# enough that the replay book holds every nonce of the window in bounded memory.
MAX_AHEAD_MS: Final = 5 * 60 * 1000
# Nonces remembered at once. One a request, for at most MAX_AHEAD_MS: past this, new
# requests are turned away (429) until old ones expire, rather than forgetting a nonce
# whose request could then be replayed.
MAX_NONCES: Final = 100_000
MAX_TAIL: Final = 10_000  # lines of log a request may ask for
DEFAULT_TAIL: Final = 100


class Method(StrEnum):
    """What an owner may ask of a hosting node's agent."""

    LOGS = "logs"  # the components' output (`tail` last lines; `follow`: then live)
    STATS = "stats"  # CPU time, memory, disk, uptime of each component
    RESTART = "restart"  # stop and start again, data kept
    REDEPLOY = "redeploy"  # pull the image again and recreate, data kept


class Refusal(StrEnum):
    """Stable reason codes of a refused owner request."""

    BAD_REQUEST = "bad_request"  # malformed fields
    BAD_SIGNATURE = "bad_signature"  # not signed by the key it names
    REQUEST_EXPIRED = "request_expired"
    EXPIRY_TOO_FAR = "expiry_too_far"  # dated more than MAX_AHEAD_MS ahead
    NOT_OWNER = "not_owner"  # the signer does not own the app
    WRONG_APP = "wrong_app"  # sent to the route of another app than it names
    WRONG_NODE = "wrong_node"  # addressed to another node
    NOT_FOUND = "not_found"  # no such app
    NOT_HOSTED = "not_hosted"  # the node hosts no (such) instance of the app
    REPLAYED = "replayed"  # nonce already used
    BUSY = "busy"  # the replay book is full


STATUS: Final[dict[Refusal, int]] = {
    Refusal.BAD_REQUEST: 400,
    Refusal.BAD_SIGNATURE: 401,
    Refusal.REQUEST_EXPIRED: 401,
    Refusal.EXPIRY_TOO_FAR: 401,
    Refusal.NOT_OWNER: 403,
    Refusal.WRONG_APP: 403,
    Refusal.WRONG_NODE: 403,
    Refusal.NOT_FOUND: 404,
    Refusal.NOT_HOSTED: 404,
    Refusal.REPLAYED: 409,
    Refusal.BUSY: 429,
}


class OwnerRequestError(Exception):
    """A refused owner request: an HTTP status, a stable reason, a sentence."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = STATUS[reason]
        self.message = message


class AgentCallError(Exception):
    """A hosting node could not carry out an accepted request: its agent is not connected
    (`agent_unavailable`), left mid-call, or refused or failed the command."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class OwnerRequest:
    """One signed request. `instance` is ALL_INSTANCES for every instance on the node;
    `tail` and `follow` matter to `logs` only (signed all the same: no relay changes them)."""

    method: Method
    app: str
    instance: int
    node_id: bytes  # the node asked: a request sent to one host cannot be replayed at another
    expiry_ms: int  # unix milliseconds
    nonce: bytes
    tail: int
    follow: bool
    pubkey: bytes
    signature: bytes

    def signed_fields(self) -> list[Any]:
        return [
            str(self.method),
            self.app,
            self.instance,
            self.node_id,
            self.expiry_ms,
            self.nonce,
            self.tail,
            self.follow,
            self.pubkey,
        ]

    def digest(self, chain_id: str) -> bytes:
        """What the owner signs: the fields under the owner-request tag and the chain id."""
        return tagged_hash(TAG_OWNER_REQUEST, chain_id, pack(self.signed_fields()))

    def signature_valid(self, chain_id: str) -> bool:
        return verify(self.pubkey, self.digest(chain_id), self.signature)

    @property
    def owner(self) -> bytes:
        """The signer's account address."""
        return address_of(self.pubkey)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": str(self.method),
            "app": self.app,
            "instance": self.instance,
            "node_id": self.node_id.hex(),
            "expiry_ms": self.expiry_ms,
            "nonce": self.nonce.hex(),
            "tail": self.tail,
            "follow": self.follow,
            "pubkey": self.pubkey.hex(),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, body: Any) -> OwnerRequest:
        """Parse the JSON form; OwnerRequestError(bad_request) on any malformed field."""
        if not isinstance(body, dict):
            raise _bad("the body is a JSON object")
        try:
            method = Method(body["method"])
        except (KeyError, ValueError, TypeError):
            raise _bad(f"method is one of {', '.join(m.value for m in Method)}") from None
        app = body.get("app")
        if not isinstance(app, str) or not 1 <= len(app) <= 64:
            raise _bad("app is an app name")
        instance = _int(body, "instance", ALL_INSTANCES, 1_000)
        tail = _int(body, "tail", 0, MAX_TAIL)
        follow = body.get("follow")
        if not isinstance(follow, bool):
            raise _bad("follow is true or false")
        return cls(
            method=method,
            app=app,
            instance=instance,
            node_id=_hex(body, "node_id", ADDRESS_SIZE),
            expiry_ms=_int(body, "expiry_ms", 0, 2**63 - 1),
            nonce=_hex(body, "nonce", NONCE_SIZE),
            tail=tail,
            follow=follow,
            pubkey=_hex(body, "pubkey", PUBKEY_SIZE),
            signature=_hex(body, "signature", SIGNATURE_SIZE),
        )


def _bad(message: str) -> OwnerRequestError:
    return OwnerRequestError(Refusal.BAD_REQUEST, message)


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = body.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(f"{name} is an integer within [{lo}, {hi}]")
    return value


def _hex(body: dict[str, Any], name: str, size: int) -> bytes:
    text = body.get(name)
    try:
        raw = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise _bad(f"{name} is {size} bytes in hex")
    return raw


def sign_owner_request(
    key: SigningKey,
    chain_id: str,
    *,
    method: Method,
    app: str,
    node_id: bytes,
    now_ms: int,
    instance: int = ALL_INSTANCES,
    tail: int = DEFAULT_TAIL,
    follow: bool = False,
    valid_ms: int = 60_000,
    nonce: bytes | None = None,
) -> OwnerRequest:
    """A request signed by `key`, valid for `valid_ms` from `now_ms`, with a fresh nonce."""
    unsigned = OwnerRequest(
        method=method,
        app=app,
        instance=instance,
        node_id=node_id,
        expiry_ms=now_ms + min(valid_ms, MAX_AHEAD_MS),
        nonce=os.urandom(NONCE_SIZE) if nonce is None else nonce,
        tail=tail,
        follow=follow,
        pubkey=key.public_key,
        signature=b"",
    )
    signature = key.sign(unsigned.digest(chain_id))
    return replace(unsigned, signature=signature)


class NonceBook:
    """Nonces of accepted requests until their expiry: a request is accepted once.

    Bounded: entries leave when their request expires (requests expire at most
    MAX_AHEAD_MS ahead), and past MAX_NONCES live entries new requests are refused."""

    def __init__(self, capacity: int = MAX_NONCES) -> None:
        self.capacity = capacity
        self._expiry: OrderedDict[tuple[bytes, bytes], int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def _forget_expired(self, now_ms: int) -> None:
        # Insertion order is not expiry order; scanning is bounded by capacity and only
        # runs when the book is full or every so often.
        for key, expiry in list(self._expiry.items()):
            if expiry < now_ms:
                del self._expiry[key]

    def use(self, signer: bytes, nonce: bytes, expiry_ms: int, now_ms: int) -> None:
        """Record the nonce; OwnerRequestError(replayed or busy) if it cannot be used."""
        key = (signer, nonce)
        if key in self._expiry:
            raise OwnerRequestError(Refusal.REPLAYED, "this request was already used")
        if len(self._expiry) >= self.capacity:
            self._forget_expired(now_ms)
            if len(self._expiry) >= self.capacity:
                raise OwnerRequestError(
                    Refusal.BUSY, "too many recent owner requests; retry in a minute"
                )
        self._expiry[key] = expiry_ms


def hosted_instances(state: State, app: str, node_id: bytes) -> list[int]:
    """The instance indexes of `app` that committed placement puts on `node_id`."""
    where = placement.get_placement(state, app)
    if where is None:
        return []
    return sorted(i.index for i in where.instances if i.node_id == node_id)


def check_owner_request(
    request: OwnerRequest,
    state: State,
    chain_id: str,
    node_id: bytes,
    now_ms: int,
    nonces: NonceBook,
) -> list[int]:
    """Every rule a hosting node applies, cheapest first; the nonce is used last, once the
    request is known to be the owner's (nobody can burn an owner's nonces). Returns the
    instances of the app on this node that the request covers."""
    if request.expiry_ms < now_ms:
        raise OwnerRequestError(Refusal.REQUEST_EXPIRED, "the request has expired")
    if request.expiry_ms > now_ms + MAX_AHEAD_MS:
        raise OwnerRequestError(
            Refusal.EXPIRY_TOO_FAR,
            f"a request expires at most {MAX_AHEAD_MS // 1000} s ahead (check your clock)",
        )
    if request.node_id != node_id:
        raise OwnerRequestError(Refusal.WRONG_NODE, "the request is addressed to another node")
    if not request.signature_valid(chain_id):
        raise OwnerRequestError(
            Refusal.BAD_SIGNATURE, "the signature does not match the request and its key"
        )
    app = apps.get_app(state, request.app)
    if app is None:
        raise OwnerRequestError(Refusal.NOT_FOUND, f"no app {request.app!r}")
    if request.owner != app.spec.owner:
        raise OwnerRequestError(Refusal.NOT_OWNER, "the signer does not own this app")
    hosted = hosted_instances(state, request.app, node_id)
    if request.instance != ALL_INSTANCES:
        hosted = [i for i in hosted if i == request.instance]
    if not hosted:
        raise OwnerRequestError(Refusal.NOT_HOSTED, "this node hosts no such instance of the app")
    nonces.use(request.pubkey, request.nonce, request.expiry_ms, now_ms)
    return hosted
