"""The node's HTTP API (aiohttp): chain queries, tx submission, a block stream, metrics.

Bound to 127.0.0.1 by default. Every error is JSON `{"error": {"reason", "message"}}`
with a stable reason code; no request body, however malformed, produces a 5xx. Request
bodies are pydantic models, and `/openapi.json` is generated from the same models.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, Protocol

from aiohttp import WSCloseCode, web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field, ValidationError

from fluxchain.api.dashboard import add_dashboard
from fluxchain.api.views import (
    app_json,
    assignments_json,
    block_json,
    header_json,
    node_json,
    tx_json,
    validators_json,
)
from fluxchain.core import apps, placement
from fluxchain.core.accounts import get_account
from fluxchain.core.appspec import AppSpec, validate_json
from fluxchain.core.crypto import decode_address, encode_address
from fluxchain.core.errors import FluxError, Reason, StoreError, TxError
from fluxchain.core.nodes import get_node, get_node_by_key, is_active
from fluxchain.core.params import Tier
from fluxchain.core.pricing import RAM_UNIT_MB, compute_period_numerator, compute_price
from fluxchain.core.records import NODE, Node, NodeStatus
from fluxchain.core.tx import NodeConfirm, Tx, UptimeAttest
from fluxchain.store.chain import Chain

log = logging.getLogger("fluxchain.api")

MAX_BATCH: Final = 1_000
MAX_BODY: Final = 16 * 1024 * 1024  # a batch of MAX_BATCH txs in hex, with headroom
MAX_LIST: Final = 1_000  # items per page of /nodes and /apps
MAX_SPEC_BODY: Final = 64 * 1024  # a spec at every protocol maximum is well under this
MAX_HISTORY_BLOCKS: Final = 2_000  # blocks one history query may scan (each read from disk)
MAX_HISTORY_ITEMS: Final = 200  # newest first; enough for a page, bounded for the node
# Work one history query may do on the node's event loop (a few ms each; a block of a busy
# chain holds thousands of txs, so the block count alone does not bound it).
MAX_HISTORY_TXS: Final = 5_000
MAX_HISTORY_EVENTS: Final = 20_000


class BlockStreamItem(Protocol):
    @property
    def height(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


class StreamSubscriber(Protocol):
    @property
    def queue(self) -> asyncio.Queue[Any]: ...


class TxStatusView(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class Backend(Protocol):
    """What the API needs from the node (fluxchain.node.service.NodeService provides it)."""

    chain: Chain
    syncing: bool

    def submit(self, raw: bytes, *, from_peer: bool = False) -> Tx: ...
    def tx_status(self, tx_id: bytes) -> TxStatusView: ...
    def subscribe(self) -> StreamSubscriber: ...
    def unsubscribe(self, sub: Any) -> None: ...
    def committed_block(self, height: int) -> BlockStreamItem | None: ...
    def block_time_s(self) -> float: ...
    def tx_per_s(self) -> float: ...
    def peer_count(self) -> int: ...
    def consensus_round(self) -> int: ...
    def storage_failed(self, error: StoreError) -> None: ...
    def health(self) -> dict[str, Any]: ...
    def agent_report(self, token: str, report: dict[str, Any]) -> bool: ...
    def agent_status(self) -> dict[str, Any]: ...

    @property
    def mempool_size(self) -> tuple[int, int]: ...


class SubmitTx(BaseModel):
    """One signed tx, hex-encoded canonical bytes."""

    tx: str = Field(max_length=2 * 65_536, pattern="^[0-9a-fA-F]*$")


class SubmitBatch(BaseModel):
    """Up to 1,000 signed txs, hex-encoded."""

    txs: list[str] = Field(max_length=MAX_BATCH)


class ValidateSpec(BaseModel):
    """An app spec in its JSON form (as in a spec file), and optionally the blocks to price.

    Without `owner` the spec is checked as the wallet will sign it: with the signing
    account filled in as owner. `blocks` defaults to the spec's `expire`.
    """

    spec: dict[str, Any]
    blocks: int | None = Field(default=None, ge=1, le=2**32)


class WorkloadReport(BaseModel):
    """One workload as the agent sees it on its runtime."""

    app: str = Field(max_length=64)
    instance: int = Field(ge=0, le=1_000)
    component: str = Field(max_length=64)
    state: Literal["starting", "running", "backoff", "failed", "stopping"]
    restarts: int = Field(ge=0)
    ports: list[str] = Field(max_length=16)  # host:port the workload answers on
    message: str = Field(default="", max_length=1_000)
    # a stable code when the agent stopped it on purpose: "disk_quota_exceeded"
    reason: str = Field(default="", max_length=64)


class RuntimeCapacity(BaseModel):
    cores: int = Field(ge=0, le=1_000_000)
    ram_mb: int = Field(ge=0, le=1 << 40)
    disk_gb: int = Field(ge=0, le=1 << 40)


class AgentReport(BaseModel):
    """The agent's heartbeat: its runtime, what it can give, and every workload it runs."""

    runtime: Literal["docker", "process"]
    runtime_ok: bool
    error: str = Field(default="", max_length=1_000)
    height: int = Field(ge=0)  # last confirmed height the agent converged to
    capacity: RuntimeCapacity | None = None
    workloads: list[WorkloadReport] = Field(max_length=1_000)


# -- metrics ---------------------------------------------------------------------------------


class Metrics:
    """Prometheus gauges, one registry per node (tests run several nodes in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.height = Gauge(
            "fluxchain_height", "Height of the last committed block", registry=self.registry
        )
        self.round = Gauge(
            "fluxchain_consensus_round", "Current consensus round", registry=self.registry
        )
        self.peers = Gauge("fluxchain_peers", "Connected peers", registry=self.registry)
        self.mempool = Gauge("fluxchain_mempool_txs", "Txs in the mempool", registry=self.registry)
        self.mempool_bytes = Gauge(
            "fluxchain_mempool_bytes", "Bytes in the mempool", registry=self.registry
        )
        self.block_time = Gauge(
            "fluxchain_block_time_seconds", "Mean recent block interval", registry=self.registry
        )
        self.tps = Gauge(
            "fluxchain_tx_per_second",
            "Committed txs per second, recent blocks",
            registry=self.registry,
        )

    def refresh(self, backend: Backend) -> None:
        self.height.set(backend.chain.height)
        self.round.set(backend.consensus_round())
        self.peers.set(backend.peer_count())
        txs, size = backend.mempool_size
        self.mempool.set(txs)
        self.mempool_bytes.set(size)
        self.block_time.set(backend.block_time_s())
        self.tps.set(backend.tx_per_s())


BACKEND: Final = web.AppKey("backend", Backend)
METRICS: Final = web.AppKey("metrics", Metrics)
SOCKETS: Final = web.AppKey("sockets", set[web.WebSocketResponse])


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"reason": reason, "message": message}}, status=status)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.reason, exc.message)
    except StoreError as exc:  # this node's disk, not the request: the node stops
        request.app[BACKEND].storage_failed(exc)
        return _error(503, str(exc.reason), exc.message)
    except FluxError as exc:
        return _error(400, str(exc.reason), exc.message)
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


def _hex(text: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, str(Reason.BAD_FIELD), f"{what} is not hex") from None
    if size is not None and len(raw) != size:
        raise ApiError(400, str(Reason.BAD_FIELD), f"{what} must be {size} bytes")
    return raw


async def _json_body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, str(Reason.TOO_LARGE), "request body too large")
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "body is not valid JSON") from None


def _int_query(request: web.Request, name: str, default: int, lo: int = 0, hi: int = 2**63) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"query {name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_request", f"query {name} must be within [{lo}, {hi}]")
    return value


# -- handlers --------------------------------------------------------------------------------


async def get_status(request: web.Request) -> web.Response:
    b = request.app[BACKEND]
    chain = b.chain
    pool_txs, pool_bytes = b.mempool_size
    return web.json_response(
        {
            "chain_id": chain.params.chain_id,
            "genesis_hash": chain.genesis_hash.hex(),
            "height": chain.height,
            "latest_hash": chain.head_hash.hex(),
            "latest_time_ms": chain.head_time_ms,
            "syncing": b.syncing,
            "peers": b.peer_count(),
            "round": b.consensus_round(),
            "mempool_txs": pool_txs,
            "mempool_bytes": pool_bytes,
            "block_time_s": round(b.block_time_s(), 3),
            "tx_per_s": round(b.tx_per_s(), 1),
        }
    )


async def get_params(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND].chain.params.to_json())


async def get_health(request: web.Request) -> web.Response:
    health = request.app[BACKEND].health()
    return web.json_response(health, status=200 if health.get("healthy") else 503)


def _block_response(chain: Chain, height: int) -> web.Response:
    if not 1 <= height <= chain.height:
        raise ApiError(404, "not_found", f"no block at height {height} (head is {chain.height})")
    block = chain.get_block(height)
    txs = [Tx.decode(raw, chain.params.max_tx_bytes) for raw in block.txs]
    body = block_json(block, txs, chain.params.address_hrp)
    body["events"] = [e.to_json() for e in chain.events(height)]
    commit = chain.get_commit(height)
    body["commit"] = (
        None
        if commit is None
        else {
            "round": commit.round,
            "signers": [s[0].hex() for s in commit.signatures],
        }
    )
    return web.json_response(body)


async def get_block(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    ref = request.match_info["ref"]
    if ref == "latest":
        return _block_response(chain, chain.height)
    if ref.isdigit() and len(ref) < 20:
        return _block_response(chain, int(ref))
    height = chain.height_of(_hex(ref, "block hash", 32))
    if height is None:
        raise ApiError(404, "not_found", "no block with this hash")
    return _block_response(chain, height)


async def get_headers(request: web.Request) -> web.Response:
    """Recent headers, newest first: `?before=H&limit=N`."""
    chain = request.app[BACKEND].chain
    limit = _int_query(request, "limit", 20, 1, 100)
    before = _int_query(request, "before", chain.height + 1, 1)
    top = min(before - 1, chain.height)
    headers = [
        {**header_json(chain.get_block(h).header), "txs": len(chain.get_block(h).txs)}
        for h in range(top, max(0, top - limit), -1)
    ]
    return web.json_response({"headers": headers})


async def post_tx(request: web.Request) -> web.Response:
    body = SubmitTx.model_validate(await _json_body(request))
    tx = request.app[BACKEND].submit(_hex(body.tx, "tx"))
    return web.json_response({"id": tx.id.hex(), "status": "pending"}, status=202)


async def post_tx_batch(request: web.Request) -> web.Response:
    body = SubmitBatch.model_validate(await _json_body(request))
    backend = request.app[BACKEND]
    results: list[dict[str, Any]] = []
    for text in body.txs:
        try:
            tx = backend.submit(_hex(text, "tx"))
            results.append({"id": tx.id.hex(), "status": "pending"})
        except (TxError, ApiError) as exc:
            results.append({"error": {"reason": str(exc.reason), "message": exc.message}})
    return web.json_response({"results": results})


async def get_tx(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    chain = backend.chain
    tx_id = _hex(request.match_info["id"], "tx id", 32)
    status = backend.tx_status(tx_id).to_json()
    body: dict[str, Any] = {"id": tx_id.hex(), **status}
    if status["status"] == "confirmed":
        block = chain.get_block(status["height"])
        tx = Tx.decode(block.txs[status["index"]], chain.params.max_tx_bytes)
        body["tx"] = tx_json(tx, chain.params.address_hrp)
        body["events"] = [
            e.to_json() for e in chain.events(status["height"]) if _event_mentions(e.to_json(), tx)
        ]
    return web.json_response(body)


def _event_mentions(event: dict[str, Any], tx: Tx) -> bool:
    """Events that concern a tx's sender or the objects its payload names."""
    payload = tx.payload
    names = {getattr(payload, "name", None), getattr(getattr(payload, "spec", None), "name", None)}
    ids = {getattr(payload, "node_id", b"").hex(), tx.id[:20].hex()}
    return bool((event.get("name") in names - {None}) or (event.get("node_id") in ids - {""}))


async def get_account_view(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    hrp = chain.params.address_hrp
    address = decode_address(request.match_info["address"], hrp)
    account = get_account(chain.state, address)
    return web.json_response(
        {
            "address": encode_address(address, hrp),
            "balance": account.balance,
            "nonce": account.nonce,
        }
    )


def _node_or_404(chain: Chain, ref: str) -> Node:
    raw = _hex(ref, "node id")
    node = get_node(chain.state, raw) if len(raw) == 20 else None
    if node is None and len(raw) == 33:
        node = get_node_by_key(chain.state, raw)
    if node is None:
        raise ApiError(404, "not_found", f"no node {ref}")
    return node


async def get_nodes(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    q = request.query
    out = []
    for _, node in chain.state.items(NODE):
        if q.get("tier") and node.tier.name.lower() != q["tier"].lower():
            continue
        if q.get("status") and node.status.name.lower() != q["status"].lower():
            continue
        if q.get("country") and node.country != q["country"].upper():
            continue
        out.append(node_json(node, chain.params.address_hrp))
        if len(out) >= MAX_LIST:
            break
    return web.json_response({"nodes": out})


async def get_node_view(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    node = _node_or_404(chain, request.match_info["id"])
    body = node_json(node, chain.params.address_hrp)
    body["assignments"] = assignments_json(chain.state, node.node_id, chain.params.address_hrp)
    return web.json_response(body)


async def get_node_assignments(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    node = _node_or_404(chain, request.match_info["id"])
    return web.json_response(
        {
            "node_id": node.node_id.hex(),
            "height": chain.height,
            "status": node.status.name.lower(),
            "assignments": assignments_json(chain.state, node.node_id, chain.params.address_hrp),
        }
    )


async def get_validators(request: web.Request) -> web.Response:
    return web.json_response(validators_json(request.app[BACKEND].chain.validators()))


async def get_apps(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    names = [key[1:].decode() for key in chain.state.keys(apps.APP)][:MAX_LIST]
    hrp = chain.params.address_hrp
    return web.json_response({"apps": [app_json(chain.state, name, hrp) for name in names]})


async def get_app_view(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    status = app_json(chain.state, request.match_info["name"], chain.params.address_hrp)
    if status is None:
        raise ApiError(404, "not_found", f"no app {request.match_info['name']!r}")
    return web.json_response(status)


async def get_network_stats(request: web.Request) -> web.Response:
    chain = request.app[BACKEND].chain
    return web.json_response(placement.network_stats(chain.state))


# -- queries for the dashboard (read-only) -------------------------------------------------------


async def post_app_validate(request: web.Request) -> web.Response:
    """The chain's own spec rules and the wallet's price: stateless, writes nothing."""
    if request.content_length is not None and request.content_length > MAX_SPEC_BODY:
        raise ApiError(413, str(Reason.TOO_LARGE), f"a spec body is at most {MAX_SPEC_BODY} bytes")
    body = ValidateSpec.model_validate(await _json_body(request))
    params = request.app[BACKEND].chain.params
    spec_json = dict(body.spec)
    owner_filled = not spec_json.get("owner")
    if owner_filled:
        # Stand-in for the signing account `flux-wallet` writes in (validity and price do
        # not depend on which address owns the app, only that it is one of this network).
        spec_json["owner"] = encode_address(bytes(20), params.address_hrp)
    problems = validate_json(spec_json, params, params.address_hrp)
    out: dict[str, Any] = {
        "valid": not problems,
        "owner_filled_by_wallet": owner_filled,
        "problems": [{"path": p.path, "code": str(p.code), "message": p.message} for p in problems],
        "price": None,
    }
    if not problems:
        spec = AppSpec.from_json(spec_json, params.address_hrp)
        blocks = body.blocks or spec.expire
        out.update(
            name=spec.name,
            instances=spec.instances,
            blocks=blocks,
            # the same figures `flux-wallet app price` prints (wallet.builders.quote)
            per_instance_period=-(-compute_period_numerator(spec, params) // RAM_UNIT_MB),
            price_period=params.app_price_period,
            price=compute_price(spec, params, blocks),
        )
    return web.json_response(out)


async def get_network_tiers(request: web.Request) -> web.Response:
    """Per tier: nodes in each state, and the confirmed nodes' cores, RAM and storage as
    placement counts them (the benchmark a node confirmed with when it became active), so
    the tiers add up to /network/stats."""
    chain = request.app[BACKEND].chain
    tiers: dict[str, dict[str, Any]] = {
        tier.name.lower(): {
            "nodes_by_status": dict.fromkeys((s.name.lower() for s in NodeStatus), 0),
            "cores": 0,
            "ram_mb": 0,
            "storage_gb": 0,
        }
        for tier in Tier
    }
    for _, node in chain.state.items(NODE):
        row = tiers[node.tier.name.lower()]
        row["nodes_by_status"][node.status.name.lower()] += 1
        load = placement.get_load(chain.state, node.node_id) if is_active(node) else None
        if load is not None:
            row["cores"] += load.cores
            row["ram_mb"] += load.ram_mb
            row["storage_gb"] += load.disk_gb
    return web.json_response({"tiers": tiers})


def _history_window(request: web.Request, chain: Chain, default: int) -> range:
    """Heights to scan, newest first: the last `?blocks=N` blocks."""
    blocks = _int_query(request, "blocks", default, 1, MAX_HISTORY_BLOCKS)
    return range(chain.height, max(0, chain.height - blocks), -1)


async def get_node_history(request: web.Request) -> web.Response:
    """A node's recent life: its confirms (with benchmark), uptime reports about it, payouts
    and every other event naming it, newest first, from the last `?blocks=N` blocks (fewer
    when the work budget runs out first: `from_height` says where the scan stopped)."""
    chain = request.app[BACKEND].chain
    node = _node_or_404(chain, request.match_info["id"])
    node_hex = node.node_id.hex()
    confirms: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    txs_read = events_read = 0
    from_height = chain.height + 1
    for height in _history_window(request, chain, 200):
        full = min(len(confirms), len(reports), len(events)) >= MAX_HISTORY_ITEMS
        if full or txs_read >= MAX_HISTORY_TXS or events_read >= MAX_HISTORY_EVENTS:
            break
        from_height = height
        block_events = chain.events(height)
        events_read += len(block_events)
        for event in block_events:
            body = event.to_json()
            if body.get("node_id") == node_hex and len(events) < MAX_HISTORY_ITEMS:
                events.append({"height": height, **body})
        block_txs = chain.get_block(height).txs
        txs_read += len(block_txs)
        for raw in block_txs:
            tx = Tx.decode(raw, chain.params.max_tx_bytes)
            payload = tx.payload
            if isinstance(payload, NodeConfirm) and payload.node_id == node.node_id:
                if len(confirms) < MAX_HISTORY_ITEMS:
                    bench = payload.benchmark
                    confirms.append(
                        {
                            "height": height,
                            "tx": tx.id.hex(),
                            "version": payload.version,
                            "benchmark": {name: getattr(bench, name) for name in bench.__slots__},
                        }
                    )
            elif isinstance(payload, UptimeAttest) and len(reports) < MAX_HISTORY_ITEMS:
                reports.extend(
                    {
                        "height": height,
                        "epoch": payload.epoch,
                        "checker": payload.node_id.hex(),
                        "up": report.up,
                        "latency_ms": report.latency_ms,
                    }
                    for report in payload.reports
                    if report.target == node.node_id
                )
    return web.json_response(
        {
            "node_id": node_hex,
            "from_height": from_height,
            "to_height": chain.height,
            "confirms": confirms,
            "uptime_reports": reports[:MAX_HISTORY_ITEMS],
            "events": events,
        }
    )


async def get_app_events(request: web.Request) -> web.Response:
    """Events naming an app (registered, assigned, under-placed, …) from the last
    `?blocks=N` blocks, newest first; never earlier than its registration, and no more
    than the work budget allows."""
    chain = request.app[BACKEND].chain
    name = request.match_info["name"]
    app = apps.get_app(chain.state, name)
    if app is None:
        raise ApiError(404, "not_found", f"no app {name!r}")
    events: list[dict[str, Any]] = []
    events_read = 0
    for height in _history_window(request, chain, 1_000):
        if height < app.registered_height or len(events) >= MAX_HISTORY_ITEMS:
            break
        if events_read >= MAX_HISTORY_EVENTS:
            break
        block_events = chain.events(height)
        events_read += len(block_events)
        events.extend(
            {"height": height, **body}
            for body in (e.to_json() for e in block_events)
            if body.get("name") == name
        )
    return web.json_response({"name": name, "events": events[:MAX_HISTORY_ITEMS]})


async def get_search(request: web.Request) -> web.Response:
    """What `?q=` names: a block (height or hash), a tx, an account, a node (id, key or
    endpoint) or an app. Every match is listed; an empty list when nothing matches."""
    chain = request.app[BACKEND].chain
    query = request.query.get("q", "").strip()
    if not query or len(query) > 200:
        raise ApiError(400, "bad_request", "query q must be 1..200 characters")
    results: list[dict[str, str]] = []
    if query.isdigit() and len(query) < 20 and 1 <= int(query) <= chain.height:
        results.append({"kind": "block", "ref": str(int(query))})
    raw = _maybe_hex(query)
    if raw is not None and len(raw) == 32:
        if chain.height_of(raw) is not None:
            results.append({"kind": "block", "ref": raw.hex()})
        if chain.tx_location(raw) is not None:
            results.append({"kind": "tx", "ref": raw.hex()})
    if raw is not None and len(raw) in (20, 33):
        node = get_node(chain.state, raw) if len(raw) == 20 else get_node_by_key(chain.state, raw)
        if node is not None:
            results.append({"kind": "node", "ref": node.node_id.hex()})
    hrp = chain.params.address_hrp
    if query.lower().startswith(hrp + "1"):
        try:
            address = decode_address(query, hrp)
        except FluxError:
            pass  # not an address of this network: the other kinds may still match
        else:
            results.append({"kind": "account", "ref": encode_address(address, hrp)})
    if apps.get_app(chain.state, query.lower()) is not None:
        results.append({"kind": "app", "ref": query.lower()})
    for _, node in chain.state.items(NODE):
        if node.endpoint == query:
            results.append({"kind": "node", "ref": node.node_id.hex()})
    return web.json_response({"query": query, "results": results})


def _maybe_hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.refresh(request.app[BACKEND])
    return web.Response(
        body=generate_latest(metrics.registry), content_type="text/plain", charset="utf-8"
    )


async def post_agent_report(request: web.Request) -> web.Response:
    """The agent's heartbeat (bearer token from HOME/agent_token)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send the agent token as 'Authorization: Bearer …'")
    body = AgentReport.model_validate(await _json_body(request))
    if not request.app[BACKEND].agent_report(token.strip(), body.model_dump()):
        raise ApiError(401, "unauthorized", "agent token does not match this node's")
    return web.json_response({"accepted": True})


async def get_agent(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND].agent_status())


async def get_ws(request: web.Request) -> web.StreamResponse:
    """Committed blocks with their events, as JSON messages; `?from=H` replays from H first."""
    backend = request.app[BACKEND]
    start = _int_query(request, "from", 0, 0)
    ws = web.WebSocketResponse(heartbeat=30)
    sub = backend.subscribe()
    # The client only listens; reading its side is how a close (or a dead peer) is noticed
    # while this handler waits for the next block.
    reader: asyncio.Task[None] | None = None
    try:
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        reader = asyncio.create_task(_until_closed(ws))
        next_height = start or backend.chain.height + 1
        while not ws.closed:
            # Replay what was committed before (or while) we subscribed, then go live.
            while next_height <= backend.chain.height:
                item = backend.committed_block(next_height)
                if item is None:
                    break
                await ws.send_json(item.to_json())
                next_height += 1
            getter = asyncio.create_task(sub.queue.get())
            await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            live = getter.result()
            if live is None:
                await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")
                break
            if live.height >= next_height:
                await ws.send_json(live.to_json())
                next_height = live.height + 1
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if reader is not None:
            reader.cancel()
        backend.unsubscribe(sub)
        request.app[SOCKETS].discard(ws)
    return ws


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:  # messages from a stream client carry nothing; ignore them
        pass


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# -- the app ---------------------------------------------------------------------------------

ROUTES: Final[list[tuple[str, str, Any, str, type[BaseModel] | None]]] = [
    ("GET", "/status", get_status, "Chain id, height, latest hash, peers, syncing", None),
    ("GET", "/params", get_params, "The chain's parameters (from genesis)", None),
    ("GET", "/health", get_health, "This node's health (503 when unhealthy)", None),
    ("GET", "/blocks", get_headers, "Recent headers, newest first (?before=H&limit=N)", None),
    ("GET", "/blocks/{ref}", get_block, "A block by height, hash, or 'latest'", None),
    ("POST", "/txs", post_tx, "Submit one signed tx", SubmitTx),
    ("POST", "/txs/batch", post_tx_batch, "Submit up to 1,000 signed txs", SubmitBatch),
    ("GET", "/txs/{id}", get_tx, "A tx's status: pending, confirmed, rejected, unknown", None),
    ("GET", "/accounts/{address}", get_account_view, "Balance and nonce of an address", None),
    ("GET", "/nodes", get_nodes, "Nodes (?tier=&status=&country=)", None),
    ("GET", "/nodes/{id}", get_node_view, "A node by id or node key, with its assignments", None),
    ("GET", "/nodes/{id}/assignments", get_node_assignments, "What a node runs", None),
    ("GET", "/validators", get_validators, "The validator set signing the next block", None),
    ("GET", "/apps", get_apps, "Registered apps", None),
    ("GET", "/apps/{name}", get_app_view, "An app: spec, escrow, expiry, instances", None),
    ("GET", "/apps/{name}/events", get_app_events, "Recent events naming an app", None),
    ("POST", "/apps/validate", post_app_validate, "Check a spec and price it", ValidateSpec),
    ("GET", "/nodes/{id}/history", get_node_history, "Confirms, uptime, payouts", None),
    ("GET", "/search", get_search, "What ?q= names: block, tx, account, node, app", None),
    ("GET", "/network/tiers", get_network_tiers, "Per tier: nodes by state, resources", None),
    ("GET", "/network/stats", get_network_stats, "Totals: cores, RAM, storage, countries…", None),
    ("POST", "/agent/report", post_agent_report, "The node daemon's heartbeat", AgentReport),
    ("GET", "/agent", get_agent, "The node daemon: runtime, capacity, workloads", None),
    ("GET", "/ws", get_ws, "WebSocket of committed blocks and events (?from=H)", None),
    ("GET", "/metrics", get_metrics, "Prometheus metrics", None),
    ("GET", "/openapi.json", get_openapi, "This document", None),
]


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1, request bodies from the pydantic models that validate them."""
    paths: dict[str, Any] = {}
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for method, path, handler, summary, model in ROUTES:
        op: dict[str, Any] = {
            "summary": summary,
            "operationId": handler.__name__,
            "responses": {"200": {"description": "ok"}, "400": error, "404": error},
        }
        params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if model is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": model.model_json_schema()}},
            }
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "fluxchain node API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "reason": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            }
        },
    }


async def _close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")


def create_app(backend: Backend) -> web.Application:
    """The API application for one node."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app[BACKEND] = backend
    app[METRICS] = Metrics()
    app[SOCKETS] = set()
    app.on_shutdown.append(_close_sockets)
    for method, path, handler, _, _ in ROUTES:
        app.router.add_route(method, path, handler)
    add_dashboard(app)
    return app
