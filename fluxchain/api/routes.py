"""The API's routes: each handler parses its request, calls one query (or one action of
the node), and wraps the answer. No handler computes an answer itself: the reading is in
`queries.py`, over the node's read-only view.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from aiohttp import WSCloseCode, web
from prometheus_client import generate_latest
from pydantic import BaseModel

from fluxchain.api import queries
from fluxchain.api.bodies import (
    SUBMIT_BATCH_SEPARATORS,
    SUBMIT_TX_SEPARATORS,
    check_size,
    parse_json,
    tx_body_cap,
)
from fluxchain.api.budget import EXEMPT, ReadBudget, ReplaySlot, is_loopback
from fluxchain.api.directory import Directory
from fluxchain.api.forwarded import client_host, is_trusted
from fluxchain.api.metrics import Metrics
from fluxchain.api.models import (
    ERROR_SCHEMA,
    MAX_BATCH,
    MAX_BODY,
    MAX_OWNER_BODY,
    MAX_SPEC_BODY,
    AgentReport,
    BlockProof,
    LightHeaderAnswer,
    OwnerRequestBody,
    StateAnswerProof,
    SubmitBatch,
    SubmitTx,
    TxInclusionProof,
    ValidateSpec,
    ValidatorsAnswer,
)
from fluxchain.api.queries import RETRY_AFTER_S, ApiError, parse_hex, status_of
from fluxchain.api.shedding import AdmissionGate
from fluxchain.api.view import Backend
from fluxchain.core.errors import Reason, TxError, TxHeldError
from fluxchain.core.owner_request import (
    AgentCallError,
    Method,
    OwnerRequest,
    OwnerRequestError,
    Refusal,
)
from p2p.netgroup import Network

PROVE_WAIT_S: Final = 5.0  # a consensus round at most: then the client tries another node
PROVE_RETRY_S: Final = 0.01
BACKEND: Final = web.AppKey("backend", Backend)
METRICS: Final = web.AppKey("metrics", Metrics)
SOCKETS: Final = web.AppKey("sockets", set[web.WebSocketResponse])
# The answers derived from the node and app tables at the committed head (api/directory.py).
DIRECTORY: Final = web.AppKey("directory", Directory)
GATE: Final = web.AppKey("gate", AdmissionGate)  # every tx the API admits goes through it
# Every request but the exempt spends it (api/budget.py).
BUDGET: Final = web.AppKey("budget", ReadBudget)
# The reverse proxies whose X-Forwarded-For names the client (config api_trusted_proxies).
PROXIES: Final = web.AppKey("proxies", tuple[Network, ...])
OPERATE_TIMEOUT_S: Final = 120.0  # a redeploy pulls an image: minutes at worst
MAX_LOG_STREAM: Final = 16 * 1024 * 1024  # bytes of log one request may carry
FIRST_CHUNK_WAIT_S: Final = 1.0  # a follow of a quiet log answers its status by then
# Blocks a /ws replay sends between two turns of the event loop: an empty block costs
# ~90 us to read and render (red23b 4), so 16 hold the loop ~1.5 ms at a time.
REPLAY_BLOCKS_A_TURN: Final = 16
# Seconds a live stream the node cut off (it fell SUBSCRIBER_QUEUE blocks behind) has to
# take its close frame, behind what it has not read, before its connection is dropped.
CUT_CLOSE_S: Final = 10.0
# Bytes of a block stream's socket send buffer (twice this in the kernel): at most ~512 KiB
# in flight, so a stream (a replay too) goes at most ~5 MB/s on a 100 ms path, ~2 MB/s on
# a 250 ms one: far more than a live stream's blocks need; a replay's pace is bounded by
# it (ReadLimits.replay_s says what that means for a long replay).
STREAM_SEND_BUFFER: Final = 256 * 1024
MAX_AGENT_MESSAGE: Final = 1024 * 1024  # a log chunk (64 KiB) or a stats answer, with room


async def _json_body(request: web.Request, max_body: int = MAX_BODY) -> Any:
    check_size(request.content_length, max_body)
    raw = await request.read()
    check_size(len(raw), max_body)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
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


def _blocks_query(request: web.Request, default: int) -> int:
    """`?blocks=N`: how many recent blocks a history query scans."""
    return _int_query(request, "blocks", default, 1, queries.MAX_HISTORY_BLOCKS)


def _view(request: web.Request) -> Backend:
    return request.app[BACKEND]


def _prove(request: web.Request) -> bool:
    """`?prove=1`: answer with a proof (docs/light-client.md, §4)."""
    text = request.query.get("prove", "0")
    if text not in ("0", "1", "true", "false"):
        raise ApiError(400, "bad_request", "query prove must be 1 or 0")
    return text in ("1", "true")


async def _proven(request: web.Request, answer: Callable[[bool], Any]) -> web.Response:
    """The answer; with `?prove=1`, once the state tree is at the head again if a block is
    executing (it is for a few milliseconds to a round: proofs are only against a header
    whose commit this node holds)."""
    if not _prove(request):
        return web.json_response(answer(False))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROVE_WAIT_S
    while True:
        try:
            return web.json_response(answer(True))
        except ApiError as exc:
            if exc.reason != queries.STATE_PENDING or loop.time() >= deadline:
                raise
        await asyncio.sleep(PROVE_RETRY_S)


# -- reads -----------------------------------------------------------------------------------


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(queries.status(_view(request)))


async def get_genesis(request: web.Request) -> web.Response:
    """The genesis this node runs: a wallet may trust it explicitly on first use
    (`flux-wallet trust --from-node`), after comparing its hash with another source."""
    chain = _view(request).chain
    return web.json_response({"hash": chain.genesis_hash.hex(), "genesis": chain.genesis.to_json()})


async def get_params(request: web.Request) -> web.Response:
    return web.json_response(_view(request).chain.params.to_json())


async def get_health(request: web.Request) -> web.Response:
    health = _view(request).health()
    return web.json_response(health, status=200 if health.get("healthy") else 503)


async def get_block(request: web.Request) -> web.Response:
    """A block; `?prove=1` adds the canonical bytes of its txs and events (BlockProof)."""
    body = queries.block(_view(request), request.match_info["ref"], prove=_prove(request))
    return web.json_response(body)


async def get_headers(request: web.Request) -> web.Response:
    """Recent headers, newest first: `?before=H&limit=N`."""
    limit = _int_query(request, "limit", 20, 1, 100)
    before = _int_query(request, "before", 0, 1) if "before" in request.query else None
    return web.json_response(queries.headers(_view(request), before, limit))


async def get_light_header(request: web.Request) -> web.Response:
    """A header with its commit in full, as a light client verifies it."""
    return web.json_response(queries.light_header(_view(request), request.match_info["ref"]))


async def get_tx(request: web.Request) -> web.Response:
    tx_id = request.match_info["id"]
    return web.json_response(queries.tx(_view(request), tx_id, _prove(request)))


async def get_account_view(request: web.Request) -> web.Response:
    address = request.match_info["address"]
    return await _proven(request, lambda prove: queries.account(_view(request), address, prove))


async def get_nodes(request: web.Request) -> web.Response:
    q = request.query
    after = q.get("after", "")
    if len(after) > 40:  # the reason parse_hex gives one that is not hex: one per field
        raise ApiError(400, str(Reason.BAD_FIELD), "query after must be a node id")
    body = queries.nodes(
        _view(request),
        request.app[DIRECTORY],
        q.get("tier", ""),
        q.get("status", ""),
        q.get("country", ""),
        after,
    )
    return web.json_response(body)


async def get_node_view(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    return await _proven(request, lambda prove: queries.node(_view(request), ref, prove))


async def get_node_assignments(request: web.Request) -> web.Response:
    return web.json_response(queries.node_assignments(_view(request), request.match_info["id"]))


async def get_node_history(request: web.Request) -> web.Response:
    """A node's recent confirms, uptime reports and events (`?blocks=N`)."""
    blocks = _blocks_query(request, 200)
    body = queries.node_history(_view(request), request.match_info["id"], blocks)
    return web.json_response(body)


async def get_validators(request: web.Request) -> web.Response:
    """The set signing the next block, or (`?height=H`) the one that signed block H."""
    height = _int_query(request, "height", 0, 1) if "height" in request.query else None
    return web.json_response(queries.validators(_view(request), height))


async def get_apps(request: web.Request) -> web.Response:
    """Registered apps, one page (`?after=NAME` for the page after `next`)."""
    after = request.query.get("after", "")
    if len(after) > 64:
        raise queries.ApiError(400, "bad_request", "query after must be an app name")
    return web.json_response(queries.app_list(_view(request), request.app[DIRECTORY], after))


async def get_app_view(request: web.Request) -> web.Response:
    """An app; without a proof, each instance also carries its hosting agent's report
    (`agent`), and `unreachable` lists the hosts that did not answer."""
    name = request.match_info["name"]
    if _prove(request):
        return await _proven(request, lambda prove: queries.app(_view(request), name, prove))
    body = queries.app(_view(request), name)
    await _view(request).add_instance_reports(body)
    return web.json_response(body)


async def get_agent_app(request: web.Request) -> web.Response:
    """This node's agent's report on one app's workloads: public, no host paths."""
    name = request.match_info["name"]
    if len(name) > 64:
        raise ApiError(400, "bad_request", "an app name is at most 64 characters")
    return web.json_response(_view(request).agent_app_report(name))


async def get_app_secrets(request: web.Request) -> web.Response:
    """An app's sealed secrets (ciphertext and sealed keys only; `?prove=1` with proofs)."""
    name = request.match_info["name"]
    if _prove(request):
        return await _proven(
            request, lambda prove: queries.app_secrets(_view(request), name, prove)
        )
    return web.json_response(queries.app_secrets(_view(request), name))


async def get_app_events(request: web.Request) -> web.Response:
    """Recent events naming an app (`?blocks=N`)."""
    blocks = _blocks_query(request, 1_000)
    body = queries.app_events(_view(request), request.match_info["name"], blocks)
    return web.json_response(body)


async def post_app_validate(request: web.Request) -> web.Response:
    """The chain's own spec rules and the wallet's price: stateless, writes nothing."""
    if request.content_length is not None and request.content_length > MAX_SPEC_BODY:
        raise ApiError(413, str(Reason.TOO_LARGE), f"a spec body is at most {MAX_SPEC_BODY} bytes")
    body = ValidateSpec.model_validate(await _json_body(request))
    params = _view(request).chain.params
    return web.json_response(queries.validate_spec(params, body.spec, body.blocks))


async def get_network_stats(request: web.Request) -> web.Response:
    return web.json_response(queries.network_stats(_view(request), request.app[DIRECTORY]))


async def get_network_tiers(request: web.Request) -> web.Response:
    return web.json_response(queries.network_tiers(_view(request), request.app[DIRECTORY]))


async def get_search(request: web.Request) -> web.Response:
    """What `?q=` names: a block, a tx, an account, a node or an app."""
    query = request.query.get("q", "").strip()
    return web.json_response(queries.search(_view(request), request.app[DIRECTORY], query))


async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.refresh(_view(request))
    return web.Response(
        body=generate_latest(metrics.registry), content_type="text/plain", charset="utf-8"
    )


async def get_agent(request: web.Request) -> web.Response:
    return web.json_response(_view(request).agent_status())


# -- actions ---------------------------------------------------------------------------------


def _submit_tx(raw: bytes) -> SubmitTx:
    return parse_json(raw, SubmitTx, SUBMIT_TX_SEPARATORS)


def _submit_batch(raw: bytes) -> SubmitBatch:
    return parse_json(raw, SubmitBatch, SUBMIT_BATCH_SEPARATORS)


def _tx_body_cap(request: web.Request, txs: int) -> int:
    return tx_body_cap(_view(request).chain.params.max_tx_bytes, txs)


async def post_tx(request: web.Request) -> web.Response:
    gate = request.app[GATE]
    client = _client(request)
    async with gate.admit(request, _submit_tx, _tx_body_cap(request, 1), client) as body:
        await gate.turn(request)
        try:
            tx = _view(request).submit(parse_hex(body.tx, "tx"), client=client)
        except TxHeldError as held:
            return web.json_response(_held(held), status=202)
    return web.json_response({"id": tx.id.hex(), "status": "pending"}, status=202)


def _peer_host(request: web.Request) -> str | None:
    transport = request.transport
    peer = None if transport is None else transport.get_extra_info("peername")
    return peer[0] if isinstance(peer, tuple) and peer else None


def client_host_of(request: web.Request) -> str | None:
    """The address of `request`'s client: the socket's peer address, or, on a connection
    from a reverse proxy the operator trusts, the client that proxy names
    (api/forwarded.py); from anyone else X-Forwarded-For is ignored: any client writes it."""
    proxies = request.app[PROXIES]
    return client_host(_peer_host(request), request.headers.getall("X-Forwarded-For", ()), proxies)


def on_this_host(request: web.Request) -> bool:
    """Whether `request`'s client is on the node's host, judged on the socket's peer
    address only: loopback, and not a trusted proxy forwarding another client (an
    address a proxy names, loopback or not, may come from anywhere)."""
    peer = _peer_host(request)
    proxies = request.app[PROXIES]
    forwarding = bool(request.headers.getall("X-Forwarded-For", ())) and is_trusted(peer, proxies)
    return is_loopback(peer) and not forwarding


def read_client(request: web.Request) -> str:
    """The read budget's key for `request`'s client: its address group, or its own
    address if the operator lists it (api/budget.py, `api_trusted_clients`)."""
    host = client_host_of(request)
    return request.app[BUDGET].client_of(host, _view(request).client_origin(host))


def _client(request: web.Request) -> str:
    """The origin of the txs `request` posts: its client's address (`client_host_of`), as
    the node groups it (`Backend.client_origin`)."""
    return _view(request).client_origin(client_host_of(request))


def _held(held: TxHeldError) -> dict[str, Any]:
    """The answer for a tx refused for now but held to be offered again: it may commit,
    so its nonce is not free (docs/wallet.md §3)."""
    return {
        "id": held.tx_id.hex(),
        "status": "held",
        "reason": str(held.reason),
        "message": held.message,
    }


async def post_tx_batch(request: web.Request) -> web.Response:
    """Up to MAX_BATCH txs, admitted through the node's gate (api/shedding.py): in short
    turns of the loop, one request at a time; 429 `busy` when too many wait."""
    gate = request.app[GATE]
    backend = _view(request)
    client = _client(request)
    results: list[dict[str, Any]] = []
    overloaded = 0
    cap = _tx_body_cap(request, MAX_BATCH)
    async with gate.admit(request, _submit_batch, cap, client) as body:
        for text in body.txs:
            await gate.turn(request)
            try:
                tx = backend.submit(parse_hex(text, "tx"), client=client)
                results.append({"id": tx.id.hex(), "status": "pending"})
            except TxHeldError as held:
                results.append(_held(held))
            except (TxError, ApiError) as exc:
                overloaded += isinstance(exc, TxError) and status_of(exc) == 429
                results.append({"error": {"reason": str(exc.reason), "message": exc.message}})
    # Every tx turned away for overload: the whole batch is "not now" (per-tx reasons kept).
    if overloaded and overloaded == len(results):
        return web.json_response(
            {"results": results}, status=429, headers={"Retry-After": RETRY_AFTER_S}
        )
    return web.json_response({"results": results})


async def post_agent_report(request: web.Request) -> web.Response:
    """The agent's heartbeat (bearer token from HOME/agent_token)."""
    token = _agent_token(request)
    # Anyone can reach the API: only this node's agent gets its body parsed.
    if not _view(request).agent_token_ok(token):
        raise ApiError(401, "unauthorized", "agent token does not match this node's")
    body = AgentReport.model_validate(await _json_body(request))
    if not _view(request).agent_report(token, body.model_dump()):
        raise ApiError(401, "unauthorized", "agent token does not match this node's")
    return web.json_response({"accepted": True})


def _agent_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send the agent token as 'Authorization: Bearer …'")
    return token.strip()


async def get_agent_control(request: web.Request) -> web.StreamResponse:
    """The control channel this node's agent holds open (a websocket, agent token)."""
    backend = _view(request)
    if not backend.agent_token_ok(_agent_token(request)):
        raise ApiError(401, "unauthorized", "agent token does not match this node's")
    ws = web.WebSocketResponse(heartbeat=10, max_msg_size=MAX_AGENT_MESSAGE)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        await backend.agent_control(ws)
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


async def post_app_operate(request: web.Request) -> web.StreamResponse:
    """An owner-signed request (core/owner_request.py) carried out by this node's agent:
    `logs` streams NDJSON lines; `stats`, `restart`, `redeploy` answer one JSON body."""
    backend = _view(request)
    try:
        # Its signature is checked once parsed: the body is bounded to what it can need.
        owner_request = OwnerRequest.from_json(await _json_body(request, MAX_OWNER_BODY))
        if owner_request.app != request.match_info["name"]:
            raise OwnerRequestError(Refusal.WRONG_APP, "the request names another app")
        instances = backend.check_owner_request(owner_request)
    except OwnerRequestError as exc:
        raise ApiError(exc.status, str(exc.reason), exc.message) from None
    remaining_s = max(0.0, owner_request.expiry_ms / 1000 - time.time())
    command = {
        "method": str(owner_request.method),
        "app": owner_request.app,
        "instances": instances,
        "tail": owner_request.tail,
        "follow": owner_request.follow,
        "timeout_s": remaining_s,
    }
    calls = backend.agent_call(command)
    if owner_request.method is not Method.LOGS:
        try:
            async with asyncio.timeout(min(remaining_s, OPERATE_TIMEOUT_S)):
                results = [item async for item in calls]
        except AgentCallError as exc:
            raise ApiError(_agent_status(exc), exc.reason, exc.message) from None
        except TimeoutError:
            raise ApiError(504, "agent_timeout", "the agent did not finish in time") from None
        finally:
            await calls.aclose()
        return web.json_response(
            {"app": owner_request.app, "method": command["method"], "results": results}
        )
    return await _stream_logs(request, calls, remaining_s)


async def _stream_logs(
    request: web.Request, calls: AsyncGenerator[dict[str, Any], None], remaining_s: float
) -> web.StreamResponse:
    """The agent's log chunks as NDJSON, until it is done, the request expires, or
    MAX_LOG_STREAM bytes went out; the last line says which (`end`). The answer starts
    with the first chunk, or after FIRST_CHUNK_WAIT_S (a quiet log being followed): an
    agent that cannot run the command is still a plain error status."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    sent = 0
    end: dict[str, Any] = {"end": "done"}
    pending = asyncio.ensure_future(anext(calls))
    try:
        async with asyncio.timeout(remaining_s):
            await asyncio.wait({pending}, timeout=FIRST_CHUNK_WAIT_S)
            while True:
                if not pending.done() and not response.prepared:
                    await response.prepare(request)
                try:
                    item = await pending
                except StopAsyncIteration:
                    break
                if not response.prepared:
                    await response.prepare(request)
                line = json.dumps(item).encode() + b"\n"
                sent += len(line)
                if sent > MAX_LOG_STREAM:
                    end = {"end": "too_large", "message": f"stopped after {MAX_LOG_STREAM} bytes"}
                    break
                await response.write(line)
                pending = asyncio.ensure_future(anext(calls))
    except AgentCallError as exc:
        if not response.prepared:
            raise ApiError(_agent_status(exc), exc.reason, exc.message) from None
        end = {"end": "error", "error": {"reason": exc.reason, "message": exc.message}}
    except TimeoutError:
        end = {"end": "expired", "message": "the request expired"}
    except ConnectionResetError:
        return response  # the owner hung up: the agent is told to stop (below)
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, AgentCallError):
                await pending
        await calls.aclose()
    if not response.prepared:
        await response.prepare(request)
    await response.write(json.dumps(end).encode() + b"\n")
    await response.write_eof()
    return response


async def get_volume_device(request: web.Request) -> web.Response:
    """This node's Syncthing device for replicated volumes, signed with its node key."""
    device = _view(request).volume_device()
    if device is None:
        raise ApiError(404, "no_volume_device", "this node's agent has not reported Syncthing")
    return web.json_response(device)


async def get_ws(request: web.Request) -> web.StreamResponse:
    """Committed blocks with their events, as JSON messages; `?from=H` replays from H first."""
    backend = _view(request)
    start = _int_query(request, "from", 0, 0)
    base = backend.chain.base_height
    if 0 < start < base:  # a state-synced node holds no block below its base
        raise ApiError(410, "pruned", f"no block below {base}: this node was state-synced")
    # A replay holds one of its client group's replays, and the node's, until it has
    # caught up with the head (api/budget.py): refused 429 before the upgrade.
    # A replay still running after `replay_s` (a client that reads slowly holds its slot),
    # or whose slot a group holding none took, is closed 1013 with where to resume.
    # Only a request that will be upgraded takes a slot: on a full node taking one closes
    # another group's replay, and a plain GET (refused 400 by `prepare`) would close it
    # for no stream at all (rev25api2 1).
    ws = web.WebSocketResponse(heartbeat=30)
    replaying = contextlib.ExitStack()
    deadline: float | None = None
    slot: ReplaySlot | None = None
    if 0 < start <= backend.chain.height and not on_this_host(request) and ws.can_prepare(request):
        budget = request.app[BUDGET]
        slot = replaying.enter_context(budget.replay(read_client(request)))
        deadline = asyncio.get_running_loop().time() + budget.limits.replay_s
    sub = backend.subscribe()
    # The client only listens; reading its side is how a close (or a dead peer) is noticed
    # while this handler waits for the next block: its end puts the end-of-stream marker
    # in the queue (so no task per block waits on both).
    reader: asyncio.Task[None] | None = None
    next_height = start or backend.chain.height + 1
    try:
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        _bound_send_buffer(request)
        reader = asyncio.create_task(_until_closed(ws))
        reader.add_done_callback(lambda _: _end_of_stream(sub.queue))
        while not ws.closed:
            # Replay what was committed before (or while) we subscribed, then go live.
            replayed = await _replay(request, ws, backend, next_height, deadline, slot)
            if replayed is None:
                break
            next_height = replayed
            replaying.close()  # caught up: live from here
            deadline, slot = None, None
            # Live, a client that stopped reading leaves a send waiting for its socket to
            # drain, for ever, and the end-of-stream marker of the node's cut (its queue
            # full, SUBSCRIBER_QUEUE blocks behind) untaken: the cut drops the connection
            # unless the stream is closed within CUT_CLOSE_S (api25 2). Not while
            # replaying: a replay reads the blocks queued meanwhile from the store, and
            # has its own deadline.
            sub.on_cut = functools.partial(_drop_later, request)
            live = await sub.queue.get()
            if live is None and reader.done():
                break
            if live is None:
                await _cut(request, ws, next_height)
                break
            if live.height == next_height:
                await ws.send_json(live.to_json())
                next_height += 1
            # A block further on: the one before it left the queue of a cut subscriber
            # for the end marker; the replay at the loop's top sends it from the store.
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        replaying.close()
        if reader is not None:
            reader.cancel()
        backend.unsubscribe(sub)
        request.app[SOCKETS].discard(ws)
    return ws


async def _replay(
    request: web.Request,
    ws: web.WebSocketResponse,
    backend: Backend,
    next_height: int,
    deadline: float | None,
    slot: ReplaySlot | None = None,
) -> int | None:
    """Send the committed blocks from `next_height` to the head: the next height to send,
    or None once the socket is closed because `deadline` (loop time) passed first, or
    `slot` was taken by a group that held none (api/budget.py)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline) as timeout:

            def stop() -> None:
                # A timeout that has fired (its task told to cancel, whether or not it has
                # run since) cannot be rescheduled, and needs not be: this replay closes
                # anyway (rev25api2 2).
                if not timeout.expired():
                    timeout.reschedule(loop.time())

            if slot is not None:
                slot.on_preempt = stop
                if slot.preempted:  # while the upgrade was answered
                    stop()
            try:
                while next_height <= backend.chain.height:
                    item = backend.committed_block(next_height)
                    if item is None:
                        break
                    await ws.send_json(item.to_json())
                    next_height += 1
                    if next_height % REPLAY_BLOCKS_A_TURN == 0:
                        # send_json yields only when the socket's buffers are full: a
                        # client that reads as fast as we write would hold the loop
                        # (consensus runs on it) for the whole replay (red23b 4)
                        await asyncio.sleep(0)
            finally:
                # A slot taken later (while this closes, up to CUT_CLOSE_S) has nothing
                # left to stop: the timeout is over, and rescheduling it would raise in
                # the taker's request.
                if slot is not None:
                    slot.on_preempt = None
    except TimeoutError:
        why = "slot taken by a network with none" if slot and slot.preempted else "too slow"
        message = f"replay {why}; resume with from={next_height}"
        _drop_later(request)  # a client that stopped reading cannot take the close
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=message.encode())
        return None
    return next_height


async def _cut(request: web.Request, ws: web.WebSocketResponse, next_height: int) -> None:
    """Close a live stream the node cut off (1013, with the height to resume from)."""
    _drop_later(request)  # cut while replaying: not armed yet
    message = f"too slow; resume with from={next_height}"
    with contextlib.suppress(ConnectionError):
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=message.encode())


def _bound_send_buffer(request: web.Request) -> None:
    """Cap the kernel's send buffer of a block stream at `STREAM_SEND_BUFFER`: with the
    system's autotuning (up to 4 MiB on loopback) a client that stopped reading is sent
    thousands of blocks into it before a send waits, and the node's cut (by blocks behind)
    never comes; capped, a stalled stream holds at most twice it (the kernel doubles it)
    and aiohttp's writer limit (256 KiB) with one message."""
    transport = request.transport
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)


def _drop_later(request: web.Request) -> None:
    """Drop `request`'s connection in `CUT_CLOSE_S`, whatever it has not read: a stream
    the node cut off has that long to take its close frame, queued behind what its client
    has not read. A connection closed before is not touched."""
    transport = request.transport
    if transport is not None:
        asyncio.get_running_loop().call_later(CUT_CLOSE_S, transport.abort)


def _end_of_stream(queue: asyncio.Queue[Any]) -> None:
    # A full queue needs no marker: the node cuts its subscriber at its next block, and a
    # send to the closed socket ends the handler before that.
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(None)


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:  # messages from a stream client carry nothing; ignore them
        pass


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# (method, path, handler, summary, request body model)
ROUTES: Final[list[tuple[str, str, Any, str, type[BaseModel] | None]]] = [
    ("GET", "/status", get_status, "Chain id, height, latest hash, peers, syncing", None),
    ("GET", "/params", get_params, "The chain's parameters (from genesis)", None),
    ("GET", "/genesis", get_genesis, "This node's genesis and its hash", None),
    ("GET", "/health", get_health, "This node's health (503 when unhealthy)", None),
    ("GET", "/blocks", get_headers, "Recent headers, newest first (?before=H&limit=N)", None),
    (
        "GET",
        "/blocks/{ref}",
        get_block,
        "A block by height, hash or 'latest', commit in full",
        None,
    ),
    (
        "GET",
        "/headers/{ref}",
        get_light_header,
        "A header with its commit, for light clients",
        None,
    ),
    (
        "POST",
        "/txs",
        post_tx,
        "Submit one signed tx (202: `pending`, or `held`: refused for now with `reason`, "
        "kept to be offered again, may still commit)",
        SubmitTx,
    ),
    (
        "POST",
        "/txs/batch",
        post_tx_batch,
        "Submit up to 1,000 signed txs (each `pending`, `held` or an error)",
        SubmitBatch,
    ),
    (
        "GET",
        "/txs/{id}",
        get_tx,
        "A tx's status: pending, held, evicted, confirmed, rejected or unknown "
        "(?prove=1: its inclusion proof)",
        None,
    ),
    ("GET", "/accounts/{address}", get_account_view, "Balance and nonce (?prove=1)", None),
    (
        "GET",
        "/nodes",
        get_nodes,
        "Nodes, 1,000 a page (?tier=&status=&country=&after=NODE_ID, `next`)",
        None,
    ),
    ("GET", "/nodes/{id}", get_node_view, "A node by id or key, its assignments (?prove=1)", None),
    ("GET", "/nodes/{id}/assignments", get_node_assignments, "What a node runs", None),
    ("GET", "/validators", get_validators, "The set signing the next block (?height=H)", None),
    ("GET", "/apps", get_apps, "Registered apps", None),
    ("GET", "/apps/{name}", get_app_view, "An app: spec, escrow, instances (?prove=1)", None),
    ("GET", "/apps/{name}/events", get_app_events, "Recent events naming an app", None),
    (
        "POST",
        "/apps/{name}/operate",
        post_app_operate,
        "An owner-signed request: logs (NDJSON stream), stats, restart, redeploy",
        OwnerRequestBody,
    ),
    ("GET", "/apps/{name}/secrets", get_app_secrets, "An app's sealed secrets (?prove=1)", None),
    ("POST", "/apps/validate", post_app_validate, "Check a spec and price it", ValidateSpec),
    ("GET", "/nodes/{id}/history", get_node_history, "Confirms, uptime, payouts", None),
    ("GET", "/search", get_search, "What ?q= names: block, tx, account, node, app", None),
    ("GET", "/network/tiers", get_network_tiers, "Per tier: nodes by state, resources", None),
    ("GET", "/network/stats", get_network_stats, "Totals: cores, RAM, storage, countries…", None),
    ("POST", "/agent/report", post_agent_report, "The node daemon's heartbeat", AgentReport),
    ("GET", "/agent", get_agent, "The node daemon: runtime, capacity, workloads", None),
    ("GET", "/agent/apps/{name}", get_agent_app, "This node's agent on one app's instances", None),
    ("GET", "/agent/control", get_agent_control, "The agent's control channel (WebSocket)", None),
    ("GET", "/volumes/device", get_volume_device, "The agent's Syncthing, node-signed", None),
    ("GET", "/ws", get_ws, "WebSocket of committed blocks and events (?from=H)", None),
    ("GET", "/metrics", get_metrics, "Prometheus metrics", None),
    ("GET", "/openapi.json", get_openapi, "This document", None),
]


_PROVE: Final = {
    "name": "prove",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["0", "1"]},
    "description": "1: add `proof` to the answer (docs/light-client.md, §4)",
}
# Query parameters and the model of the answer, where a route has them.
QUERIES: Final[dict[str, list[dict[str, Any]]]] = {
    "/accounts/{address}": [_PROVE],
    "/nodes/{id}": [_PROVE],
    "/apps/{name}": [_PROVE],
    "/txs/{id}": [_PROVE],
    "/blocks/{ref}": [_PROVE],
    "/validators": [
        {
            "name": "height",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
            "description": "the set that signed block `height` (while the history keeps it)",
        }
    ],
}
ANSWERS: Final[dict[str, type[BaseModel]]] = {
    "/headers/{ref}": LightHeaderAnswer,
    "/validators": ValidatorsAnswer,
}
PROOFS: Final[dict[str, type[BaseModel]]] = {
    "/accounts/{address}": StateAnswerProof,
    "/nodes/{id}": StateAnswerProof,
    "/apps/{name}": StateAnswerProof,
    "/txs/{id}": TxInclusionProof,
    "/blocks/{ref}": BlockProof,
}

# Tx posts answered 429 with Retry-After: the node sheds them when busy (api/shedding.py).
_BUSY_429: Final = "busy (the node's tx admission queue is full), or every tx refused for"
SHED: Final = {
    "/txs": f"{_BUSY_429} overload and not held (mempool_full, sender_limit): retry after "
    "Retry-After",
    "/txs/batch": f"{_BUSY_429} overload (each tx keeps its reason): retry after Retry-After",
}


# Requests refused by the read budget (api/budget.py), from clients off the node's host.
_RATE_LIMITED: Final = (
    "rate_limited: your address group, or every client, is over its read budget; retry "
    "after Retry-After"
)
_READ_429: Final = {
    "/ws": f"{_RATE_LIMITED}; or replay_limited: too many ?from= replays at once",
}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 of `ROUTES`, request bodies from the pydantic models that validate them,
    and the answers with proofs from the models that describe them."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
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
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ] + QUERIES.get(path, [])
        if parameters:
            op["parameters"] = parameters
        answer = ANSWERS.get(path)
        if answer is not None:
            op["responses"]["200"] = _answer(answer, schemas)
        proof = PROOFS.get(path)
        if proof is not None:
            ok = _answer(proof, schemas)
            ok["description"] = "ok; with ?prove=1 the answer carries `proof`"
            ref = ok["content"]["application/json"]["schema"]
            ok["content"]["application/json"]["schema"] = {
                "type": "object",
                "properties": {"proof": ref},
                "additionalProperties": True,
            }
            op["responses"]["200"] = ok
        if method == "POST":
            op["responses"]["413"] = {**error, "description": "too_large: over the route's cap"}
            op["responses"]["415"] = {
                **error,
                "description": "unsupported_encoding: a Content-Encoding (send it uncompressed)",
            }
        if method == "POST" and path in SHED:
            op["responses"]["429"] = {**error, "description": SHED[path]}
        elif (method, path) not in EXEMPT:
            op["responses"]["429"] = {**error, "description": _READ_429.get(path, _RATE_LIMITED)}
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
        "components": {"schemas": schemas},
    }


def _answer(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """A 200 response whose schema is `model`'s, filed under components/schemas."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"description": "ok", "content": {"application/json": {"schema": ref}}}


def _agent_status(exc: AgentCallError) -> int:
    """The HTTP status of an agent's refusal: `busy` (too many operations of the app at
    once) is the owner's to retry later (429); anything else is the host's failure (502)."""
    return 429 if exc.reason == Refusal.BUSY else 502
