"""Review of tx relay by id (rev13c), after fix13r: junk announcements answered "not held"
late, filling `max_tx_fetching` and censoring an honest peer's tx; an announcer answering
with one large tx of its own each round, so that the honest tx after it is "cut for size"
and asked of it again for ever; an honest asker whose host stalls re-asking until the
server's SERVE_TIMES answers "not held" and the tx is dropped. Each test states what a
user of the node would check (the tx arrives) and fails on main."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import pytest

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack, unpack
from p2p.limits import Limits
from p2p.messages import MAX_TXS_PER_FETCH, GetTxs, Kind, TxBodies, TxIds
from p2p.network import Network
from p2p.tx_fetch import answer_bytes
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, RawPeer, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, PoolHost, _network_on, _node
from tests.p2p.test_tx_relay_by_id_attacks2 import _announced, _stalled_node
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

# Past this, an answer counts as cut for size (default limits, as these tests use).
CUT_ANSWER_BYTES = answer_bytes(Limits()) // 2


async def _asked_within(peer: RawPeer, tx_id: bytes, deadline: float) -> GetTxs | None:
    """The first request of the node to `peer` naming `tx_id` within `deadline` seconds
    (other requests are left unanswered), or None."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            while True:
                request: GetTxs = await peer.receive_kind(GetTxs, timeout=deadline)
                if tx_id in request.ids():
                    return request
    return None


def test_junk_announcements_answered_not_held_fill_max_tx_fetching_and_censor_honest_txs() -> None:
    """An attacker connects first, so its share of `max_tx_fetching` (the bound over the
    peers connected) is the whole bound: it announces that many junk ids and is asked for
    all of them. It answers each request "not held" just before `tx_fetch_timeout` (a
    miss inside an answer costs nothing) and announces as many fresh junk ids at once.
    An honest peer connecting next announces a real tx while the bound is full: the
    announcement is refused at the bound and dropped for good (an honest peer never
    announces an id twice to a peer), so the tx never reaches the node, nor any node
    behind it. The honest peer's tx should be fetched."""

    async def scenario() -> None:
        timeout = 1.0
        bound = 40
        network, host = await _node(max_inbound=4, max_tx_fetching=bound, tx_fetch_timeout=timeout)
        loop = asyncio.get_running_loop()
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            address = network.listen_address
            async with accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as attacker:
                junk = (sha256(b"junk-%d" % i) for i in range(1_000_000))
                await attacker.send(TxIds(b"".join(next(junk) for _ in range(bound))))
                await wait_until_async(
                    lambda: network.frame_counts()["received"].get("TX_IDS") == 1,
                    what="the junk announcement read",
                )

                async def deny_late() -> None:
                    # Each request answered "not held" 150 ms before its deadline, and as
                    # many fresh junk ids announced at once.
                    due: deque[tuple[float, GetTxs]] = deque()
                    while True:
                        wait = due[0][0] - loop.time() if due else 30.0
                        if wait > 0:
                            with contextlib.suppress(TimeoutError):
                                request = await attacker.receive_kind(GetTxs, timeout=wait)
                                due.append((loop.time() + timeout - 0.15, request))
                            continue
                        _, request = due.popleft()
                        await attacker.send(TxBodies(request.request_id, ()))
                        fresh = [next(junk) for _ in request.ids()]
                        await attacker.send(TxIds(b"".join(fresh)))

                denier = asyncio.create_task(deny_late())
                try:
                    async with accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as honest:
                        await honest.send(TxIds(IDS[0]))
                        request = await _asked_within(honest, IDS[0], 3 * timeout)
                        assert request is not None, (
                            f"the honest peer's tx was never asked for in {3 * timeout:.0f} s: "
                            f"{network._tx_fetch.fetching()} of {bound} fetches held by junk"
                        )
                        await honest.send(TxBodies(request.request_id, (TXS[0],)))
                        await wait_until_async(lambda: IDS[0] in host.pool, what="the tx")
                finally:
                    denier.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await denier
        finally:
            await network.stop()

    run(scenario)


def test_announcements_past_the_fetch_bound_are_fetched_later_not_lost() -> None:
    """An honest peer (our only one) announces more txs than `max_tx_fetching` at once (a
    burst after a slow spell; the bound is small here). The ids past the bound were
    dropped, and the peer never announces them again: those txs never reach the node.
    They should be fetched once the first ones are in."""

    async def scenario() -> None:
        bound = 40
        network, host = await _node(max_inbound=4, max_tx_fetching=bound)
        txs = [b"burst-%03d " % i * 10 for i in range(3 * bound)]
        pool = {sha256(tx): tx for tx in txs}
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as holder:
                await holder.send(TxIds(b"".join(pool)))
                with contextlib.suppress(TimeoutError):
                    while len(host.pool) < len(pool):
                        request = await holder.receive_kind(GetTxs, timeout=2.0)
                        bodies = tuple(pool[tx_id] for tx_id in request.ids())
                        await holder.send(TxBodies(request.request_id, bodies))
                lost = len(pool) - len(host.pool)
                assert lost == 0, f"{lost} of {len(pool)} announced txs never fetched"
        finally:
            await network.stop()

    run(scenario)


class _SmallTxHost(PoolHost):
    """A host that refuses txs over 64 KiB (as a node refuses txs over `max_tx_bytes`),
    blaming nobody: a peer's junk costs it nothing but its bytes."""

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        if kind is Kind.TXS:
            payload = pack([tx for tx in unpack(payload) if len(tx) <= 64 * 1024])
        return await super().on_gossip(peer_id, kind, payload)


def _large_junk(index: int) -> bytes:
    """A blob just over CUT_ANSWER_BYTES: one of them makes an answer count as cut."""
    return b"large-junk-%04d-" % index + b"J" * CUT_ANSWER_BYTES


def test_an_announcer_answering_a_large_tx_each_round_holds_an_honest_tx_for_ever() -> None:
    """An attacker announces large blobs of its own and then an honest tx's id, before
    the honest holder does, and is asked for them all in one request. It answers with
    the first blob only: an answer over 4 MiB counts as cut for size, so the ids after
    its last tx (the other blobs and the honest tx) are asked of it again; it answers
    with the next blob, and so on. The honest holder, noted as the next announcer, is
    never asked while the attacker keeps cutting: with a fresh blob each round it holds
    the tx for ever (here 24 rounds, ~6 s at its byte budget), for the bytes of one
    4 MiB blob a round, unscored. A cut re-ask should be hedged like a retry: after
    `tx_fetch_retry_after` the next announcer is asked too."""

    async def scenario() -> None:
        host = _SmallTxHost()
        network = await _network_on(host)
        blobs = {sha256(_large_junk(i)): i for i in range(24)}
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            address = network.listen_address
            async with (
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as attacker,
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as honest,
            ):
                await attacker.send(TxIds(b"".join([*blobs, IDS[0]])))
                first = await attacker.receive_kind(GetTxs)
                assert first.ids()[-1] == IDS[0]
                await _announced(honest, [IDS[0]], b"honest-noted")

                async def cut_each_round(request: GetTxs) -> None:
                    while True:
                        ids = request.ids()
                        before = ids[: ids.index(IDS[0])] if IDS[0] in ids else []
                        blob = next((blobs[i] for i in before if i in blobs), None)
                        body = () if blob is None else (_large_junk(blob),)
                        await attacker.send(TxBodies(request.request_id, body))
                        request = await attacker.receive_kind(GetTxs, timeout=30.0)

                cutter = asyncio.create_task(cut_each_round(first))
                try:
                    deadline = 2.0
                    request = await _asked_within(honest, IDS[0], deadline)
                    assert request is not None, (
                        f"the honest holder was not asked for the tx within {deadline} s "
                        "while the attacker cut each answer with a large blob of its own"
                    )
                    await honest.send(TxBodies(request.request_id, (TXS[0],)))
                    await wait_until_async(lambda: IDS[0] in host.pool, what="the tx")
                finally:
                    cutter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await cutter
        finally:
            await network.stop()

    run(scenario, timeout=30.0)


def test_an_honest_asker_whose_host_stalls_loses_txs_to_serve_times() -> None:
    """A server (a real node) announces 12,288 txs of 3 KB (36 MiB) to an asker whose host
    is stalled (a long block execution; its inbox holds one frame). The asker fetches them;
    the first answer goes to the inbox, the next wait in `unqueued` up to 8 MiB, and the
    ids of an answer past that are asked of the server again at every flush while the
    host is stalled. The server sends a body to one peer at most SERVE_TIMES (twice), so
    the third request is answered "not held": a miss, the server is the only announcer,
    and the id is dropped for good. Once the host resumes, every tx should arrive, each
    downloaded once."""

    async def scenario() -> None:
        server, server_host = await _node()
        asker, asker_host = await _stalled_node(inbox_frames=1)
        txs = [b"stall-%05d-" % i + b"S" * 2990 for i in range(12 * MAX_TXS_PER_FETCH)]
        ids = [sha256(tx) for tx in txs]
        try:
            await asker.connect(server.listen_address)
            await wait_until_async(
                lambda: _linked(asker, server) and _linked(server, asker), what="linked"
            )
            server_host.submit([TXS[5]])  # pushed: the asker's host is stalled on it
            await wait_until_async(
                lambda: asker.frame_counts()["received"].get("TXS") == 1, what="host stalled"
            )
            server_host.pool.update(zip(ids, txs, strict=True))
            server.announce_txs(ids)

            def answers() -> int:
                return server.frame_counts()["sent"].get("TX_BODIES", 0)

            # Main re-asks every flush while the host is stalled; give it the time.
            with contextlib.suppress(AssertionError):
                await wait_until_async(lambda: answers() >= 12, what="re-asks", timeout=2.0)
            asker_host.resume.set()
            with contextlib.suppress(AssertionError):
                await wait_until_async(
                    lambda: all(tx_id in asker_host.pool for tx_id in ids),
                    what="every tx at the asker",
                    timeout=10.0,
                )
            lost = sum(1 for tx_id in ids if tx_id not in asker_host.pool)
            assert lost == 0, (
                f"{lost} of {len(ids)} txs never reached the asker after its host stalled "
                f"({answers()} answers sent by the server)"
            )
        finally:
            asker_host.resume.set()
            await asker.stop()
            await server.stop()

    run(scenario, timeout=40.0)


def _linked(one: Network, other: Network) -> bool:
    return any(p.peer_id == other.node_id for p in one.peers())
