"""adm23: a host that stops a TXS frame at its first garbage tx (`Node._on_txs`) drops
the frame's later txs unjudged and hands their ids back (`Network.unreceive_txs`). A
fetched answer reaches the host as such a frame, so an attacker asked for an honest tx
and a junk one it announced answers with both, junk first: the honest tx, dropped, must
go to its other announcer, not stay "received lately" with its fetch ended."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack, unpack
from p2p.messages import GetTxs, Kind, TxBodies, TxIds
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, PoolHost, _network_on
from tests.p2p.test_tx_relay_by_id_attacks2 import _announced, _handled
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

JUNK = b"junk " * 40
JUNK_ID = sha256(JUNK)


class _StoppingHost(PoolHost):
    """A host whose TXS handling stops at a junk tx, as `Node._on_txs` does."""

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        if kind is Kind.TXS:
            raws = unpack(payload)
            if JUNK in raws:
                at = raws.index(JUNK)
                assert self.network is not None
                await super().on_gossip(peer_id, kind, pack(raws[:at]))
                self.network.unreceive_txs(peer_id, [sha256(r) for r in raws[at + 1 :]])
                return False
        return await super().on_gossip(peer_id, kind, payload)


def test_an_honest_tx_behind_junk_in_a_fetched_answer_goes_to_its_next_announcer() -> None:
    async def scenario() -> None:
        host = _StoppingHost()
        network = await _network_on(host)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with contextlib.AsyncExitStack() as stack:
                attacker = await stack.enter_async_context(
                    accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers)
                )
                honest = await stack.enter_async_context(
                    accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers)
                )
                await attacker.send(TxIds(JUNK_ID + IDS[0]))
                asked: set[bytes] = set()
                requests = []
                while asked != {JUNK_ID, IDS[0]}:
                    request = await attacker.receive_kind(GetTxs)
                    asked.update(request.ids())
                    requests.append(request)
                await _announced(honest, [IDS[0]], b"honest-marker")
                bodies = {JUNK_ID: JUNK, IDS[0]: TXS[0]}
                for request in requests:
                    txs = tuple(bodies[i] for i in [JUNK_ID, IDS[0]] if i in request.ids())
                    await attacker.send(TxBodies(request.request_id, txs))
                await _handled(attacker, b"attacker-answered")
                got = None
                async with asyncio.timeout(5.0):
                    while got is None:
                        request = await honest.receive_kind(GetTxs)
                        if IDS[0] in request.ids():
                            got = request
                await honest.send(TxBodies(got.request_id, (TXS[0],)))
                await wait_until_async(lambda: IDS[0] in host.pool, what="the tx fetched")
        finally:
            await network.stop()

    run(scenario)
