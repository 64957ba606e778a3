"""A small synchronous client for the node's HTTP API (fluxchain/api/server.py ROUTES).

Why the standard library (`urllib.request`) and not aiohttp: a wallet command makes a
handful of sequential requests and exits; a blocking client with a per-request timeout
is the whole need, starts faster than an event loop plus an aiohttp session, and keeps
the wallet's dependencies to what DESIGN.md §10 lists for it. Waiting for a confirmation
polls `GET /txs/{id}` (one cheap request per poll interval, with a deadline) instead of
holding a websocket open: the poll survives a node restart and needs no async code.

Every failure is a WalletError: `node_unreachable` when no HTTP answer comes (refused,
DNS, timeout), `NodeApiError` with the node's own reason code for an error body, and
`node_error` for an answer that is not the API's JSON. A 429 (the node busy, or its
mempool full: nothing was taken) is asked again after its Retry-After, up to BUSY_RETRIES
times, as the API asks; past that it is the node's reason (`busy`, `mempool_full`…) with
exit status 10.

`NodeClient` may be given several nodes (`--node a,b` or FLUX_NODE): it asks them in
order and goes on to the next when one is unreachable or, with a `Verifier`
(wallet/verify.py), when its answer does not verify. Reads with a proof (account, node,
app, a confirmed tx) are checked by the light client (docs/light-client.md); while
verifying, what one node says without a proof is not final: a refusal of the request
(400), or a tx status other than a proven "confirmed", sends the wallet to the next node.
The chain's params come from the genesis pinned in the trust store, never from a node's
`/params`. The other reads (lists, stats, status) cannot be proven and are taken from the
first node that answers.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from fluxchain.core.block import Header
from fluxchain.core.crypto import decode_address
from fluxchain.core.errors import FluxError
from fluxchain.core.params import Params
from fluxchain.core.secrets import get_secrets_view
from fluxchain.core.state import State
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.views import app_json, node_view_json
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.verifier import LightBlock
from fluxchain.light.wire import header_of, light_block_of, validators_of
from wallet.errors import NodeApiError, WalletError, WalletReason

DEFAULT_NODE: Final = "http://127.0.0.1:26700"
DEFAULT_TIMEOUT_S: Final = 10.0
MAX_RESPONSE: Final = 32 * 1024 * 1024  # /nodes and /apps pages are capped at 1,000 items
USER_AGENT: Final = "flux-wallet/0.1"
# A 429 is asked again after its Retry-After (at most RETRY_AFTER_MAX_S) this many times:
# a node sheds load for a second or so; a user waits a few seconds, not minutes.
BUSY_RETRIES: Final = 3
RETRY_AFTER_MAX_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Account:
    address: str
    balance: int
    nonce: int


class Verifier(Protocol):
    """Checks answers against the light client (wallet/verify.py)."""

    def params(self) -> Params: ...
    def account(
        self, node: NodeTransport, address: bytes, body: dict[str, Any], hrp: str
    ) -> Header: ...
    def view(
        self,
        node: NodeTransport,
        status: int,
        body: dict[str, Any],
        render: Callable[[State], dict[str, Any] | None],
    ) -> Header: ...
    def tx(
        self, node: NodeTransport, tx_id: str, body: dict[str, Any], hrp: str
    ) -> Header | None: ...
    def block(self, node: NodeTransport, body: dict[str, Any], hrp: str, ref: str) -> Header: ...
    def use_witnesses(self, nodes: Sequence[NodeTransport]) -> None: ...


T = TypeVar("T")
# Failures of the wallet's own trust: asking another node would not help.
_OWN_STATE: Final = frozenset(
    {LightReason.TRUST_EXPIRED, LightReason.NO_TRUST_ANCHOR, LightReason.LIGHT_CLIENT_ATTACK}
)
# Unproven tx statuses, most cautious first: when no node proves "confirmed", the wallet
# believes the one that loses nothing (a "rejected" makes it forget the send, and the
# user may pay twice), and "rejected" only when every node that answered says so.
_UNPROVEN_ORDER: Final = ("pending", "held", "evicted", "unknown", "rejected")


class NodeClient:
    """Typed calls to the API of one node, or of several in turn (see the module doc)."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        verifier: Verifier | None = None,
    ) -> None:
        urls = [url for url in base_url.split(",") if url.strip()] or [base_url]
        self.transports = [NodeTransport(url, timeout_s) for url in urls]
        self.base_url = self.transports[0].base_url
        self.timeout_s = timeout_s
        self.verifier = verifier
        if verifier is not None:
            verifier.use_witnesses(self.transports)  # each checks the others' headers
        self._params: Params | None = None

    # -- the API ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._first(lambda node: node.ask("GET", "/status"))

    def params(self) -> Params:
        """The chain's Params (cached for the life of this client): verifying, those of the
        genesis pinned in the trust store; otherwise the first node's `/params`."""
        if self._params is None:
            if self.verifier is not None:
                self._params = self.verifier.params()
            else:
                self._params = self.unverified_params()
        return self._params

    def unverified_params(self) -> Params:
        """The first node's `/params`, unproven: only for what signs nothing (the address
        prefix a new wallet's addresses are shown with)."""
        return self._first(lambda node: node.params())

    def account(self, address: str) -> Account:
        body = self.account_view(address)
        try:
            return Account(str(body["address"]), int(body["balance"]), int(body["nonce"]))
        except (KeyError, ValueError, TypeError):
            raise WalletError(WalletReason.NODE_ERROR, "malformed /accounts answer") from None

    def account_view(self, address: str) -> dict[str, Any]:
        """The API's account answer (verified when verifying), as the dashboard shows it."""
        path = f"/accounts/{_quote(address)}"
        verifier = self.verifier
        if verifier is None:
            body = self._first(lambda node: node.ask("GET", path))
        else:
            hrp = self.params().address_hrp
            try:
                wanted = decode_address(address.strip(), hrp)
            except FluxError as exc:
                raise WalletError(WalletReason.BAD_ADDRESS, exc.message) from None

            def read(node: NodeTransport) -> dict[str, Any]:
                proven = node.ask("GET", path + "?prove=1")
                verifier.account(node, wanted, proven, hrp)  # rebuilt for the address asked
                return proven

            body = self._each(read)
        return _without_proof(body)

    def submit(self, raw_tx: bytes) -> dict[str, Any]:
        """POST /txs; the node's answer once it took the tx: `id` and `status`, `pending`
        (in its mempool) or `held` (refused for now with `reason`, kept to be offered
        again: it may still commit)."""
        return self._first(lambda node: node.ask("POST", "/txs", {"tx": raw_tx.hex()}))

    def tx(self, tx_id: str) -> dict[str, Any]:
        """A tx's status; a confirmed one with its inclusion verified. Pending, rejected and
        unknown cannot be proven: verifying, every node is asked until one proves the tx
        confirmed, and otherwise the most cautious unproven status is taken."""
        return self.tx_status(tx_id).body

    def tx_status(self, tx_id: str) -> TxStatus:
        """`tx`, saying whether the status shown was proven, and which node said it."""
        path = f"/txs/{_quote(tx_id)}"
        verifier = self.verifier
        served: dict[int, str] = {}  # id of an answer -> the node that gave it
        if verifier is None:

            def ask(node: NodeTransport) -> dict[str, Any]:
                body = node.ask("GET", path)
                served[id(body)] = node.name
                return body

            body = self._first(ask)
            return TxStatus(body, served[id(body)], verified=False)
        hrp = self.params().address_hrp

        def read(node: NodeTransport) -> dict[str, Any]:
            body = node.ask("GET", path + "?prove=1")
            verifier.tx(node, tx_id, body, hrp)  # a "confirmed" without its proof fails
            answer = _without_proof(body)
            served[id(answer)] = node.name
            return answer

        body = self._each(read, final=lambda body: body.get("status") == "confirmed")
        return TxStatus(body, served[id(body)], verified=body.get("status") == "confirmed")

    def block(self, ref: str) -> dict[str, Any]:
        """A block by height, hash or "latest": verifying, its header verified by the light
        client from its commit and its txs and events checked against the header's roots."""
        path = f"/blocks/{_quote(ref)}"
        verifier = self.verifier
        if verifier is None:
            return self._first(lambda node: node.ask("GET", path))
        hrp = self.params().address_hrp

        def read(node: NodeTransport) -> dict[str, Any]:
            body = node.ask("GET", path + "?prove=1")
            verifier.block(node, body, hrp, ref)
            return _without_proof(body)

        return self._each(read)

    def nodes(
        self, tier: str | None = None, status: str | None = None, country: str | None = None
    ) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("tier", tier), ("status", status), ("country", country)) if v}
        path = "/nodes" + ("?" + urllib.parse.urlencode(query) if query else "")
        return _list(self._first(lambda node: node.ask("GET", path)), "nodes")

    def node(self, ref: str) -> dict[str, Any]:
        """A node by id or node key, with its assignments (verified)."""
        try:
            raw = bytes.fromhex(ref.strip())
        except ValueError:
            raw = b""

        def render(state: State) -> dict[str, Any] | None:
            return node_view_json(state, raw, self.params().address_hrp)

        return self._view(f"/nodes/{_quote(ref)}", render)

    def node_assignments(self, ref: str) -> list[dict[str, Any]]:
        """The app instances the chain placed on a node (verified with the node's view)."""
        if self.verifier is not None:
            return _list(self.node(ref), "assignments")
        body = self._first(lambda node: node.ask("GET", f"/nodes/{_quote(ref)}/assignments"))
        return _list(body, "assignments")

    def apps(self) -> list[dict[str, Any]]:
        return _list(self._first(lambda node: node.ask("GET", "/apps")), "apps")

    def app(self, name: str) -> dict[str, Any]:
        """An app with its placement (verified)."""

        def render(state: State) -> dict[str, Any] | None:
            return app_json(state, name, self.params().address_hrp)

        return self._view(f"/apps/{_quote(name)}", render)

    def app_secrets(self, name: str) -> dict[str, Any]:
        """An app's sealed secrets: ciphertexts and sealed keys (never plaintext); verified,
        so a re-seal never carries a set the chain no longer holds (a rotated-away one)."""
        if self.verifier is None:
            return self._first(lambda node: node.ask("GET", f"/apps/{_quote(name)}/secrets"))

        def render(state: State) -> dict[str, Any] | None:
            return get_secrets_view(state, name)

        return self._view(f"/apps/{_quote(name)}/secrets", render)

    def network_stats(self) -> dict[str, Any]:
        return self._first(lambda node: node.ask("GET", "/network/stats"))

    # -- asking the nodes in turn -----------------------------------------------------------

    def _view(self, path: str, render: Callable[[State], dict[str, Any] | None]) -> dict[str, Any]:
        verifier = self.verifier
        if verifier is None:
            return self._first(lambda node: node.ask("GET", path))

        def read(node: NodeTransport) -> dict[str, Any]:
            status, body = node.proven("GET", path + "?prove=1")
            verifier.view(node, status, body, render)
            if status == 404:
                error = body["error"]
                raise ProvenAbsenceError(404, str(error["reason"]), str(error["message"]))
            return _without_proof(body)

        return self._each(read)

    def _first(self, ask: Callable[[NodeTransport], T]) -> T:
        """The first answer of a node that can be reached."""
        unreachable: WalletError | None = None
        for node in self.transports:
            try:
                return ask(node)
            except WalletError as exc:
                if exc.reason != WalletReason.NODE_UNREACHABLE:
                    raise
                unreachable = unreachable or exc
        assert unreachable is not None
        raise unreachable

    def _each(
        self,
        ask: Callable[[NodeTransport], dict[str, Any]],
        final: Callable[[dict[str, Any]], bool] = lambda body: True,
    ) -> dict[str, Any]:
        """The first answer that verifies and is `final`; a node that is unreachable, whose
        answer does not verify, that refuses the request (400: unproven, a liar may say it)
        or fails otherwise, is named and the next is asked. A proven absence ends the search.
        When no answer is final, the most cautious of the others (`_UNPROVEN_ORDER`)."""
        failures: list[WalletError] = []
        unproven: list[dict[str, Any]] = []
        for node in self.transports:
            try:
                answer = ask(node)
            except ProvenAbsenceError:
                raise
            except (LightError, WalletError) as exc:
                failures.append(_node_failure(node, exc))
                continue
            if final(answer):
                return answer
            unproven.append(answer)
        if unproven:
            return min(unproven, key=_caution)
        if len(failures) == 1:
            raise failures[0]
        first = failures[0]
        raise WalletError(
            first.reason,
            "no node gave an answer that verifies: " + "; ".join(f.message for f in failures),
            exit_code=first.exit_code,
        )


def _node_failure(node: NodeTransport, exc: LightError | WalletError) -> WalletError:
    """What one node's failure is kept as, naming the node; raise at once when the failure
    is the wallet's own trust (asking another node would not help)."""
    if isinstance(exc, LightError):
        if exc.reason in _OWN_STATE:
            raise WalletError(str(exc.reason), exc.message) from None
        return WalletError(str(exc.reason), f"node {node.base_url}: {exc.message}")
    if exc.reason in _OWN_STATE:
        raise exc
    if isinstance(exc, NodeApiError):
        if exc.status == 400:
            # A refusal of the request is unproven too (a liar may say it of any request),
            # so the next node is asked; kept as a NodeApiError, which callers match on.
            return NodeApiError(
                exc.status, exc.reason, f"node {node.base_url}: {exc.message}", exc.body
            )
        return WalletError(
            exc.reason, f"node {node.base_url}: {exc.message}", exit_code=exc.exit_code
        )
    return exc


@dataclass(frozen=True, slots=True)
class TxStatus:
    """A tx's status answer; `verified` only for a confirmed tx whose inclusion was proven
    (pending, rejected and unknown are what `node` claims: nothing on chain proves them)."""

    body: dict[str, Any]
    node: str
    verified: bool


class ProvenAbsenceError(NodeApiError):
    """A 404 whose proof of absence verified: the thing asked for does not exist."""


class NodeTransport:
    """One node's API: requests, errors, and what the light client asks of a node."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        url = base_url.strip().rstrip("/")
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise WalletError(
                WalletReason.BAD_INPUT, f"--node {base_url!r} is not an http(s)://host:port URL"
            )
        self.base_url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))
        self.timeout_s = timeout_s
        # A loopback node is never reached through a proxy from the environment.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(parsed.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def name(self) -> str:
        return self.base_url

    def params(self) -> Params:
        raw = self.ask("GET", "/params")
        try:
            return Params.from_json(raw)
        except Exception as exc:
            raise WalletError(
                WalletReason.NODE_ERROR, f"the node's /params are not readable: {exc}"
            ) from None

    # -- the light client's source (fluxchain/light/client.py Source) -------------------------

    def light_block(self, height: int) -> LightBlock:
        return light_block_of(
            self.ask("GET", f"/headers/{height}"),
            self.ask("GET", f"/validators?height={height}"),
        )

    def header(self, height: int) -> Header:
        return header_of(self.ask("GET", f"/headers/{height}"))

    def validators(self, height: int) -> ValidatorSet:
        return validators_of(self.ask("GET", f"/validators?height={height}"))

    # -- transport -------------------------------------------------------------------------

    def ask(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        answer = self._request(method, path, body)
        if not isinstance(answer, dict):
            raise WalletError(WalletReason.NODE_ERROR, f"{path}: expected a JSON object")
        return answer

    def proven(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """(200, body), or (404, error body) when the error body carries a proof: an
        absence is an answer to verify, not a failure."""
        try:
            return 200, self.ask(method, path)
        except NodeApiError as exc:
            if exc.status != 404:
                raise
            if isinstance(exc.body, dict) and "proof" in exc.body:
                return 404, exc.body
            raise LightError(
                LightReason.PROOF_INVALID,
                f"the node says {exc.reason} ({exc.message}) without proving the absence",
            ) from None

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        if data is not None:
            headers["content-type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        for attempt in range(BUSY_RETRIES + 1):
            try:
                with self._reaching(), self._opener.open(request, timeout=self.timeout_s) as answer:
                    return _decode(answer.read(MAX_RESPONSE + 1), url)
            except urllib.error.HTTPError as exc:
                if exc.code != 429 or attempt == BUSY_RETRIES:
                    raise _api_error(exc, url, asked=attempt + 1) from None
                delay = _retry_delay(exc.headers.get("Retry-After"))
                exc.close()
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def stream(self, path: str, body: Any, timeout_s: float) -> Iterator[dict[str, Any]]:
        """POST `body`; the answer's JSON lines as they come (NDJSON), or its one JSON
        object when the node answers with a plain body."""
        url = self.base_url + path
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method="POST", headers=headers)
        try:
            with self._reaching(), self._opener.open(request, timeout=timeout_s) as response:
                for line in response:
                    if len(line) > MAX_RESPONSE:
                        raise WalletError(WalletReason.NODE_ERROR, f"{url}: a line too long")
                    if line.strip():
                        yield _decode(line, url)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc, url) from None

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """A failure to reach the node (refused, timed out, cut off) as NODE_UNREACHABLE;
        the node's own HTTP answers (HTTPError, a URLError too) pass through."""
        try:
            yield
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except TimeoutError as exc:
            raise self._unreachable(exc or "timed out") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, why: object) -> WalletError:
        return WalletError(
            WalletReason.NODE_UNREACHABLE,
            f"cannot reach the node at {self.base_url} ({why}); is it running? "
            "(set --node or FLUX_NODE)",
        )


def _decode(data: bytes, url: str) -> Any:
    if len(data) > MAX_RESPONSE:
        raise WalletError(WalletReason.NODE_ERROR, f"{url}: answer larger than {MAX_RESPONSE}")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise WalletError(WalletReason.NODE_ERROR, f"{url}: the answer is not JSON") from None


def _api_error(exc: urllib.error.HTTPError, url: str, asked: int = 1) -> WalletError:
    """The node's error body as a NodeApiError; a 429 says how often it was asked."""
    try:
        body = json.loads(exc.read(MAX_RESPONSE))
        error = body["error"]
        message = str(error["message"])
        if exc.code == 429:
            message += f" (the node said so {asked} times, waiting as it asked; try again later)"
        return NodeApiError(exc.code, str(error["reason"]), message, body)
    except (ValueError, RecursionError, KeyError, TypeError, OSError):
        return WalletError(WalletReason.NODE_ERROR, f"{url}: HTTP {exc.code} {exc.reason}")


def _retry_delay(retry_after: str | None) -> float:
    """Seconds a Retry-After asks for (delay-seconds, at most RETRY_AFTER_MAX_S; 1 s when
    absent or an HTTP date)."""
    try:
        return min(max(0.0, float(retry_after or "")), RETRY_AFTER_MAX_S)
    except ValueError:
        return 1.0


def _caution(body: dict[str, Any]) -> int:
    """An unproven tx status's rank in `_UNPROVEN_ORDER` (anything else last)."""
    status = body.get("status")
    return _UNPROVEN_ORDER.index(status) if status in _UNPROVEN_ORDER else len(_UNPROVEN_ORDER)


def _without_proof(body: dict[str, Any]) -> dict[str, Any]:
    """A verified answer as the unverified one reads: its proof has done its work."""
    return {key: value for key, value in body.items() if key != "proof"}


def _list(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = body.get(key)
    if not isinstance(items, list):
        raise WalletError(WalletReason.NODE_ERROR, f"malformed /{key} answer")
    return [item for item in items if isinstance(item, dict)]


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment.strip(), safe="")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
