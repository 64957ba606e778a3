"""Issue 22 (wan19): an announcement is taken at once, a pushed TXS frame waits in its
peer's inbox for admission. On a dense mesh the origin's push of an announced tx was
mostly there already, and the node asked the announcer for a body it was about to admit
(pinned WAN 500 tx/s: 0.18 of 0.24 fetched ids a tx a node). Ids announced while inbox
items wait are asked once those are handled, or after `Limits.tx_fetch_push_wait`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from fluxchain.core.encoding import pack
from p2p.messages import GetTxs, Gossip, Kind, TxIds
from p2p.network import Network
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, RawPeer, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, PoolHost, _network_on
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


class SlowHost(PoolHost):
    """A host whose admission of pushed txs waits until `admit` is set (a node busy
    checking a block while TXS frames pile up in its inboxes)."""

    def __init__(self) -> None:
        super().__init__()
        self.admit = asyncio.Event()
        self.admitting = asyncio.Event()

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        if kind is Kind.TXS:
            self.admitting.set()
            await self.admit.wait()
        return await super().on_gossip(peer_id, kind, payload)


@asynccontextmanager
async def _push_waiting(
    network: Network, host: SlowHost, tx: bytes
) -> AsyncIterator[tuple[RawPeer, RawPeer]]:
    """Two peers; the first has pushed `tx`, whose admission waits (`host.admit`)."""
    peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
    async with (
        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p1,
        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p2,
    ):
        await p1.send(Gossip(Kind.TXS, pack([tx])))
        await asyncio.wait_for(host.admitting.wait(), 5.0)
        yield p1, p2


def test_an_id_pushed_ahead_of_its_announcement_is_not_asked_for() -> None:
    """p1 pushes a tx (its admission waits); p2 announces it. Nothing is asked of p2 for
    it: once the push is admitted, the next id p2 announces is the first it is asked for."""

    async def scenario() -> None:
        host = SlowHost()
        network = await _network_on(host, tx_fetch_push_wait=30.0)
        try:
            async with _push_waiting(network, host, TXS[2]) as (_, p2):
                await p2.send(TxIds(IDS[2]))
                await wait_until_async(
                    lambda: network.frame_counts()["received"].get("TX_IDS", 0) == 1,
                    what="the announcement taken",
                )
                host.admit.set()
                await wait_until_async(lambda: IDS[2] in host.pool, what="the push admitted")
                await p2.send(TxIds(IDS[3]))  # a marker: frames of a link are in order
                first = await p2.receive_kind(GetTxs, timeout=5.0)
                assert first.ids() == [IDS[3]]
                assert network.frame_counts()["tx_ids"]["asked"] == 1
        finally:
            await network.stop()

    run(scenario)


def test_an_id_announced_behind_a_stuck_inbox_is_asked_after_the_push_wait() -> None:
    """The inbox item ahead of the announcement is never handled (a push of other txs
    whose admission hangs): the announced id is asked all the same, once
    `tx_fetch_push_wait` has passed, and is fetched."""

    async def scenario() -> None:
        host = SlowHost()
        wait = 0.4
        network = await _network_on(host, tx_fetch_push_wait=wait)
        try:
            async with _push_waiting(network, host, TXS[0]) as (_, p2):
                loop = asyncio.get_running_loop()
                sent = loop.time()
                await p2.send(TxIds(IDS[4]))
                request = await p2.receive_kind(GetTxs, timeout=5.0)
                assert request.ids() == [IDS[4]]
                # Taken by the node after `sent`: it cannot have waited more than we did.
                assert loop.time() - sent >= wait - 0.05
        finally:
            host.admit.set()
            await network.stop()

    run(scenario)
