"""The API's answers, computed from the node's read-only view (`view.NodeView`).

Each query takes the view and already-parsed request values, and returns the JSON body
(or raises `ApiError` with a stable reason). Nothing here writes, and nothing here
knows HTTP beyond the status code an error carries: `routes.py` parses requests and
wraps answers. History queries are bounded by a work budget, since they run on the
node's event loop.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any, Final

from fluxchain.api.directory import Directory, page_after
from fluxchain.api.render import (
    account_json,
    app_json,
    assignments_json,
    block_json,
    commit_json,
    header_json,
    node_json,
    node_view_json,
    tx_json,
    validators_json,
)
from fluxchain.api.view import ChainReader, NodeView
from fluxchain.core import apps, placement, secrets
from fluxchain.core.appspec import AppSpec, validate_json
from fluxchain.core.crypto import decode_address, encode_address, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.errors import FluxError, Reason
from fluxchain.core.history import validators_at
from fluxchain.core.merkle import merkle_path
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.params import Params
from fluxchain.core.pricing import RAM_UNIT_MB, compute_period_numerator, compute_price
from fluxchain.core.records import VALIDATORS, Node
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.statetree import StateProof, StateTree
from fluxchain.core.tx import NodeConfirm, Tx, UptimeAttest
from fluxchain.core.views import event_concerns_tx

Json = dict[str, Any]

MAX_LIST: Final = 1_000  # items per page of /nodes and /apps
MAX_HISTORY_BLOCKS: Final = 2_000  # blocks one history query may scan (each read from disk)
MAX_HISTORY_ITEMS: Final = 200  # newest first; enough for a page, bounded for the node
# Work one history query may do on the node's event loop (a few ms each; a block of a busy
# chain holds thousands of txs, so the block count alone does not bound it).
MAX_HISTORY_TXS: Final = 5_000
MAX_HISTORY_EVENTS: Final = 20_000


STATE_PENDING: Final = "state_pending"  # a block is executing: its state is not final yet


class ApiError(Exception):
    """A request the API refuses: the HTTP status, a stable reason code, a sentence, and
    what else the body carries (`extra`: the proof of an absence); a 429 says when to
    retry (`retry_after` seconds, RETRY_AFTER_S if not given)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        extra: Json | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.extra = extra or {}
        self.retry_after = retry_after


# Refusals that say "not now" rather than "never": the node is full, not the tx wrong. They
# answer 429 with Retry-After (about one block), so that a client backs off and tries again.
OVERLOAD: Final = frozenset({Reason.MEMPOOL_FULL, Reason.SENDER_LIMIT})
RETRY_AFTER_S: Final = "1"


def status_of(exc: FluxError) -> int:
    """The HTTP status of a refused request: 429 for overload, 400 for the request's fault."""
    return 429 if exc.reason in OVERLOAD else 400


def _state(chain: ChainReader) -> State:
    """The state as the head's block committed it. While a block executes (a proposal, an
    import) its writes are pending in the state and its commit may never come: a plain
    answer must not show them (proven answers wait for the commit instead)."""
    return chain.state.committed_view()


def parse_hex(text: str, what: str, size: int | None = None) -> bytes:
    """`text` as bytes, of `size` bytes if given; ApiError(bad_field) otherwise."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, str(Reason.BAD_FIELD), f"{what} is not hex") from None
    if size is not None and len(raw) != size:
        raise ApiError(400, str(Reason.BAD_FIELD), f"{what} must be {size} bytes")
    return raw


def _maybe_hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


# -- the node and the chain ------------------------------------------------------------------


def status(view: NodeView) -> Json:
    """Chain id, head, and this node's figures (peers, round, mempool, rates)."""
    chain = view.chain
    pool_txs, pool_bytes = view.mempool_size
    return {
        "chain_id": chain.params.chain_id,
        "genesis_hash": chain.genesis_hash.hex(),
        "height": chain.height,
        "latest_hash": chain.head_hash.hex(),
        "latest_time_ms": chain.head_time_ms,
        "syncing": view.syncing,
        "peers": view.peer_count(),
        "round": view.consensus_round(),
        "mempool_txs": pool_txs,
        "mempool_bytes": pool_bytes,
        "block_time_s": round(view.block_time_s(), 3),
        "tx_per_s": round(view.tx_per_s(), 1),
    }


def block(view: NodeView, ref: str, *, prove: bool = False) -> Json:
    """A block by height, hash or "latest", with its txs, events and its commit in full;
    with `prove`, the canonical bytes of its txs and events (`proof`), which a light client
    checks against the header's tx and events roots."""
    chain = view.chain
    height = _height_of(chain, ref)
    found = chain.get_block(height)
    txs = [Tx.decode(raw, chain.params.max_tx_bytes) for raw in found.txs]
    body = block_json(found, txs, chain.params.address_hrp)
    body["events"] = [e.to_json() for e in chain.events(height)]
    commit = chain.get_commit(height)
    body["commit"] = None if commit is None else commit_json(commit)
    if prove:
        body["proof"] = {
            "txs_raw": [raw.hex() for raw in found.txs],
            "events_raw": [pack(e.to_fields()).hex() for e in chain.events(height)],
        }
    return body


def light_header(view: NodeView, ref: str) -> Json:
    """A header (by height, hash or "latest") with the commit that finalized it, in full:
    what a light client verifies (`/validators?height=` gives the set that signed it)."""
    chain = view.chain
    height = _height_of(chain, ref)
    header = chain.get_block(height).header
    commit = chain.get_commit(height)
    if commit is None:
        raise ApiError(404, "not_found", f"this node holds no commit for block {height}")
    return {
        "height": height,
        "hash": header.hash().hex(),
        "header": header_json(header),
        "header_raw": pack(header.to_fields()).hex(),
        "commit": commit_json(commit),
        "commit_raw": pack(commit.to_fields()).hex(),
    }


def _height_of(chain: ChainReader, ref: str) -> int:
    if ref == "latest":
        height = chain.height
    elif ref.isascii() and ref.isdigit() and len(ref) < 20:
        # isascii: isdigit() is also true of Unicode digits ("²", "①") that int() refuses
        height = int(ref)
    else:
        found = chain.height_of(parse_hex(ref, "block hash", 32))
        if found is None:
            raise ApiError(404, "not_found", "no block with this hash")
        height = found
    if not 1 <= height <= chain.height:
        raise ApiError(404, "not_found", f"no block at height {height} (head is {chain.height})")
    if height < chain.base_height:  # a state-synced node (docs/storage.md)
        raise ApiError(
            410, "pruned", f"no block below {chain.base_height}: this node was state-synced"
        )
    return height


def headers(view: NodeView, before: int | None, limit: int) -> Json:
    """Up to `limit` headers below height `before` (default: from the head), newest first."""
    chain = view.chain
    top = min((chain.height + 1 if before is None else before) - 1, chain.height)
    return {
        "headers": [
            {**header_json(chain.get_block(h).header), "txs": len(chain.get_block(h).txs)}
            for h in range(top, max(chain.base_height - 1, top - limit), -1)
        ]
    }


def tx(view: NodeView, tx_id_hex: str, prove: bool = False) -> Json:
    """A tx's status; a confirmed one with its body and the events that concern it, and
    with `prove` the Merkle path from its id to its block's tx root, under that block's
    header and commit."""
    chain = view.chain
    tx_id = parse_hex(tx_id_hex, "tx id", 32)
    state = view.tx_status(tx_id).to_json()
    body: Json = {"id": tx_id.hex(), **state}
    if state["status"] == "confirmed":
        found = chain.get_block(state["height"])
        confirmed = Tx.decode(found.txs[state["index"]], chain.params.max_tx_bytes)
        body["tx"] = tx_json(confirmed, chain.params.address_hrp)
        events = chain.events(state["height"])
        shown = [i for i, e in enumerate(events) if event_concerns_tx(e.to_json(), confirmed)]
        body["events"] = [events[i].to_json() for i in shown]
        if prove:
            body["proof"] = _inclusion_proof(chain, state["height"], state["index"])
            body["proof"]["events"] = _event_proofs([pack(e.to_fields()) for e in events], shown)
    return body


def _inclusion_proof(chain: ChainReader, height: int, index: int) -> Json:
    found = chain.get_block(height)
    ids = [sha256(raw) for raw in found.txs]
    return {
        **_header_proof(chain, height),
        "tx_raw": found.txs[index].hex(),
        "index": index,
        "count": len(ids),
        "path": [h.hex() for h in merkle_path(ids, index)],
    }


def _event_proofs(leaves: list[bytes], shown: list[int]) -> list[Json]:
    """Each shown event's canonical bytes and its Merkle path to the header's events_root
    (whose leaves are the block's events, encoded, in order)."""
    return [
        {
            "raw": leaves[i].hex(),
            "index": i,
            "count": len(leaves),
            "path": [h.hex() for h in merkle_path(leaves, i)],
        }
        for i in shown
    ]


def _header_proof(chain: ChainReader, height: int) -> Json:
    header = chain.get_block(height).header
    commit = chain.get_commit(height)
    if commit is None:
        raise ApiError(503, STATE_PENDING, f"this node holds no commit for block {height} yet")
    return {
        "height": height,
        "header_raw": pack(header.to_fields()).hex(),
        "commit_raw": pack(commit.to_fields()).hex(),
    }


class _TreeReads:
    """A state backing over the state tree that remembers every key read, so that the
    answer built over it can be proven key by key (present or absent)."""

    def __init__(self, tree: StateTree) -> None:
        self.tree = tree
        self.read: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self.tree.get(key)
        self.read[key] = value
        return value

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise ApiError(400, "not_provable", "a listing of a whole table cannot be proven")


def _proof_hex(proof: StateProof) -> list[str]:
    """A state proof's wire form (`StateProof.to_fields`), each part in hex."""
    return [part.hex() for part in (proof.other_leaf, *proof.levels)]


def proven(chain: ChainReader, render: Callable[[State], Json | None], missing: str) -> Json:
    """`render` over the committed state at the head, with a proof of every state key it
    read against the head's state root, and the head's header and commit
    (docs/light-client.md, §4). `render` returning None is an absence: a 404 that
    carries its proof.

    The state tree holds a block's writes while the block is executed and voted on; in
    that window the head's root is not the tree's, and this raises STATE_PENDING (the
    route retries)."""
    height = chain.height
    if height == 0:
        raise ApiError(503, STATE_PENDING, "no block is committed yet: nothing to prove against")
    header = chain.get_block(height).header
    if chain.tree.root != header.state_root:
        raise ApiError(503, STATE_PENDING, "a block is executing; ask again")
    reads = _TreeReads(chain.tree)
    body = render(new_state(reads))
    # The set that signs the next block, proven too: a light client that keeps it with this
    # header verifies the next one by the adjacent rule even across a change of set.
    reads.get(VALIDATORS)
    proof = {
        **_header_proof(chain, height),
        "entries": [
            {
                "key": key.hex(),
                "value": None if value is None else value.hex(),
                "proof": _proof_hex(chain.tree.prove(key)),
            }
            for key, value in reads.read.items()
        ],
    }
    if body is None:
        raise ApiError(404, "not_found", missing, {"proof": proof})
    return {**body, "proof": proof}


def account(view: NodeView, address_text: str, prove: bool = False) -> Json:
    """Balance and nonce of an address of this network (`prove`: with its proof)."""
    chain = view.chain
    hrp = chain.params.address_hrp
    address = decode_address(address_text, hrp)
    if prove:
        return proven(chain, lambda state: account_json(state, address, hrp), "")
    return account_json(_state(chain), address, hrp)


def validators(view: NodeView, height: int | None = None) -> Json:
    """The validator set signing the next block, or (`height`) the set that signed block
    `height`, while the chain's history still holds it."""
    chain = view.chain
    if height is None:
        return validators_json(chain.validators())
    if not 1 <= height <= chain.height:
        raise ApiError(404, "not_found", f"no block at height {height} (head is {chain.height})")
    found = validators_at(chain.state.committed_view(), height)
    if found is None:
        raise ApiError(404, "not_found", f"the set that signed block {height} is pruned")
    return {"height": height, **validators_json(found)}


# -- nodes -----------------------------------------------------------------------------------


def _node_or_404(chain: ChainReader, ref: str) -> Node:
    raw = parse_hex(ref, "node id")
    node = get_node(_state(chain), raw) if len(raw) == 20 else None
    if node is None and len(raw) == 33:
        node = get_node_by_key(_state(chain), raw)
    if node is None:
        raise ApiError(404, "not_found", f"no node {ref}")
    return node


def nodes(
    view: NodeView, directory: Directory, tier: str, status: str, country: str, after: str = ""
) -> Json:
    """Registered nodes, filtered by tier, status and country ("" for any), one page of
    `MAX_LIST` by node id after the id `after`; `next` is the `after` of the next page
    (null on the last). A lookup in the head's index, not a walk of the node table."""
    chain = view.chain
    after_id = parse_hex(after, "after") if after else b""
    head = directory.at(chain)
    matching = head.by_filter.get((tier.lower(), status.lower(), country.upper()), [])
    start = bisect.bisect_right(matching, after_id)
    # The current records: the index may be carried over from an earlier head.
    page = [node for node_id in matching[start : start + MAX_LIST] if (node := head.node(node_id))]
    hrp = chain.params.address_hrp
    more = len(matching) > start + MAX_LIST
    return {
        "nodes": [head.render(node, lambda n: node_json(n, hrp)) for node in page],
        "next": matching[start + MAX_LIST - 1].hex() if more else None,
    }


def node(view: NodeView, ref: str, prove: bool = False) -> Json:
    """A node by id or node key, with its assignments (`prove`: with their proof)."""
    chain = view.chain
    raw = parse_hex(ref, "node id")
    hrp = chain.params.address_hrp
    if prove:
        return proven(chain, lambda state: node_view_json(state, raw, hrp), f"no node {ref}")
    body = node_view_json(_state(chain), raw, hrp)
    if body is None:
        raise ApiError(404, "not_found", f"no node {ref}")
    return body


def node_assignments(view: NodeView, ref: str) -> Json:
    """What a node runs, at the current height."""
    chain = view.chain
    found = _node_or_404(chain, ref)
    return {
        "node_id": found.node_id.hex(),
        "height": chain.height,
        "status": found.status.name.lower(),
        "assignments": assignments_json(_state(chain), found.node_id, chain.params.address_hrp),
    }


def network_stats(view: NodeView, directory: Directory) -> Json:
    """Totals of the network: cores, RAM, storage, countries, operators."""
    state = _state(view.chain)
    return placement.network_stats(state, directory.at(view.chain).by_status)


def network_tiers(view: NodeView, directory: Directory) -> Json:
    """Per tier: nodes in each state, and the confirmed nodes' cores, RAM and storage as
    placement counts them (the benchmark a node confirmed with when it became active), so
    the tiers add up to /network/stats."""
    return directory.at(view.chain).tiers


def _history_window(chain: ChainReader, blocks: int) -> range:
    """Heights to scan, newest first: the last `blocks` blocks."""
    return range(chain.height, max(0, chain.height - blocks), -1)


class _NodeHistory:
    """What a node-history scan has gathered, and the work it has done."""

    def __init__(self, node: Node, head_height: int) -> None:
        self.node = node
        self.node_hex = node.node_id.hex()
        self.confirms: list[Json] = []
        self.reports: list[Json] = []
        self.events: list[Json] = []
        self.txs_read = 0
        self.events_read = 0
        self.from_height = head_height + 1

    def done(self) -> bool:
        full = min(len(self.confirms), len(self.reports), len(self.events)) >= MAX_HISTORY_ITEMS
        return full or self.txs_read >= MAX_HISTORY_TXS or self.events_read >= MAX_HISTORY_EVENTS

    def scan(self, chain: ChainReader, height: int) -> None:
        self.from_height = height
        block_events = chain.events(height)
        self.events_read += len(block_events)
        for event in block_events:
            body = event.to_json()
            if body.get("node_id") == self.node_hex and len(self.events) < MAX_HISTORY_ITEMS:
                self.events.append({"height": height, **body})
        block_txs = chain.get_block(height).txs
        self.txs_read += len(block_txs)
        for raw in block_txs:
            self._scan_tx(height, Tx.decode(raw, chain.params.max_tx_bytes))

    def _scan_tx(self, height: int, tx: Tx) -> None:
        payload = tx.payload
        node_id = self.node.node_id
        if isinstance(payload, NodeConfirm) and payload.node_id == node_id:
            if len(self.confirms) < MAX_HISTORY_ITEMS:
                bench = payload.benchmark
                self.confirms.append(
                    {
                        "height": height,
                        "tx": tx.id.hex(),
                        "version": payload.version,
                        "benchmark": {name: getattr(bench, name) for name in bench.__slots__},
                    }
                )
        elif isinstance(payload, UptimeAttest) and len(self.reports) < MAX_HISTORY_ITEMS:
            self.reports.extend(
                {
                    "height": height,
                    "epoch": payload.epoch,
                    "checker": payload.node_id.hex(),
                    "up": report.up,
                    "latency_ms": report.latency_ms,
                }
                for report in payload.reports
                if report.target == node_id
            )


def node_history(view: NodeView, ref: str, blocks: int) -> Json:
    """A node's recent life: its confirms (with benchmark), uptime reports about it, payouts
    and every other event naming it, newest first, from the last `blocks` blocks (fewer
    when the work budget runs out first: `from_height` says where the scan stopped)."""
    chain = view.chain
    history = _NodeHistory(_node_or_404(chain, ref), chain.height)
    for height in _history_window(chain, blocks):
        if history.done():
            break
        history.scan(chain, height)
    return {
        "node_id": history.node_hex,
        "from_height": history.from_height,
        "to_height": chain.height,
        "confirms": history.confirms,
        "uptime_reports": history.reports[:MAX_HISTORY_ITEMS],
        "events": history.events,
    }


# -- apps ------------------------------------------------------------------------------------


def app_list(view: NodeView, directory: Directory, after: str = "") -> Json:
    """Registered apps by name, one page of `MAX_LIST` after the name `after`; `next` is
    the `after` of the next page (null on the last): a reader who must see every app (a
    gateway) pages on, so a thousand cheap apps cannot push the others off its list."""
    chain = view.chain
    page, more = page_after(directory.at(chain).app_names, after, MAX_LIST)
    hrp = chain.params.address_hrp
    return {
        "apps": [app_json(_state(chain), name, hrp) for name in page],
        "next": page[-1] if more else None,
    }


def app(view: NodeView, name: str, prove: bool = False) -> Json:
    """An app: spec, escrow, expiry, and where each instance runs or why not (`prove`:
    with the proof of every record that says so)."""
    chain = view.chain
    hrp = chain.params.address_hrp
    if prove:
        return proven(chain, lambda state: app_json(state, name, hrp), f"no app {name!r}")
    found = app_json(_state(chain), name, hrp)
    if found is None:
        raise ApiError(404, "not_found", f"no app {name!r}")
    return found


def app_events(view: NodeView, name: str, blocks: int) -> Json:
    """Events naming an app (registered, assigned, under-placed, …) from the last `blocks`
    blocks, newest first; never earlier than its registration, and no more than the work
    budget allows."""
    chain = view.chain
    found = apps.get_app(_state(chain), name)
    if found is None:
        raise ApiError(404, "not_found", f"no app {name!r}")
    events: list[Json] = []
    events_read = 0
    for height in _history_window(chain, blocks):
        if height < found.registered_height or len(events) >= MAX_HISTORY_ITEMS:
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
    return {"name": name, "events": events[:MAX_HISTORY_ITEMS]}


def validate_spec(params: Params, spec: Json, blocks: int | None) -> Json:
    """The chain's own spec rules and the wallet's price: stateless, writes nothing."""
    spec_json = dict(spec)
    owner_filled = not spec_json.get("owner")
    if owner_filled:
        # Stand-in for the signing account `flux-wallet` writes in (validity and price do
        # not depend on which address owns the app, only that it is one of this network).
        spec_json["owner"] = encode_address(bytes(20), params.address_hrp)
    problems = validate_json(spec_json, params, params.address_hrp)
    out: Json = {
        "valid": not problems,
        "owner_filled_by_wallet": owner_filled,
        "problems": [{"path": p.path, "code": str(p.code), "message": p.message} for p in problems],
        "price": None,
    }
    if not problems:
        parsed = AppSpec.from_json(spec_json, params.address_hrp)
        period_blocks = blocks or parsed.expire
        out.update(
            name=parsed.name,
            instances=parsed.instances,
            blocks=period_blocks,
            # the same figures `flux-wallet app price` prints (wallet.builders.quote)
            per_instance_period=-(-compute_period_numerator(parsed, params) // RAM_UNIT_MB),
            price_period=params.app_price_period,
            price=compute_price(parsed, params, period_blocks),
        )
    return out


# -- search ----------------------------------------------------------------------------------


def search(view: NodeView, directory: Directory, query: str) -> Json:
    """What `query` names: a block (height or hash), a tx, an account, a node (id, key or
    endpoint) or an app. Every match is listed; an empty list when nothing matches."""
    if not query or len(query) > 200:
        raise ApiError(400, "bad_request", "query q must be 1..200 characters")
    chain = view.chain
    results: list[dict[str, str]] = []
    numeric = query.isascii() and query.isdigit() and len(query) < 20  # not "²": _height_of
    if numeric and 1 <= int(query) <= chain.height:
        results.append({"kind": "block", "ref": str(int(query))})
    raw = _maybe_hex(query)
    if raw is not None:
        results += _search_bytes(chain, raw)
    results += _search_text(chain, query)
    results += [
        {"kind": "node", "ref": node_id.hex()}
        for node_id in directory.at(chain).by_endpoint.get(query, [])
    ]
    return {"query": query, "results": results}


def _search_bytes(chain: ChainReader, raw: bytes) -> list[dict[str, str]]:
    """Blocks and txs by hash, nodes by id or node key."""
    results: list[dict[str, str]] = []
    if len(raw) == 32:
        if chain.height_of(raw) is not None:
            results.append({"kind": "block", "ref": raw.hex()})
        if chain.tx_location(raw) is not None:
            results.append({"kind": "tx", "ref": raw.hex()})
    if len(raw) in (20, 33):
        node = (
            get_node(_state(chain), raw) if len(raw) == 20 else get_node_by_key(_state(chain), raw)
        )
        if node is not None:
            results.append({"kind": "node", "ref": node.node_id.hex()})
    return results


def _search_text(chain: ChainReader, query: str) -> list[dict[str, str]]:
    """Accounts by address, apps by name."""
    results: list[dict[str, str]] = []
    hrp = chain.params.address_hrp
    if query.lower().startswith(hrp + "1"):
        try:
            address = decode_address(query, hrp)
        except FluxError:
            pass  # not an address of this network: the other kinds may still match
        else:
            results.append({"kind": "account", "ref": encode_address(address, hrp)})
    if apps.get_app(_state(chain), query.lower()) is not None:
        results.append({"kind": "app", "ref": query.lower()})
    return results


def app_secrets(view: NodeView, name: str, prove: bool = False) -> Json:
    """An app's sealed secrets: ciphertexts and per-host sealed keys, never plaintext
    (`prove`: with the proof of every record that says so)."""
    if prove:
        return proven(
            view.chain,
            lambda state: secrets.get_secrets_view(state, name),
            f"app {name!r} has no secrets",
        )
    found = secrets.get_secrets_view(_state(view.chain), name)
    if found is None:
        raise ApiError(404, "not_found", f"app {name!r} has no secrets")
    return {"height": view.chain.height, "chain_id": view.chain.params.chain_id, **found}
