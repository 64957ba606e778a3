"""JSON views of chain state: what the API answers for an account, a node, an app or
a tx, and what a light client recomputes from proven state entries to check that answer
(wallet/verify.py). One function per view, used by both, so the check cannot drift from
the answer. Pure: each reads a State (any State: the node's, or one that holds only the
entries a proof showed) and formats bytes as hex, addresses as bech32.
"""

from __future__ import annotations

from typing import Any

from fluxchain.core import apps, placement
from fluxchain.core.accounts import get_account
from fluxchain.core.block import Header
from fluxchain.core.crypto import encode_address
from fluxchain.core.encoding import pack
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.records import Node
from fluxchain.core.state import State
from fluxchain.core.tx import Tx
from fluxchain.core.votes import Commit


def jsonable(value: Any, hrp: str, field: str = "") -> Any:
    if isinstance(value, bytes):
        if len(value) == 20 and field in ("to", "owner", "address"):
            return encode_address(value, hrp)
        return value.hex()
    if isinstance(value, bool | int | str) or value is None:
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, list | tuple):
        return [jsonable(v, hrp) for v in value]
    if hasattr(value, "__slots__"):
        return {name: jsonable(getattr(value, name), hrp, name) for name in value.__slots__}
    return str(value)


def tx_json(tx: Tx, hrp: str) -> dict[str, Any]:
    return {
        "id": tx.id.hex(),
        "kind": tx.kind.name.lower(),
        "sender": encode_address(tx.sender_address, hrp),
        "sender_pubkey": tx.sender.hex(),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "payload": jsonable(tx.payload, hrp),
        "size": len(tx.raw),
    }


def event_concerns_tx(event: dict[str, Any], tx: Tx) -> bool:
    """Whether an event (its JSON view) concerns `tx`: it names an object the tx's payload
    names (an app, a node), or the tx itself. The API shows a confirmed tx with the events
    of its block that concern it, and a wallet refuses an event shown that does not: a
    proven event of the same block may be about someone else's tx."""
    payload = tx.payload
    names = {getattr(payload, "name", None), getattr(getattr(payload, "spec", None), "name", None)}
    ids = {getattr(payload, "node_id", b"").hex(), tx.id[:20].hex()}
    return bool((event.get("name") in names - {None}) or (event.get("node_id") in ids - {""}))


def account_json(state: State, address: bytes, hrp: str) -> dict[str, Any]:
    """Balance and nonce of an address (an address never seen has both at zero)."""
    found = get_account(state, address)
    return {"address": encode_address(address, hrp), "balance": found.balance, "nonce": found.nonce}


def node_view_json(state: State, ref: bytes, hrp: str) -> dict[str, Any] | None:
    """A node by id (20 bytes) or node key (33), with its assignments; None if unknown."""
    node = get_node(state, ref) if len(ref) == 20 else None
    if node is None and len(ref) == 33:
        node = get_node_by_key(state, ref)
    if node is None:
        return None
    body = node_json(node, hrp)
    body["assignments"] = assignments_json(state, node.node_id, hrp)
    return body


def node_json(node: Node, hrp: str) -> dict[str, Any]:
    bench = node.benchmark
    return {
        "node_id": node.node_id.hex(),
        "owner": encode_address(node.owner, hrp),
        "node_key": node.node_key.hex(),
        "tier": node.tier.name.lower(),
        "status": node.status.name.lower(),
        "endpoint": node.endpoint,
        "country": node.country,
        "continent": node.continent,
        "hardware": {
            "cores": node.hardware.cores,
            "ram_mb": node.hardware.ram_mb,
            "disk_gb": node.hardware.disk_gb,
        },
        "collateral": node.collateral,
        "registered_height": node.registered_height,
        "status_height": node.status_height,
        "last_confirm_height": node.last_confirm_height,
        "benchmark": None if bench is None else jsonable(bench, hrp),
        "version": node.version,
        "jailed_until": node.jailed_until,
        "unbond_height": node.unbond_height,
        "paid_total": node.paid_total,
        "vrf_key": node.vrf_key.hex(),
        # None until two epochs after registration: until then the node is not placed and
        # not in the uptime ring (docs/state.md, Uptime).
        "rank_key": node.rank_key.hex() or None,
    }


def assignments_json(state: State, node_id: bytes, hrp: str) -> list[dict[str, Any]]:
    """What a node runs: each app instance with the app's components (what an agent starts)."""
    out = []
    for name, index in placement.get_apps_on_node(state, node_id):
        app = apps.get_app(state, name)
        out.append(
            {
                "app": name,
                "instance": index,
                "spec": None if app is None else app.spec.to_json(hrp),
            }
        )
    return out


def app_json(state: State, name: str, hrp: str) -> dict[str, Any] | None:
    """An app: its spec, escrow and expiry, and where each instance runs (or why not)."""
    status = apps.get_app_status(state, name)
    app = apps.get_app(state, name)
    if status is None or app is None:
        return None
    status["owner"] = encode_address(app.spec.owner, hrp)
    status["spec"] = app.spec.to_json(hrp)
    for instance in status["instances"]:
        node = get_node(state, bytes.fromhex(instance["node_id"]))
        instance["endpoint"] = "" if node is None else node.endpoint
        instance["country"] = "" if node is None else node.country
    return status


# -- headers and commits (the API's block answers; a wallet rebuilds a verified block) --


def header_json(header: Header) -> dict[str, Any]:
    """A header's fields, and `raw`: its canonical bytes, which its hash is taken over."""
    return {
        "chain_id": header.chain_id,
        "height": header.height,
        "round": header.round,
        "time_ms": header.time_ms,
        "hash": header.hash().hex(),
        "prev_hash": header.prev_hash.hex(),
        "proposer": header.proposer.hex(),
        "reveal": header.reveal.hex(),
        "tx_root": header.tx_root.hex(),
        "state_root": header.state_root.hex(),
        "events_root": header.events_root.hex(),
        "validators_hash": header.validators_hash.hex(),
        "last_commit_hash": header.last_commit_hash.hex(),
        "raw": pack(header.to_fields()).hex(),
    }


def commit_json(commit: Commit) -> dict[str, Any]:
    """A commit in full: every precommit signature, and its canonical bytes."""
    return {
        "height": commit.height,
        "round": commit.round,
        "block_hash": commit.block_hash.hex(),
        "signers": [validator.hex() for validator, _ in commit.signatures],
        "signatures": [
            {"validator": validator.hex(), "signature": signature.hex()}
            for validator, signature in commit.signatures
        ],
        "raw": pack(commit.to_fields()).hex(),
    }
