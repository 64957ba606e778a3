"""Review rev17b: what a block's collect-and-freeze does to a peer connection open then."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from fluxchain.store import collector
from p2p.peer import HandshakeWebSocketResponse
from tests.p2p.harness import cluster, fast_limits, raw_peer, run
from tests.support.chain import Builder, funded_key, open_chain
from tests.support.wait import wait_until_async


def test_a_connection_open_at_a_freeze_is_freed_after_it_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: stay connected to a node across a block whose end collects and freezes
    (`collector.after_block`; an attacker can bring one on by getting ~100,000 objects
    made, e.g. txs pooled), then disconnect; repeat with every inbound slot. A closed
    connection's server-side objects (aiohttp's websocket response, its transports,
    the reader's frames and tracebacks) form reference cycles that only the collector
    frees, but `gc.freeze()` moved them out of its reach while they were alive: they
    are never freed. Honest peer churn does the same. What an operator sees: RSS
    growing with every connection that spanned a collection, for the node's lifetime
    (main froze after every block, so it leaked more). Fix direction: do not freeze on
    a schedule while network objects are alive (freeze once, the loaded state, at open),
    or back the freeze with a rare `gc.unfreeze()` + full collection so that frozen
    objects that became garbage are freed. Fixed (fix17c): every `SWEEP_EVERY`th
    collection unfreezes first, so such garbage lives at most that many collections."""
    monkeypatch.setattr(collector, "COLLECT_AFTER", 0)  # every block's end collects
    chain = open_chain(tmp_path / "home")
    builder = Builder(chain)
    watched: list[weakref.ref[HandshakeWebSocketResponse]] = []

    async def scenario() -> None:
        async with cluster() as nodes:
            target = await nodes.add(limits=fast_limits())
            async with raw_peer(target.address) as raw:
                await raw.handshake()
                await wait_until_async(lambda: raw.id in target.peer_ids(), what="peer in")
                watched.extend(
                    weakref.ref(o)
                    for o in gc.get_objects()
                    if isinstance(o, HandshakeWebSocketResponse)
                )
                builder.commit([builder.transfer(funded_key(), bytes(20))])
            await wait_until_async(lambda: raw.id not in target.peer_ids(), what="peer out")

    try:
        run(scenario)
        assert len(watched) == 1, "the target's side of the one connection"
        for _ in range(collector.SWEEP_EVERY):  # the chain's own collections, nothing else
            builder.commit([builder.transfer(funded_key(), bytes(20))])
        assert watched[0]() is None, (
            f"the closed connection's websocket response outlived {collector.SWEEP_EVERY}"
            " collections"
        )
    finally:
        chain.close()
