"""The node's HTTP API (aiohttp): the app factory and its error handling.

Bound to 127.0.0.1 by default. Every error is JSON `{"error": {"reason", "message"}}`
with a stable reason code; no request body, however malformed, produces a 5xx. The
package's parts:

- `routes.py`: the handlers and the route table (and `/openapi.json` from it);
- `models.py`: request bodies as pydantic models, which also give the document its schemas;
- `bodies.py`: bodies as sent (no content coding), their caps and their bounded parse;
- `queries.py`: every answer, computed from the node's read-only view;
- `view.py`: the protocols the node implements (`NodeView`, `Backend`);
- `render.py`: JSON renderings of chain objects; `metrics.py`: `/metrics`;
- `dashboard.py`: the static dashboard at `/`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web
from pydantic import ValidationError

from fluxchain.api.bodies import check_encoding
from fluxchain.api.budget import COSTS, EXEMPT, GROUP_ONLY, ReadBudget
from fluxchain.api.directory import Directory
from fluxchain.api.metrics import AdmissionRefusals, Metrics, ReadRefusals, SignatureChecks
from fluxchain.api.models import MAX_BODY
from fluxchain.api.queries import RETRY_AFTER_S, ApiError, status_of
from fluxchain.api.routes import (
    BACKEND,
    BUDGET,
    DIRECTORY,
    GATE,
    METRICS,
    PROXIES,
    ROUTES,
    SOCKETS,
    on_this_host,
    read_client,
)
from fluxchain.api.shedding import AdmissionGate, AdmitLimits
from fluxchain.api.view import Backend
from fluxchain.core.errors import FluxError, StoreError
from fluxchain.dashboard import add_dashboard
from p2p.netgroup import Network

log = logging.getLogger("fluxchain.api")


def _error(
    status: int,
    reason: str,
    message: str,
    extra: dict[str, Any] | None = None,
    retry_after: int | None = None,
) -> web.Response:
    body = {"error": {"reason": reason, "message": message}, **(extra or {})}
    wait = RETRY_AFTER_S if retry_after is None else str(retry_after)
    headers = {"Retry-After": wait} if status == 429 else None
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure as a JSON error with a stable reason; a storage failure stops the node."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.reason, exc.message, exc.extra, exc.retry_after)
    except StoreError as exc:  # this node's disk, not the request: the node stops
        request.app[BACKEND].storage_failed(exc)
        return _error(503, str(exc.reason), exc.message)
    except FluxError as exc:
        return _error(status_of(exc), str(exc.reason), exc.message)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _error(400, "bad_request", f"{where}: {first['msg']}")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(
                exc.status, "not_found" if exc.status == 404 else "bad_request", exc.reason
            )
        raise
    except Exception:
        log.exception("api handler failed path=%s", request.path)
        return _error(500, "internal", "internal error; see the node's log")


@web.middleware
async def identity_bodies_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """No route takes a coded body (api/bodies.py): 415 before any of it is read."""
    check_encoding(request)
    return await handler(request)


@web.middleware
async def reads_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request but the exempt ones spends its client group's read budget and the
    node's (api/budget.py): 429 `rate_limited` before its handler runs."""
    resource = request.match_info.route.resource
    path = "" if resource is None else resource.canonical
    route = (request.method, path)
    if route not in EXEMPT and not on_this_host(request):
        client = read_client(request)
        request.app[BUDGET].take(client, COSTS.get(path, 1), node_wide=route not in GROUP_ONLY)
    return await handler(request)


async def _close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")


def create_app(
    backend: Backend,
    admit_limits: AdmitLimits | None = None,
    trusted_proxies: tuple[Network, ...] = (),
    read_budget: ReadBudget | None = None,
) -> web.Application:
    """The API application for one node (`admit_limits`: bounds of its tx admission;
    `trusted_proxies`: the networks whose X-Forwarded-For names the client;
    `read_budget`: its clients' read budget, ReadLimits' defaults if not given)."""
    app = web.Application(
        middlewares=[errors_middleware, reads_middleware, identity_bodies_middleware],
        client_max_size=MAX_BODY,
        # Bodies as sent: every byte bound counts bytes on the wire (api/bodies.py).
        handler_args={"auto_decompress": False},
    )
    app[BACKEND] = backend
    app[METRICS] = Metrics()
    app[SOCKETS] = set()
    app[PROXIES] = trusted_proxies
    app[DIRECTORY] = Directory()
    gate = app[GATE] = AdmissionGate(admit_limits)
    budget = app[BUDGET] = read_budget or ReadBudget()
    app[METRICS].registry.register(AdmissionRefusals(lambda: gate.refusals))
    app[METRICS].registry.register(ReadRefusals(lambda: budget.refusals))
    app[METRICS].registry.register(SignatureChecks(backend.signature_counts))
    app.on_shutdown.append(_close_sockets)
    for method, path, handler, _, _ in ROUTES:
        app.router.add_route(method, path, handler)
    add_dashboard(app)
    return app
