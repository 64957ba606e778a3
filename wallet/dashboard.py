"""`flux-wallet dashboard`: the node's web dashboard served locally, every read verified.

The page (fluxchain/api/static/) is the one every node serves at `/`; this server answers
its API calls by asking the wallet's nodes (`--node`, FLUX_NODE) through the wallet's own
`NodeClient`, so an account, a node, an app and a confirmed tx are checked by the light
client with the wallet's trust store, pinned genesis and fall-over: the proof is checked
once, in Python, by the code `flux-wallet balance` uses, and never again in JavaScript.

A block page is proven too: its header is verified by the light client from its commit
(every signature checked) and its txs and events are those the header's roots commit to.

Each answer says what it is, in a response header the page shows on every explorer page:

- `X-Flux-Verified: height=H hash=HEX node=URL`: proven against block H, which the light
  client verified; `node` is the node whose proof checked.
- `X-Flux-Unverified: node=URL`: a read nothing proves (lists, network figures, search),
  as the first node that answered served it; a tx status other than "confirmed" (pending,
  rejected, unknown: nothing on chain proves it), as the node named claims it.
- an error body `{"error": {"reason", "message"}}` with `X-Flux-Verify-Error: REASON`: no
  node's answer verified (reason codes of docs/light-client.md §3); the lie never reaches
  the page.

The server binds 127.0.0.1 only, answers only a Host of 127.0.0.1 or localhost (a page of
another site that rebinds its DNS name to 127.0.0.1 gets nothing), refuses every method
but GET except the stateless `POST /apps/validate` the Deploy page uses, and holds no
secret: it never opens the keystore.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web

from fluxchain.core.block import Header
from fluxchain.core.params import Params
from fluxchain.core.state import State
from fluxchain.dashboard import add_dashboard
from wallet.client import NodeClient, NodeTransport, ProvenAbsenceError, Verifier
from wallet.errors import NodeApiError, WalletError, WalletReason

VERIFIED_HEADER: Final = "X-Flux-Verified"
UNVERIFIED_HEADER: Final = "X-Flux-Unverified"
VERIFY_ERROR_HEADER: Final = "X-Flux-Verify-Error"
LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost"})
MAX_VALIDATE_BODY: Final = 64 * 1024  # the node's own limit on POST /apps/validate
WS_HEARTBEAT_S: Final = 20.0

# The reads the light client proves, by path (the page's own requests; no query).
_ACCOUNT: Final = re.compile(r"^/accounts/([^/]+)$")
_NODE: Final = re.compile(r"^/nodes/([^/]+)$")
_APP: Final = re.compile(r"^/apps/([^/]+)$")
_TX: Final = re.compile(r"^/txs/([^/]+)$")
_BLOCK: Final = re.compile(r"^/blocks/([^/]+)$")


@dataclass(frozen=True, slots=True)
class Proven:
    """Which node's answer verified, against which header."""

    node: str
    header: Header


class Witness:
    """The wallet's Verifier, keeping the header of the last answer that verified: the
    client returns only the answer, and the page must say against which block."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self.proven: Proven | None = None

    def params(self) -> Params:
        return self.verifier.params()

    def account(
        self, node: NodeTransport, address: bytes, body: dict[str, Any], hrp: str
    ) -> Header:
        return self._keep(node, self.verifier.account(node, address, body, hrp))

    def view(
        self,
        node: NodeTransport,
        status: int,
        body: dict[str, Any],
        render: Callable[[State], dict[str, Any] | None],
    ) -> Header:
        return self._keep(node, self.verifier.view(node, status, body, render))

    def tx(self, node: NodeTransport, tx_id: str, body: dict[str, Any], hrp: str) -> Header | None:
        header = self.verifier.tx(node, tx_id, body, hrp)
        return None if header is None else self._keep(node, header)

    def block(self, node: NodeTransport, body: dict[str, Any], hrp: str, ref: str) -> Header:
        return self._keep(node, self.verifier.block(node, body, hrp, ref))

    def use_witnesses(self, nodes: Sequence[NodeTransport]) -> None:
        self.verifier.use_witnesses(nodes)

    def _keep(self, node: NodeTransport, header: Header) -> Header:
        self.proven = Proven(node.name, header)
        return header


class VerifiedReads:
    """The proven reads, one at a time: the light client and its trust store are shared
    state (each verified answer may add a trusted header), and the client is blocking."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client
        self.witness: Witness | None = None
        if client.verifier is not None:
            self.witness = Witness(client.verifier)
            client.verifier = self.witness
        self._lock = asyncio.Lock()
        self.claimed_by: str | None = None

    async def read(self, path: str) -> tuple[dict[str, Any], Proven | None, str | None]:
        """The answer to a provable `path`, what proved it (None: nothing could), and for
        a tx status nothing proves, the node that claims it."""
        call = self._call(path)
        async with self._lock:
            if self.witness is not None:
                self.witness.proven = None
            self.claimed_by = None
            answer = await asyncio.to_thread(call)
            proven = None if self.witness is None else self.witness.proven
            return answer, proven, self.claimed_by

    def _call(self, path: str) -> Callable[[], dict[str, Any]]:
        client = self.client
        if match := _ACCOUNT.match(path):
            address = match.group(1)
            return lambda: client.account_view(address)
        if match := _NODE.match(path):
            ref = match.group(1)
            return lambda: client.node(ref)
        if match := _APP.match(path):
            name = match.group(1)
            return lambda: client.app(name)
        if match := _BLOCK.match(path):
            ref = match.group(1)
            return lambda: client.block(ref)
        match = _TX.match(path)
        assert match is not None
        tx_id = match.group(1)

        def tx_status() -> dict[str, Any]:
            status = client.tx_status(tx_id)
            self.claimed_by = None if status.verified else status.node
            return status.body

        return tx_status


CLIENT_KEY: Final = web.AppKey("client", NodeClient)
READS_KEY: Final = web.AppKey("reads", VerifiedReads)


def is_provable(path: str) -> bool:
    """Whether the light client can prove the answer to GET `path` (docs/light-client.md)."""
    return any(p.match(path) for p in (_ACCOUNT, _NODE, _APP, _TX, _BLOCK))


# -- handlers ---------------------------------------------------------------------------------


async def api_read(request: web.Request) -> web.Response:
    """A GET of the page: proven when the light client can prove it, else relayed."""
    if is_provable(request.path) and not request.query_string:
        return await _proven_read(request.app[READS_KEY], request.path)
    # raw_path: the page's own encoding (and query) reaches the node unchanged.
    return await _relayed(request.app[CLIENT_KEY], "GET", request.raw_path)


async def _proven_read(reads: VerifiedReads, path: str) -> web.Response:
    client = reads.client
    try:
        body, proven, claimed_by = await reads.read(path)
    except ProvenAbsenceError as exc:
        proven = reads.witness.proven if reads.witness is not None else None
        return _answer(exc.status, exc.body, proven, client)
    except NodeApiError as exc:
        if reads.witness is None:  # --no-verify: the node's refusal, as it said it
            return _answer(exc.status, exc.body, None, client)
        return _verify_error(exc)
    except WalletError as exc:
        if reads.witness is None:  # --no-verify: nothing was to be verified
            error = {"error": {"reason": str(exc.reason), "message": exc.message}}
            return _answer(502, error, None, client)
        return _verify_error(exc)
    return _answer(200, body, proven, client, claimed_by)


def _answer(
    status: int,
    body: Any,
    proven: Proven | None,
    client: NodeClient,
    claimed_by: str | None = None,
) -> web.Response:
    response = web.json_response(body, status=status)
    if proven is not None:
        response.headers[VERIFIED_HEADER] = (
            f"height={proven.header.height} hash={proven.header.hash().hex()} node={proven.node}"
        )
    else:
        why = "" if client.verifier is not None else " reason=no-verify"
        nodes = claimed_by or ",".join(node.name for node in client.transports)
        response.headers[UNVERIFIED_HEADER] = f"node={nodes}{why}"
    return response


def _verify_error(exc: WalletError) -> web.Response:
    """No node's answer verified: the reason, never the answer (502: the nodes failed)."""
    response = web.json_response(
        {"error": {"reason": str(exc.reason), "message": exc.message}}, status=502
    )
    response.headers[VERIFY_ERROR_HEADER] = str(exc.reason)
    return response


async def _relayed(client: NodeClient, method: str, path_qs: str, body: Any = None) -> web.Response:
    """An unprovable read (or the validate POST) from the first node that answers,
    labelled with the node that served it."""

    def ask() -> tuple[str, int, Any]:
        unreachable: WalletError | None = None
        for node in client.transports:
            try:
                return node.name, 200, node.ask(method, path_qs, body)
            except NodeApiError as exc:
                return node.name, exc.status, exc.body
            except WalletError as exc:
                if exc.reason != WalletReason.NODE_UNREACHABLE:
                    return node.name, 502, {"error": {"reason": exc.reason, "message": exc.message}}
                unreachable = unreachable or exc
        assert unreachable is not None
        return "", 502, {"error": {"reason": unreachable.reason, "message": unreachable.message}}

    name, status, answer = await asyncio.to_thread(ask)
    response = web.json_response(answer, status=status)
    response.headers[UNVERIFIED_HEADER] = f"node={name}"
    return response


async def validate(request: web.Request) -> web.Response:
    """POST /apps/validate, relayed: a stateless check of a spec (nothing signed, nothing
    sent), the one write-looking call the Deploy page makes."""
    data = await request.content.read(MAX_VALIDATE_BODY + 1)
    if len(data) > MAX_VALIDATE_BODY:
        return _refusal(413, "body_too_large", f"at most {MAX_VALIDATE_BODY} bytes")
    try:
        body = json.loads(data)
    except ValueError:
        return _refusal(400, "bad_request", "the body is not JSON")
    return await _relayed(request.app[CLIENT_KEY], "POST", "/apps/validate", body)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """The block stream of the first node that takes the connection, relayed to the page
    (unverified: it only tells the page when to read again)."""
    browser = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S)
    await browser.prepare(request)
    client = request.app[CLIENT_KEY]
    async with aiohttp.ClientSession() as session:
        for node in client.transports:
            url = node.base_url.replace("http", "ws", 1) + "/ws"
            try:
                stream = await session.ws_connect(url, heartbeat=WS_HEARTBEAT_S)
            except (aiohttp.ClientError, OSError):
                continue
            async with stream:
                async for message in stream:
                    if message.type != aiohttp.WSMsgType.TEXT or browser.closed:
                        break
                    await browser.send_str(message.data)
            break
    await browser.close()
    return browser


def _refusal(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"reason": reason, "message": message}}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def local_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only this machine's browser: a Host other than 127.0.0.1/localhost (DNS rebinding)
    and any method but GET (and the validate POST) are refused."""
    host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
    if host not in LOCAL_HOSTS:
        return _refusal(403, "forbidden_host", "this dashboard answers 127.0.0.1 only")
    if request.method not in ("GET", "HEAD") and not (
        request.method == "POST" and request.path == "/apps/validate"
    ):
        return _refusal(405, "method_not_allowed", "the wallet's dashboard is read-only")
    return await handler(request)


def create_dashboard_app(client: NodeClient) -> web.Application:
    """The local dashboard over `client` (a verifying NodeClient, or one with no verifier
    for --no-verify, whose every answer is then labelled unverified)."""
    app = web.Application(middlewares=[local_only], client_max_size=MAX_VALIDATE_BODY)
    app[CLIENT_KEY] = client
    app[READS_KEY] = VerifiedReads(client)
    add_dashboard(app)  # the node's own page, files and security headers
    app.router.add_get("/ws", websocket)
    app.router.add_post("/apps/validate", validate)
    app.router.add_get("/{tail:.+}", api_read)
    return app
