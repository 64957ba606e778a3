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

import heapq
import os
from collections.abc import Mapping
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
# Nonces remembered at once, per signer and in all. One a request, for at most
# MAX_AHEAD_MS: past its own quota a signer's new requests are turned away (429) until its
# old ones expire, rather than forgetting a nonce whose request could then be replayed;
# so one owner (any owner of an app on the node) cannot take another owner's room.
MAX_NONCES_PER_OWNER: Final = 1_000  # a request every 0.3 s over the window
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


def _int(body: Mapping[str, object], name: str, lo: int, hi: int) -> int:
    value = body.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(f"{name} is an integer within [{lo}, {hi}]")
    return value


def _hex(body: Mapping[str, object], name: str, size: int) -> bytes:
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

    Bounded per signer (`capacity`, its quota: past it only that signer is refused
    `busy`) and in all (`total`). The book is full in all only when many owners each hold
    many nonces; then the signer holding the most forgets its earliest-expiring nonce and
    refuses its requests expiring no later (its `floor`): none of the forgotten ones can
    be replayed, and nobody is locked out by another's requests. Expired nonces leave in
    expiry order through a heap: no scan of the book per request."""

    def __init__(self, capacity: int = MAX_NONCES_PER_OWNER, total: int = MAX_NONCES) -> None:
        self.capacity = capacity
        self.total = max(total, capacity)
        self._live: dict[bytes, dict[bytes, int]] = {}  # signer -> nonce -> expiry
        self._own: dict[bytes, list[tuple[int, bytes]]] = {}  # signer -> heap (expiry, nonce)
        # every entry by expiry; an entry forgotten early stays until popped (lazy delete)
        self._heap: list[tuple[int, bytes, bytes]] = []
        self._floor: dict[bytes, int] = {}  # signer -> latest expiry it was made to forget
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _drop(self, signer: bytes) -> tuple[int, bytes]:
        """Forget the signer's earliest-expiring nonce (the front of its own heap)."""
        expiry, nonce = heapq.heappop(self._own[signer])
        del self._live[signer][nonce]
        self._count -= 1
        if not self._live[signer]:
            del self._live[signer], self._own[signer]
        return expiry, nonce

    def _forget_expired(self, now_ms: int) -> None:
        # global and per-signer heaps share the (expiry, nonce) order, so an expired live
        # entry at the global front is its signer's front too
        while self._heap and self._heap[0][0] < now_ms:
            expiry, signer, nonce = heapq.heappop(self._heap)
            if self._live.get(signer, {}).get(nonce) == expiry:
                self._drop(signer)
        if len(self._heap) > 2 * self._count + 64:  # keep the lazily deleted ones bounded
            self._heap = [
                (e, signer, n) for signer, live in self._live.items() for n, e in live.items()
            ]
            heapq.heapify(self._heap)
        if len(self._floor) > len(self._live) + 64:  # a floor in the past refuses nothing
            self._floor = {k: f for k, f in self._floor.items() if f >= now_ms}

    def use(self, signer: bytes, nonce: bytes, expiry_ms: int, now_ms: int) -> None:
        """Record the nonce; OwnerRequestError(replayed or busy) if it cannot be used."""
        live = self._live.get(signer, {})
        if nonce in live:
            raise OwnerRequestError(Refusal.REPLAYED, "this request was already used")
        if expiry_ms <= self._floor.get(signer, -1):
            raise OwnerRequestError(
                Refusal.BUSY, "too many recent requests of this owner; sign a new one"
            )
        self._forget_expired(now_ms)
        if len(self._live.get(signer, {})) >= self.capacity:
            raise OwnerRequestError(
                Refusal.BUSY, "too many recent requests of this owner; retry in a minute"
            )
        if self._count >= self.total:
            largest = max(self._live, key=lambda k: (len(self._live[k]), k))
            forgotten, _ = self._drop(largest)
            self._floor[largest] = max(self._floor.get(largest, -1), forgotten)
            if signer == largest and expiry_ms <= forgotten:
                raise OwnerRequestError(
                    Refusal.BUSY, "too many recent requests of this owner; sign a new one"
                )
        self._live.setdefault(signer, {})[nonce] = expiry_ms
        heapq.heappush(self._own.setdefault(signer, []), (expiry_ms, nonce))
        heapq.heappush(self._heap, (expiry_ms, signer, nonce))
        self._count += 1


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
