"""Review rev17b: what a node's remembered tx refusals keep alive."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from types import SimpleNamespace

from fluxchain.core.errors import Reason
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from tests.support.chain import FEE, funded_key, open_chain


class _Frame(list[bytes]):
    """A gossiped TXS frame's tx encodings, as `_on_txs` gets them (a list that can be
    watched with a weak reference)."""


def test_a_refused_gossip_frame_is_freed_once_handled(tmp_path: Path) -> None:
    """Attack: a peer gossips TXS frames (up to MAX_FRAME, 8 MiB, each) whose txs are
    refused for a reason that costs it no ban (here a nonce too far ahead; the rest of a
    frame can be copies of a pooled tx, ALREADY_KNOWN, which are not remembered).
    `NodeService._remember_rejection` keeps the TxError itself for `tx status`, and its
    `__traceback__` holds `Node._on_txs`'s frame, whose locals hold the whole list of the
    frame's tx bytes: REJECTED_KEPT (10,000) refusals can pin 10,000 frames, tens of GB.
    What an operator sees: RSS climbing under a flood of harmless-looking refusals, with
    or without the collector (no cycle: the memory is reachable, not garbage); the same
    on main. Fix direction: remember the refusal's reason and message (or the exception
    with its traceback dropped, `exc.with_traceback(None)`), not the live exception."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, gossip=lambda tx: None)
        punished: list[object] = []
        network = SimpleNamespace(
            punish=lambda *args: punished.append(args), forget_txs=lambda ids: None
        )
        host = SimpleNamespace(service=service, network=network)
        frames: list[weakref.ref[_Frame]] = []
        ids: list[bytes] = []
        for i in range(3):
            far = Tx.create(
                funded_key(), chain.params.chain_id, 1_000_000 + i, FEE, Transfer(b"\x02" * 20, 1)
            )
            frame = _Frame([far.raw])
            frames.append(weakref.ref(frame))
            ids.append(far.id)
            asyncio.run(Node._on_txs(host, "peer-a", frame))  # type: ignore[arg-type]
            del frame
        gc.collect()
        # The refusals are still there for `tx status`, and cost the peer nothing.
        assert [service.tx_status(i).reason for i in ids] == [str(Reason.NONCE_TOO_FAR)] * 3
        assert punished == []
        kept = [ref() is not None for ref in frames]
        assert kept == [False, False, False], "frames still alive through the remembered refusals"
    finally:
        chain.close()
