"""JSON renderings of chain objects for the API (bytes as hex, addresses as bech32).

Views of state (accounts, nodes, apps, txs) are in core/views.py, shared with the wallet."""

from __future__ import annotations

from typing import Any

from fluxchain.core.block import Block
from fluxchain.core.encoding import pack
from fluxchain.core.tx import Tx
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.views import (
    account_json,
    app_json,
    assignments_json,
    commit_json,
    header_json,
    jsonable,
    node_json,
    node_view_json,
    tx_json,
)

# The views of state, headers and commits live in core/views.py, shared with the wallet's
# verification.
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


def block_json(block: Block, txs: list[Tx], hrp: str) -> dict[str, Any]:
    return {"header": header_json(block.header), "txs": [tx_json(t, hrp) for t in txs]}


def validators_json(validators: ValidatorSet) -> dict[str, Any]:
    return {
        "total_power": validators.total_power,
        "hash": validators.hash().hex(),
        "validators": [{"pubkey": v.pubkey.hex(), "power": v.power} for v in validators.validators],
        "validators_raw": pack(validators.to_fields()).hex(),
    }
