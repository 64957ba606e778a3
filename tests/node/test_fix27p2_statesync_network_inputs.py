"""fix27p2 6: state sync's own Network gets the node's advertised address and seeds.

It loads and saves the one stored peer book (`PeerBookInDb`) through its learn rule: built
without the advertised address (a node listening on 0.0.0.0 that advertises 10.33.0.2, the
WAN testnet's full nodes) its rule learned no private address, and the book it saved back
had dropped the node's private peers; without the seeds a node that knows only seeds (the
WAN testnet's) had no one to sync from.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from fluxchain.node import node as node_module
from fluxchain.node.home import NodeConfig

SEED = "ab" * 32 + "@10.64.0.2:26600"


class _BuiltError(Exception):
    pass


def test_fix27p2_the_state_sync_network_has_the_nodes_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[dict[str, Any]] = []

    def network(*_args: Any, **kwargs: Any) -> None:
        built.append(kwargs)
        raise _BuiltError  # (stop before any socket: only its inputs are under test)

    monkeypatch.setattr(node_module, "Network", network)
    cfg = NodeConfig(
        p2p_host="0.0.0.0",
        p2p_advertise="10.33.0.2:26600",
        seeds=(SEED,),
        persistent_peers=("10.32.0.2:26600",),
        trust_height=10,
        trust_hash="00" * 32,
    )
    fake = SimpleNamespace(
        config=cfg,
        chain=SimpleNamespace(height=0, genesis_hash=b"\0" * 32),
        genesis=SimpleNamespace(chain_id="flux-test"),
        key=None,
    )
    with pytest.raises(_BuiltError):
        asyncio.run(node_module.Node._state_sync_if_new(fake))  # type: ignore[arg-type]
    (kwargs,) = built
    assert kwargs["advertise_address"] == "10.33.0.2:26600"
    assert kwargs["persistent_peers"] == node_module.configured_peers(cfg)
    assert SEED in kwargs["persistent_peers"]
