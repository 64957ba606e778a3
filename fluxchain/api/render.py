"""JSON renderings of chain objects for the API (bytes as hex, addresses as bech32).

Views of state (accounts, nodes, apps, txs) are in core/views.py, shared with the wallet."""

from __future__ import annotations

from typing import Any

from fluxchain.core.block import Block, Header
from fluxchain.core.encoding import pack
from fluxchain.core.tx import Tx
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.views import (
    account_json,
    app_json,
    assignments_json,
    jsonable,
    node_json,
    node_view_json,
    tx_json,
)
from fluxchain.core.votes import Commit

# The views of state live in core/views.py, shared with the wallet's verification.
__all__ = [
    "account_json",
    "app_json",
    "assignments_json",
    "block_json",
    "commit_json",
    "header_json",
    "jsonable",
    "node_json",
    "node_view_json",
    "tx_json",
    "validators_json",
]


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


def block_json(block: Block, txs: list[Tx], hrp: str) -> dict[str, Any]:
    return {"header": header_json(block.header), "txs": [tx_json(t, hrp) for t in txs]}


def validators_json(validators: ValidatorSet) -> dict[str, Any]:
    return {
        "total_power": validators.total_power,
        "hash": validators.hash().hex(),
        "validators": [{"pubkey": v.pubkey.hex(), "power": v.power} for v in validators.validators],
        "validators_raw": pack(validators.to_fields()).hex(),
    }
