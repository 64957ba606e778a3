"""Defences of tx relay by id checked after rev13c's fixes that held: what a junk
announcer gets tracked stays within its share and its backlog's bound, and the bodies
kept for a stalled host stay within UNQUEUED_BYTES with each tx asked for once."""

from __future__ import annotations

import contextlib

import pytest

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack
from p2p.messages import MAX_TX_IDS_PER_ANNOUNCE, GetTxs, Gossip, Kind, TxBodies, TxIds
from p2p.tx_fetch import UNQUEUED_BYTES
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, _node
from tests.p2p.test_tx_relay_by_id_attacks2 import _asked_for, _stalled_node
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_a_junk_announcers_backlog_and_fetches_stay_within_its_share() -> None:
    """A peer announcing three times `known_txs_per_peer` junk ids is asked for at most
    its share of `max_tx_fetching` (the bound over the peer slots), keeps at most
    `known_txs_per_peer` of the rest waiting, and an honest peer's tx is still asked."""

    async def scenario() -> None:
        network, host = await _node(max_inbound=4, max_tx_fetching=40, known_txs_per_peer=256)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            address = network.listen_address
            async with (
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as flooder,
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as honest,
            ):
                await flooder.send(TxIds(b"".join(sha256(b"junk-%d" % i) for i in range(768))))
                await wait_until_async(
                    lambda: network.frame_counts()["received"].get("TX_IDS") == 1,
                    what="the junk announcement read",
                )
                assert network._tx_fetch.fetching() <= 40 // 4
                assert len(network._tx_fetch._state[flooder.id].backlog) <= 256
                request_id = await _asked_for(honest, IDS[0])
                await honest.send(TxBodies(request_id, (TXS[0],)))
                await wait_until_async(lambda: IDS[0] in host.pool, what="the honest tx")
        finally:
            await network.stop()

    run(scenario)


def test_bodies_kept_for_a_stalled_host_stay_bounded_and_each_tx_is_asked_once() -> None:
    """A peer announces 4,096 txs of 6 KB (24 MiB) to a node whose host is stalled (its
    inbox holds one frame) and answers every request at once. The bodies kept for the
    inbox never pass UNQUEUED_BYTES, no id is asked for twice, and once the host resumes
    every tx arrives."""

    async def scenario() -> None:
        network, host = await _stalled_node(inbox_frames=1)
        txs = [b"kept-%05d-" % i + b"K" * 6000 for i in range(MAX_TX_IDS_PER_ANNOUNCE)]
        pool = {sha256(tx): tx for tx in txs}
        asked: list[bytes] = []
        most = 0
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as server:
                await server.send(Gossip(Kind.TXS, pack([TXS[5]])))  # the host is stalled on it
                await server.send(TxIds(b"".join(pool)))

                async def serve_next(timeout: float) -> None:
                    nonlocal most
                    request = await server.receive_kind(GetTxs, timeout=timeout)
                    asked.extend(request.ids())
                    bodies = tuple(pool[tx_id] for tx_id in request.ids())
                    await server.send(TxBodies(request.request_id, bodies))
                    state = network._tx_fetch._state.get(server.id)
                    most = max(most, 0 if state is None else state.unqueued_bytes)

                with contextlib.suppress(TimeoutError):
                    while True:  # until no request comes for a second: the asker waits
                        await serve_next(1.0)
                host.resume.set()
                with contextlib.suppress(TimeoutError):
                    while len(host.pool) < len(pool) + 1:
                        await serve_next(2.0)
                assert most <= UNQUEUED_BYTES
                assert len(asked) == len(set(asked)), f"{len(asked) - len(set(asked))} re-asked"
                assert all(tx_id in host.pool for tx_id in pool)
        finally:
            host.resume.set()
            await network.stop()

    run(scenario, timeout=40.0)
