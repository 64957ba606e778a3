"""Review of tx relay by id (rev13a): attacks tried against main whose defences held,
kept as regression tests. Each states the attack and what a user of the node checks."""

from __future__ import annotations

import pytest

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import unpack
from p2p.limits import POINTS_BAD_RESPONSE, Rate
from p2p.messages import MAX_TX_IDS_PER_ANNOUNCE, GetTxs, Kind, TxBodies, TxIds
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, _node, _score
from tests.p2p.test_tx_relay_by_id_attacks2 import _announced, _asked_for, _handled
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_a_late_answer_racing_the_next_announcers_answer_is_handed_to_the_host_once() -> None:
    """Holds: the first announcer lets its request expire, the id moves to an honest
    announcer which answers; then the first one's late answer (taken once) arrives with
    the same tx. The host is handed the tx once: no duplicate admission work."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=0.3)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with (
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as slow,
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as honest,
            ):
                slow_request = await _asked_for(slow, IDS[0])
                await _announced(honest, [IDS[0]], b"race-marker")
                honest_request = await _asked_for(honest, IDS[0])  # after slow's timeout
                await honest.send(TxBodies(honest_request, (TXS[0],)))
                await _handled(honest, b"honest-answered")
                await slow.send(TxBodies(slow_request, (TXS[0],)))
                await _handled(slow, b"slow-answered")
                handed = [p for p in host.payloads(Kind.TXS) if TXS[0] in unpack(p)]
                assert len(handed) == 1, f"the tx was handed to the host {len(handed)} times"
                assert IDS[0] in host.pool
        finally:
            await network.stop()

    run(scenario)


def test_an_announcement_repeating_one_id_asks_for_it_once() -> None:
    """Holds: a TX_IDS of 4,096 copies of one id (128 KiB) makes one fetch, asked once."""

    async def scenario() -> None:
        network, _host = await _node()
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as attacker:
                await attacker.send(TxIds(IDS[2] * MAX_TX_IDS_PER_ANNOUNCE))
                request = await attacker.receive_kind(GetTxs)
                assert request.ids() == [IDS[2]]
                assert network._tx_fetch.fetching() == 1
        finally:
            await network.stop()

    run(scenario)


def test_announced_ids_tracked_for_one_peer_stay_within_inflight_plus_waiting() -> None:
    """Holds: a peer announcing far more ids than it may have outstanding (inside the id
    rate) makes the node track at most max_tx_fetch_inflight + known_txs_per_peer of
    them; the rest are ignored, not queued without bound."""

    async def scenario() -> None:
        network, _host = await _node(
            max_tx_fetch_inflight=64,
            known_txs_per_peer=256,
            tx_ids_rate=Rate(100_000, 100_000),
        )
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as attacker:
                ids = [sha256(b"flood-%d" % i) for i in range(4 * MAX_TX_IDS_PER_ANNOUNCE)]
                step = MAX_TX_IDS_PER_ANNOUNCE
                for start in range(0, len(ids), step):
                    await attacker.send(TxIds(b"".join(ids[start : start + step])))
                # Frames are routed as they are read: all four are in once counted.
                await wait_until_async(
                    lambda: network.frame_counts()["received"].get("TX_IDS") == 4,
                    what="the four announcements read",
                )
                assert network._tx_fetch.fetching() <= 64 + 256
        finally:
            await network.stop()

    run(scenario)


def test_an_answer_carrying_an_asked_tx_twice_is_refused_and_the_next_announcer_asked() -> None:
    """Holds: an answer holding the tx asked for twice (double admission work, a larger
    frame) is `bad_response`; the id goes to the honest announcer, which delivers it."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=5.0)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with (
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as liar,
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as honest,
            ):
                request_id = await _asked_for(liar, IDS[3])
                await _announced(honest, [IDS[3]], b"twice-marker")
                await liar.send(TxBodies(request_id, (TXS[3], TXS[3])))
                honest_request = await _asked_for(honest, IDS[3])
                await honest.send(TxBodies(honest_request, (TXS[3],)))
                await wait_until_async(lambda: IDS[3] in host.pool, what="the tx fetched")
                assert _score(network, liar) >= POINTS_BAD_RESPONSE
                assert _score(network, honest) == 0
        finally:
            await network.stop()

    run(scenario)


def test_a_replayed_announcement_of_a_received_tx_is_not_fetched_again() -> None:
    """Holds: once a tx's body reached the node, announcing its id again (from the same
    peer or another) draws no request: no re-download of what the node holds."""

    async def scenario() -> None:
        network, host = await _node()
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with (
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as one,
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as two,
            ):
                request_id = await _asked_for(one, IDS[4])
                await one.send(TxBodies(request_id, (TXS[4],)))
                await wait_until_async(lambda: IDS[4] in host.pool, what="the tx fetched")
                for peer, label in ((one, b"replay-one"), (two, b"replay-two")):
                    marker = sha256(label)
                    await peer.send(TxIds(IDS[4] + marker))
                    request = await peer.receive_kind(GetTxs)
                    assert request.ids() == [marker], "a held tx was asked for again"
                    await peer.send(TxBodies(request.request_id, ()))
        finally:
            await network.stop()

    run(scenario)
