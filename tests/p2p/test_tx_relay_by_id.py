"""Txs relayed by id (issue 22, wan22n): the origin pushes a tx's body to its peers; a node
that took it from a peer announces its id (TX_IDS), and a peer lacking it asks the
announcer (GET_TXS) for the body (TX_BODIES). A tx still reaches every node of a sparse
network; a lost announcement or request does not lose it; an announcer that does not
deliver, an answer with txs nobody asked for, and an announcement flood are scored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack, unpack
from p2p.errors import FrameError, PeerReason
from p2p.limits import (
    POINTS_BAD_RESPONSE,
    POINTS_UNDELIVERED_TX,
    POINTS_UNSOLICITED,
    Limits,
    Rate,
)
from p2p.messages import (
    MAX_TX_IDS_PER_ANNOUNCE,
    MAX_TXS_PER_FETCH,
    GetTxs,
    Kind,
    Message,
    TxBodies,
    TxIds,
    decode,
    encode,
)
from p2p.network import Network
from tests.p2p.harness import (
    CHAIN_ID,
    GENESIS_HASH,
    Cluster,
    Node,
    RawPeer,
    RecordingHost,
    accepted_raw_peer,
    cluster,
    fast_limits,
    run,
)
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

TXS = [b"tx-%d " % i * 100 for i in range(6)]
IDS = [sha256(tx) for tx in TXS]


class PoolHost(RecordingHost):
    """A host that keeps the txs it is given, as a node's mempool does: a TXS frame's new
    txs are kept and announced by id (never relayed by body), and it serves what it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.pool: dict[bytes, bytes] = {}
        self.committed: set[bytes] = set()  # held still, but no longer in the mempool

    def submit(self, txs: list[bytes]) -> None:
        """Our own txs (an API's): kept, and their bodies pushed to every peer."""
        for tx in txs:
            self.pool[sha256(tx)] = tx
        assert self.network is not None
        self.network.broadcast(Kind.TXS, pack(txs))

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        await super().on_gossip(peer_id, kind, payload)
        if kind is not Kind.TXS:
            return True
        new = []
        for tx in unpack(payload):
            tx_id = sha256(tx)
            if tx_id not in self.pool:
                self.pool[tx_id] = tx
                new.append(tx_id)
        assert self.network is not None
        self.network.announce_txs(new, peer_id)
        return False

    def has_tx(self, tx_id: bytes) -> bool:
        return tx_id in self.pool

    def in_mempool(self, tx_id: bytes) -> bool:
        return tx_id in self.pool and tx_id not in self.committed

    def tx_bodies(self, tx_ids: list[bytes]) -> list[bytes | None]:
        return [self.pool.get(tx_id) for tx_id in tx_ids]


def _limits(**overrides: object) -> Limits:
    # No dialing of its own and no peer exchange: the topology is the one a test builds.
    base: dict[str, object] = {"max_outbound": 0, "pex_interval": 3600.0}
    base.update(overrides)
    return fast_limits(**base)


async def _start(nodes: Cluster, count: int, **limits: object) -> list[Node]:
    started = []
    for _ in range(count):
        host = PoolHost()
        started.append(await nodes.add(host=host, tx_pool=host, limits=_limits(**limits)))
    return started


async def _link(pairs: list[tuple[Node, Node]]) -> None:
    for dialer, listener in pairs:
        await dialer.network.connect(listener.address)
    await wait_until_async(
        lambda: all(dialer.id in listener.peer_ids() for dialer, listener in pairs),
        what="links established",
    )


def _pool(node: Node) -> dict[bytes, bytes]:
    host = node.host
    assert isinstance(host, PoolHost)
    return host.pool


async def fetched_by_id(
    nodes: Cluster,
    txs: list[bytes],
    limits: Limits,
    sender_host: PoolHost | None = None,
    asker_limits: Limits | None = None,
) -> tuple[Node, Node]:
    """A sender holding `txs` linked to an asker, both under `limits` (the asker under
    `asker_limits` if given); returns (sender, asker) once the asker has fetched every
    one of them by id."""
    sender_host = sender_host or PoolHost()
    asker_host = PoolHost()
    sender = await nodes.add(host=sender_host, tx_pool=sender_host, limits=limits)
    asker = await nodes.add(host=asker_host, tx_pool=asker_host, limits=asker_limits or limits)
    await _link([(sender, asker)])
    ids = [sha256(tx) for tx in txs]
    sender_host.pool.update(zip(ids, txs, strict=True))
    sender.network.announce_txs(ids, None)
    try:
        await wait_until_async(
            lambda: all(tx_id in asker_host.pool for tx_id in ids),
            what="the asker fetched every tx",
            timeout=20.0,
        )
    except AssertionError as exc:
        got = sum(tx_id in asker_host.pool for tx_id in ids)
        raise AssertionError(f"{exc}: got {got} of {len(ids)}") from None
    return sender, asker


def _counts(node: Node, way: str) -> dict[str, int]:
    return node.network.frame_counts()[way]


SAMPLES: list[Message] = [
    TxIds(b"".join(IDS)),
    GetTxs(3, b"".join(IDS[:2])),
    TxBodies(3, tuple(TXS[:2])),
    TxBodies(4, ()),  # "I hold none of them"
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_tx_relay_frames_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


def test_oversized_or_ragged_tx_id_frames_are_refused_at_decoding() -> None:
    """An announcement or request of more ids than the bound, none, or not whole 32-byte
    ids: refused before anything is looked up; the bounds themselves pass."""
    bad: list[Message] = [
        TxIds(IDS[0] * (MAX_TX_IDS_PER_ANNOUNCE + 1)),
        GetTxs(1, IDS[0] * (MAX_TXS_PER_FETCH + 1)),
        TxIds(b""),
        GetTxs(1, b"\x01" * 33),
        TxBodies(1, (b"t",) * (MAX_TXS_PER_FETCH + 1)),
        TxBodies(1, (b"",)),
    ]
    for message in bad:
        with pytest.raises(FrameError) as caught:
            decode(encode(message))
        assert caught.value.reason in (PeerReason.BAD_FIELD, PeerReason.TOO_LARGE)
    assert decode(encode(TxIds(IDS[0] * MAX_TX_IDS_PER_ANNOUNCE)))
    assert decode(encode(GetTxs(1, IDS[0] * MAX_TXS_PER_FETCH)))


def test_a_tx_crosses_a_line_of_nodes_by_announcement_and_fetch() -> None:
    """a-b-c-d-e in a line: a pushes the body to b; each next node learns the id from
    its neighbour's announcement and fetches the body from it. Every node ends up with
    the tx; beyond the first hop no body is pushed (no TXS frame), only fetched."""

    async def scenario() -> None:
        async with cluster() as nodes:
            a, b, c, d, e = await _start(nodes, 5)
            await _link([(b, a), (c, b), (d, c), (e, d)])
            host = a.host
            assert isinstance(host, PoolHost)
            host.submit(TXS[:3])
            await wait_until_async(
                lambda: all(set(IDS[:3]) <= set(_pool(n)) for n in (b, c, d, e)),
                what="the txs at the end of the line",
            )
            for node in (c, d, e):
                assert "TXS" not in _counts(node, "received"), _counts(node, "received")
                assert _counts(node, "received").get("TX_BODIES", 0) >= 1
            # The line held: nobody dialed around it.
            assert e.peer_ids() == {d.id} and a.peer_ids() == {b.id}

    run(scenario)


def test_a_node_with_one_peer_gets_a_tx_from_a_full_mesh() -> None:
    """Four nodes in a full mesh and a fifth hanging off one of them (not the origin):
    the mesh gets the pushed body, the leaf fetches it from its only peer."""

    async def scenario() -> None:
        async with cluster() as nodes:
            a, b, c, d, leaf = await _start(nodes, 5)
            await _link([(b, a), (c, a), (d, a), (c, b), (d, b), (d, c), (leaf, d)])
            host = a.host
            assert isinstance(host, PoolHost)
            host.submit([TXS[0]])
            await wait_until_async(lambda: IDS[0] in _pool(leaf), what="the tx at the leaf")
            # Each mesh node got the body pushed once, by the origin: none was relayed.
            for node in (b, c):
                assert _counts(node, "received").get("TXS") == 1
                assert "TX_BODIES" not in _counts(node, "received")

    run(scenario)


def test_a_dropped_announcement_does_not_lose_the_tx() -> None:
    """c is linked to b1 and b2, not to the origin a. b1's announcements to c are lost on
    the way (a dropped frame): b2's announcement still brings the tx to c."""

    async def scenario() -> None:
        async with cluster() as nodes:
            a, b1, b2, c = await _start(nodes, 4)
            await _link([(b1, a), (b2, a), (c, b1), (c, b2)])
            links = b1.network._links
            send = links.send

            def lossy(peer, frame, **options):  # type: ignore[no-untyped-def]
                if peer.peer_id == c.id and frame[1] == Kind.TX_IDS:
                    return True  # "sent", and lost on the way
                return send(peer, frame, **options)

            links.send = lossy  # type: ignore[method-assign]
            host = a.host
            assert isinstance(host, PoolHost)
            host.submit([TXS[1]])
            await wait_until_async(lambda: IDS[1] in _pool(c), what="the tx at c")
            assert b1.id not in {p for p, *_ in c.host.gossip}  # c never heard from b1

    run(scenario)


def test_a_dropped_request_is_asked_again_of_the_other_holder() -> None:
    """c is linked to b1 and b2, both holding the tx after a's push. c's first GET_TXS,
    to whichever of them announced first, is lost on the way: after the fetch timeout c
    asks the other announcer and gets the tx."""

    async def scenario() -> None:
        async with cluster() as nodes:
            a, b1, b2 = await _start(nodes, 3)
            (c,) = await _start(nodes, 1, tx_fetch_timeout=0.3)
            await _link([(b1, a), (b2, a), (c, b1), (c, b2)])
            links = c.network._links
            send = links.send
            dropped: list[str] = []

            def lossy(peer, frame, **options):  # type: ignore[no-untyped-def]
                if frame[1] == Kind.GET_TXS and not dropped:
                    dropped.append(peer.peer_id)
                    return True  # "sent", and lost on the way
                return send(peer, frame, **options)

            links.send = lossy  # type: ignore[method-assign]
            host = a.host
            assert isinstance(host, PoolHost)
            host.submit([TXS[5]])
            await wait_until_async(lambda: IDS[5] in _pool(c), what="the tx at c")
            answered_by = {p for p, kind, _ in c.host.gossip if kind is Kind.TXS}
            assert len(dropped) == 1 and answered_by == {b1.id, b2.id} - set(dropped)

    run(scenario)


async def _node(**limits: object) -> tuple[Network, PoolHost]:
    host = PoolHost()
    return await _network_on(host, **limits), host


async def _network_on(host: PoolHost, **limits: object) -> Network:
    """A started Network serving `host` (its tx pool too), with test limits."""
    network = Network(
        host,
        SigningKey.generate(),
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS_HASH,
        limits=_limits(score_decay_per_second=0, **limits),
        tx_pool=host,
    )
    host.network = network
    await network.start()
    return network


def _score(network: Network, peer: RawPeer) -> float:
    return next((p.score for p in network.peers() if p.peer_id == peer.id), -1.0)


def test_a_lost_request_is_asked_again_of_another_announcer() -> None:
    """Two peers announce the same tx; the one asked first never answers (its request
    was lost, or it lied). After the fetch timeout the node asks the other, gets the tx,
    and the silent announcer pays POINTS_UNDELIVERED_TX for it."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=0.3)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with (
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p1,
                accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p2,
            ):
                await p1.send(TxIds(IDS[2]))
                first = await p1.receive_kind(GetTxs)
                assert first.ids() == [IDS[2]]
                await p2.send(TxIds(IDS[2]))  # already being fetched: p2 is noted, not asked
                second = await p2.receive_kind(GetTxs, timeout=3.0)
                assert second.ids() == [IDS[2]]
                await p2.send(TxBodies(second.request_id, (TXS[2],)))
                await wait_until_async(lambda: IDS[2] in host.pool, what="the tx fetched")
                assert _score(network, p1) == pytest.approx(POINTS_UNDELIVERED_TX)
                assert _score(network, p2) == 0
                # p1's late answer is not punished as unsolicited, and the tx it delivered
                # after all is no longer scored undelivered (rev14a: an honest peer on a
                # slow link, every answer late, was banned for txs it delivered).
                await p1.send(TxBodies(first.request_id, (TXS[2],)))
                await p1.send(TxIds(IDS[3]))  # a marker: frames of a link are in order
                await p1.receive_kind(GetTxs)
                assert _score(network, p1) == 0
        finally:
            await network.stop()

    run(scenario)


@asynccontextmanager
async def _two_announcers_of_one_tx(
    network: Network,
) -> AsyncIterator[tuple[RawPeer, RawPeer, GetTxs]]:
    """Two peers announce IDS[4], p1 first: yields them and the request p1 got for it
    (p2 holds a request for IDS[5], a marker that its announcement was taken)."""
    peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
    async with (
        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p1,
        accepted_raw_peer(network.listen_address, CHAIN_ID, GENESIS_HASH, peers) as p2,
    ):
        await p1.send(TxIds(IDS[4]))
        first = await p1.receive_kind(GetTxs)
        await p2.send(TxIds(IDS[4]))
        await p2.send(TxIds(IDS[5]))
        await p2.receive_kind(GetTxs)
        yield p1, p2, first


def test_an_announcer_that_answers_without_the_tx_is_not_scored_and_the_next_one_asked() -> None:
    """An empty answer (it no longer holds the tx) moves the fetch on at once, to the next
    announcer, without waiting for the timeout; it costs the announcer nothing."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=30.0)
        try:
            async with _two_announcers_of_one_tx(network) as (p1, p2, first):
                await p1.send(TxBodies(first.request_id, ()))
                again = await p2.receive_kind(GetTxs, timeout=3.0)
                assert again.ids() == [IDS[4]]
                await p2.send(TxBodies(again.request_id, (TXS[4],)))
                await wait_until_async(lambda: IDS[4] in host.pool, what="the tx fetched")
                assert _score(network, p1) == 0  # an honest miss: committed meanwhile
        finally:
            await network.stop()

    run(scenario)


def test_a_tx_committed_while_fetched_is_not_asked_of_its_next_announcers() -> None:
    """Issue 22 (wan17): at load an announcer often misses a tx because it committed it, and
    so did we (its block brought the body). The fetch ends there: the next announcer is
    not asked (each would miss it too, a round trip each), and the miss costs nothing."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=30.0)
        try:
            async with _two_announcers_of_one_tx(network) as (p1, p2, first):
                host.pool[IDS[4]] = TXS[4]  # its block committed here
                host.committed.add(IDS[4])
                await p1.send(TxBodies(first.request_id, ()))
                await wait_until_async(
                    lambda: network.frame_counts()["received"].get("TX_BODIES", 0) == 1,
                    what="the empty answer taken",
                )
                await p2.send(TxIds(IDS[3]))
                after = await p2.receive_kind(GetTxs, timeout=3.0)
                assert after.ids() == [IDS[3]]  # not IDS[4] again
                assert _score(network, p1) == 0
        finally:
            await network.stop()

    run(scenario)


def test_txs_nobody_asked_for_are_refused_and_scored() -> None:
    """An answer holding a tx that was not asked for (a liar pushing its own txs through
    the fetch path), or an answer to no request: refused, the host never sees the tx,
    and the peer pays as for any bad or unsolicited answer."""

    async def scenario() -> None:
        network, host = await _node()
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as liar:
                await liar.send(TxBodies(77, (TXS[0],)))
                await wait_until_async(
                    lambda: _score(network, liar) >= POINTS_UNSOLICITED, what="unsolicited scored"
                )
                await liar.send(TxIds(IDS[1]))
                request = await liar.receive_kind(GetTxs)
                await liar.send(TxBodies(request.request_id, (TXS[0],)))
                await wait_until_async(
                    lambda: _score(network, liar) >= POINTS_UNSOLICITED + POINTS_BAD_RESPONSE,
                    what="the wrong tx scored",
                )
                assert host.pool == {} and host.gossip == []
        finally:
            await network.stop()

    run(scenario)


def test_a_request_for_unknown_ids_answers_what_the_node_holds() -> None:
    """A peer asks for a tx we announced to it and hold, one we do not hold (committed, or
    never seen) and one we hold but never announced to it: we answer with the first only
    (rev14a: a body goes only to a peer we announced it to, at most SERVE_TIMES), no
    fault on either side; and we do not announce the txs it asked for later (it holds
    them now)."""

    async def scenario() -> None:
        network, host = await _node()
        try:
            host.pool[IDS[0]] = TXS[0]
            host.pool[IDS[3]] = TXS[3]
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as asker:
                network.announce_txs([IDS[0]])
                assert (await asker.receive_kind(TxIds)).ids() == [IDS[0]]
                await asker.send(GetTxs(9, IDS[1] + IDS[0] + IDS[3]))
                answer = await asker.receive_kind(TxBodies)
                assert answer == TxBodies(9, (TXS[0],))
                assert _score(network, asker) == 0
                network.announce_txs([IDS[1], IDS[2]])
                announced = await asker.receive_kind(TxIds)
                assert announced.ids() == [IDS[2]]
        finally:
            await network.stop()

    run(scenario)


def test_an_announcement_of_held_or_fetched_ids_asks_only_for_the_rest() -> None:
    async def scenario() -> None:
        network, host = await _node()
        try:
            host.pool[IDS[0]] = TXS[0]
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as peer:
                await peer.send(TxIds(IDS[0] + IDS[1] + IDS[1] + IDS[2]))
                request = await peer.receive_kind(GetTxs)
                assert request.ids() == [IDS[1], IDS[2]]
                await peer.send(TxBodies(request.request_id, (TXS[1], TXS[2])))
                await wait_until_async(lambda: IDS[2] in host.pool, what="fetched")
                # Announced again later (a second announcer's copy): not fetched again.
                await peer.send(TxIds(IDS[1] + IDS[3]))
                again = await peer.receive_kind(GetTxs)
                assert again.ids() == [IDS[3]]
                assert _score(network, peer) == 0
        finally:
            await network.stop()

    run(scenario)


def test_an_announcement_flood_over_the_id_rate_is_dropped_and_scored() -> None:
    """A peer announcing ids faster than `tx_ids_rate` (to make us ask for junk): the ids
    over the rate are not fetched and each such frame costs it rate-limit points.
    (fix13r: we ask within the rate the peer applies to us, at half its burst at once, so
    the 100 ids may come in more than one request, half a second apart: the requests get
    a timeout long enough to be open still when the count is checked.)"""

    async def scenario() -> None:
        network, _host = await _node(tx_ids_rate=Rate(100, 100), tx_fetch_timeout=5.0)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, peers
            ) as flooder:
                junk = [sha256(b"junk-%d" % i) for i in range(150)]
                await flooder.send(TxIds(b"".join(junk[:100])))
                await flooder.send(TxIds(b"".join(junk[100:])))
                asked: list[bytes] = []
                while len(asked) < 100:
                    asked.extend((await flooder.receive_kind(GetTxs)).ids())
                assert asked == junk[:100]
                await wait_until_async(lambda: _score(network, flooder) > 0, what="scored")
                await asyncio.sleep(0)
                assert network._tx_fetch.fetching() == 100
        finally:
            await network.stop()

    run(scenario)
