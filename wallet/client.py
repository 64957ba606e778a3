"""A small synchronous client for the node's HTTP API (fluxchain/api/server.py ROUTES).

Why the standard library (`urllib.request`) and not aiohttp: a wallet command makes a
handful of sequential requests and exits; a blocking client with a per-request timeout
is the whole need, starts faster than an event loop plus an aiohttp session, and keeps
the wallet's dependencies to what DESIGN.md §10 lists for it. Waiting for a confirmation
polls `GET /txs/{id}` (one cheap request per poll interval, with a deadline) instead of
holding a websocket open: the poll survives a node restart and needs no async code.

Every failure is a WalletError: `node_unreachable` when no HTTP answer comes (refused,
DNS, timeout), `NodeApiError` with the node's own reason code for an error body, and
`node_error` for an answer that is not the API's JSON.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from fluxchain.core.params import Params
from wallet.errors import NodeApiError, WalletError, WalletReason

DEFAULT_NODE: Final = "http://127.0.0.1:26700"
DEFAULT_TIMEOUT_S: Final = 10.0
MAX_RESPONSE: Final = 32 * 1024 * 1024  # /nodes and /apps pages are capped at 1,000 items
USER_AGENT: Final = "flux-wallet/0.1"


@dataclass(frozen=True, slots=True)
class Account:
    address: str
    balance: int
    nonce: int


class NodeClient:
    """Typed calls to one node's API."""

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
        self._params: Params | None = None

    # -- the API ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._object("GET", "/status")

    def params(self) -> Params:
        """The chain's Params (cached for the life of this client)."""
        if self._params is None:
            raw = self._object("GET", "/params")
            try:
                self._params = Params.from_json(raw)
            except Exception as exc:
                raise WalletError(
                    WalletReason.NODE_ERROR, f"the node's /params are not readable: {exc}"
                ) from None
        return self._params

    def account(self, address: str) -> Account:
        body = self._object("GET", f"/accounts/{_quote(address)}")
        try:
            return Account(str(body["address"]), int(body["balance"]), int(body["nonce"]))
        except (KeyError, ValueError, TypeError):
            raise WalletError(WalletReason.NODE_ERROR, "malformed /accounts answer") from None

    def submit(self, raw_tx: bytes) -> str:
        """POST /txs; the tx id (hex) once the node accepted it into its mempool."""
        body = self._object("POST", "/txs", {"tx": raw_tx.hex()})
        return str(body.get("id", ""))

    def tx(self, tx_id: str) -> dict[str, Any]:
        return self._object("GET", f"/txs/{_quote(tx_id)}")

    def nodes(
        self, tier: str | None = None, status: str | None = None, country: str | None = None
    ) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("tier", tier), ("status", status), ("country", country)) if v}
        path = "/nodes" + ("?" + urllib.parse.urlencode(query) if query else "")
        return _list(self._object("GET", path), "nodes")

    def node(self, ref: str) -> dict[str, Any]:
        return self._object("GET", f"/nodes/{_quote(ref)}")

    def node_assignments(self, ref: str) -> list[dict[str, Any]]:
        """The app instances the chain placed on a node."""
        return _list(self._object("GET", f"/nodes/{_quote(ref)}/assignments"), "assignments")

    def apps(self) -> list[dict[str, Any]]:
        return _list(self._object("GET", "/apps"), "apps")

    def app(self, name: str) -> dict[str, Any]:
        return self._object("GET", f"/apps/{_quote(name)}")

    def network_stats(self) -> dict[str, Any]:
        return self._object("GET", "/network/stats")

    # -- transport -------------------------------------------------------------------------

    def _object(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        answer = self._request(method, path, body)
        if not isinstance(answer, dict):
            raise WalletError(WalletReason.NODE_ERROR, f"{path}: expected a JSON object")
        return answer

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        if data is not None:
            headers["content-type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return _decode(response.read(MAX_RESPONSE + 1), url)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc, url) from None
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
    except ValueError:
        raise WalletError(WalletReason.NODE_ERROR, f"{url}: the answer is not JSON") from None


def _api_error(exc: urllib.error.HTTPError, url: str) -> WalletError:
    try:
        body = json.loads(exc.read(64 * 1024))
        error = body["error"]
        return NodeApiError(exc.code, str(error["reason"]), str(error["message"]))
    except (ValueError, KeyError, TypeError, OSError):
        return WalletError(WalletReason.NODE_ERROR, f"{url}: HTTP {exc.code} {exc.reason}")


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
