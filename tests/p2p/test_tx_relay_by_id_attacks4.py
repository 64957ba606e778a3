"""Review of tx relay by id and peer scoring (rev14a), after fix14a/fix14b: an honest peer
on a slow link that delivers every tx late is banned for "undelivered" txs it delivered;
bodies waiting for a slow host are not counted in their announcer's share, so one peer
holds all of `max_tx_fetching` and an honest peer's tx is never asked for; the points a
key left with are forgotten once `max_bans` throwaway keys left after it; and a tx body
goes to one asker any number of times once it has asked for `known_txs_per_peer` others.
Each test states what a user or operator would check and fails on wt/integ14."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from p2p.limits import POINTS_UNSOLICITED, Limits
from p2p.messages import (
    MAX_TX_IDS_PER_ANNOUNCE,
    MAX_TXS_PER_FETCH,
    GetTxs,
    Gossip,
    Kind,
    TxBodies,
    TxIds,
    encode,
)
from p2p.network import Network
from p2p.tx_fetch import SERVE_TIMES
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, RawPeer, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, PoolHost, _network_on, _node, _score
from tests.p2p.test_tx_relay_by_id_attacks3 import _asked_within
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _peer_from, _peer_ids, _unsolicited
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def _peers_of(network: Network) -> Callable[[], list[str]]:
    """The ids of `network`'s peers, asked when called (for `accepted_raw_peer`)."""
    return lambda: [p.peer_id for p in network.peers()]


def test_an_honest_peer_on_a_slow_link_that_delivers_every_tx_late_is_banned() -> None:
    """An honest peer on a congested or slow link (an answer of 1,024 txs takes longer
    than `tx_fetch_timeout` to arrive: ~300 KB at 2 Mbit/s) announces 12,288 txs and
    delivers every one it is asked for, each answer a little after its request expired.
    The late answers are taken (the txs arrive), but every id of every expired request
    was already scored `undelivered` (0.01 each, 10.24 a request) and nothing is given
    back when the bodies come: after ten late answers the peer is banned for 24 h (and
    its IP's points, summed over up to three NAT neighbours, get there three times as
    fast). What an operator sees: an honest, merely slow, peer banned for "announced txs
    not delivered" that it delivered. Fix direction: a late answer that delivers an id
    takes back that id's `undelivered` points (its ids went to the next announcers at
    the deadline anyway, so a late deliverer delays nothing), or score a request only
    once its late answer can no longer come (EXPIRED_KEPT)."""

    async def scenario() -> None:
        timeout = 0.3
        network, host = await _node(tx_fetch_timeout=timeout)
        txs = [b"slow-link-%05d " % i * 4 for i in range(12 * MAX_TXS_PER_FETCH)]
        pool = {sha256(tx): tx for tx in txs}
        ids = list(pool)
        loop = asyncio.get_running_loop()
        try:
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, _peers_of(network)
            ) as slow:
                for start in range(0, len(ids), MAX_TX_IDS_PER_ANNOUNCE):
                    await slow.send(TxIds(b"".join(ids[start : start + MAX_TX_IDS_PER_ANNOUNCE])))

                async def answer_late(request: GetTxs) -> None:
                    # Past the deadline and the expiry sweep (every timeout / 4) after it.
                    await asyncio.sleep(timeout + 0.2)
                    bodies = tuple(pool[tx_id] for tx_id in request.ids() if tx_id in pool)
                    with contextlib.suppress(Exception):
                        await slow.send(TxBodies(request.request_id, bodies))

                async def serve() -> None:
                    answers: set[asyncio.Task[None]] = set()
                    try:
                        while True:
                            request = await slow.receive_kind(GetTxs, timeout=30.0)
                            task = loop.create_task(answer_late(request))
                            answers.add(task)
                            task.add_done_callback(answers.discard)
                    finally:
                        for task in list(answers):
                            task.cancel()
                        await asyncio.gather(*answers, return_exceptions=True)

                server = loop.create_task(serve())
                try:
                    await wait_until_async(
                        lambda: len(host.pool) == len(pool) or slow.id not in _peer_ids(network),
                        timeout=12.0,
                        what="every tx delivered, or the slow peer dropped",
                    )
                finally:
                    server.cancel()
                    await asyncio.gather(server, return_exceptions=True)
                delivered = sum(tx_id in host.pool for tx_id in ids)
                assert slow.id in _peer_ids(network), (
                    f"the slow peer, which delivered {delivered} of the {len(ids)} txs it "
                    "announced (each answer late), was banned for txs not delivered"
                )
                assert delivered == len(ids)
        finally:
            await network.stop()

    run(scenario)


class _SlowHost(PoolHost):
    """A host that takes `delay` seconds over each TXS frame (signature checks of a
    thousand txs at load, or a host busy with a block), for every peer alike."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        if kind is Kind.TXS:
            await asyncio.sleep(self.delay)
        return await super().on_gossip(peer_id, kind, payload)


def test_bodies_waiting_for_a_slow_host_let_one_peer_hold_all_of_max_tx_fetching() -> None:
    """A peer's share of `max_tx_fetching` (here 40 over 4 slots: 10) counts the ids it
    is being asked for, not the ids whose bodies it delivered and that wait in its inbox
    for the host (their fetches stay open until `handled`). An attacker answers every
    request at once with bodies of its own (validly signed txs from an unfunded account
    cost the node a signature check each and the attacker no points), announcing far
    more: its inbox fills faster than a busy host empties it, and every answer frees its
    share for the next request. Its waiting bodies soon hold the whole bound (in
    production 512 inbox frames of 1,024 txs: five times the 100,000), and each slot the
    host frees goes to it again. An honest peer announcing a tx meanwhile is never asked
    for it. What a user sees: their tx never reaches this node while the attacker keeps
    its inbox full. Fix direction: count a peer's fetched ids that wait for the host
    (`handed`, `unqueued`) toward its share, so that its own backlog waits, not the
    others'."""

    async def scenario() -> None:
        host = _SlowHost(delay=1.0)
        bound = 40
        network = await _network_on(host, max_inbound=4, max_tx_fetching=bound)
        junk = [b"junk-body-%05d " % i * 4 for i in range(2000)]
        bodies = {sha256(tx): tx for tx in junk}
        loop = asyncio.get_running_loop()
        try:
            address = network.listen_address
            async with accepted_raw_peer(
                address, CHAIN_ID, GENESIS_HASH, _peers_of(network)
            ) as attacker:
                await attacker.send(TxIds(b"".join(list(bodies)[:MAX_TX_IDS_PER_ANNOUNCE])))
                delivered = 0

                async def answer_at_once() -> None:
                    nonlocal delivered
                    while True:
                        request = await attacker.receive_kind(GetTxs, timeout=30.0)
                        got = tuple(bodies[i] for i in request.ids() if i in bodies)
                        await attacker.send(TxBodies(request.request_id, got))
                        delivered += len(got)

                answering = loop.create_task(answer_at_once())
                try:
                    # As many bodies as the bound delivered: without a share counting
                    # them, all wait for the host, the bound full (fix14c: waiting for
                    # `fetching() >= bound` waited for what the fix forbids; with it the
                    # host's 1 s a frame paces the attacker to its share a second).
                    await wait_until_async(
                        lambda: delivered >= bound,
                        timeout=10.0,
                        what="the attacker delivered as many bodies as the bound",
                    )
                    async with accepted_raw_peer(
                        address, CHAIN_ID, GENESIS_HASH, _peers_of(network)
                    ) as honest:
                        await honest.send(TxIds(IDS[0]))
                        deadline = 4.0
                        request = await _asked_within(honest, IDS[0], deadline)
                        assert request is not None, (
                            f"the honest peer's tx was not asked for within {deadline} s: "
                            f"{network._tx_fetch.fetching()} of {bound} fetches held by the "
                            "attacker's bodies waiting for the host"
                        )
                        await honest.send(TxBodies(request.request_id, (TXS[0],)))
                        await wait_until_async(lambda: IDS[0] in host.pool, what="the tx")
                finally:
                    answering.cancel()
                    await asyncio.gather(answering, return_exceptions=True)
        finally:
            await network.stop()

    run(scenario)


def test_throwaway_keys_push_a_keys_remembered_points_out_of_left_scores() -> None:
    """An attacker's key earns 80 points (four answers nobody asked for) and leaves: its
    points are remembered (`LeftScores`, at most `max_bans` keys, here 8) and it should
    start with them when it comes back. Before coming back it connects `max_bans`
    throwaway keys that each earn a little and leave (in production 4,096 keys: each
    announces one id it leaves unanswered, 0.01 points, 41 in all for its IP, a couple
    of minutes with 40 inbound slots): the oldest entry, the key's own, is forgotten, and
    the key comes back clean, for another 99 points of misbehaviour, as often as it
    likes. docs/p2p.md: a peer that never answers "is banned after 10,000 of them,
    however often it reconnects". What an operator sees: a key that keeps misbehaving
    and is never banned. Fix direction: evict the entry with the fewest (decayed) points
    first, or keep no entry under a floor, so that throwaway keys push out each other
    rather than the keys worth remembering."""

    async def scenario() -> None:
        capacity = 8
        network = await _network_on(PoolHost(), max_bans=capacity)
        repeat_key = SigningKey.generate()
        try:
            async with _peer_from(network, "127.0.0.2", repeat_key) as attacker:
                await _unsolicited(attacker, network, 4)
            for index in range(capacity):
                async with _peer_from(network, "127.0.0.3", SigningKey.generate()) as throwaway:
                    await throwaway.send(TxBodies(800 + index, (TXS[5],)))
                    await wait_until_async(
                        lambda: _score(network, throwaway) >= POINTS_UNSOLICITED,
                        what="the throwaway key scored",
                    )
            async with _peer_from(network, "127.0.0.2", repeat_key) as attacker:
                carried = _score(network, attacker)
                assert carried >= 4 * POINTS_UNSOLICITED, (
                    f"the key came back with {carried} points, not the 80 it left with: "
                    f"{capacity} throwaway keys pushed them out of the remembered scores"
                )
        finally:
            await network.stop()

    run(scenario)


async def _ask_rounds(asker: RawPeer, ids: list[bytes], rounds: int) -> list[TxBodies]:
    """`asker` asks for all of `ids` `rounds` times (the first round at once, the others
    within its id rate, 10,000/s); every answer."""
    requests = 0

    async def ask_all() -> None:
        nonlocal requests
        for round_ in range(rounds):
            for start in range(0, len(ids), MAX_TXS_PER_FETCH):
                chunk = b"".join(ids[start : start + MAX_TXS_PER_FETCH])
                await asker.send(GetTxs(requests, chunk))
                requests += 1
                if round_:  # within the id rate (10,000/s) after the burst
                    await asyncio.sleep(0.11)

    answers: list[TxBodies] = []
    asking = asyncio.get_running_loop().create_task(ask_all())
    try:
        while len(answers) < rounds * -(-len(ids) // MAX_TXS_PER_FETCH):
            answers.append(await asker.receive_kind(TxBodies, timeout=5.0))
    finally:
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)
    return answers


def _mempool(host: PoolHost, count: int) -> list[bytes]:
    for index in range(count):
        tx = b"mempool-%06d" % index
        host.pool[sha256(tx)] = tx
    return list(host.pool)


def test_a_tx_body_goes_to_one_asker_any_number_of_times_past_known_txs_per_peer() -> None:
    """docs/p2p.md: "A tx body goes to one peer at most twice (...) however many requests
    name it". The count per peer (`served`) is bounded by `known_txs_per_peer` (16,384)
    and forgets the least recently served first: a peer asking, within its id rate, for
    all the txs of a mempool of 17,408 (a few seconds of the target load) over and over
    gets every body again each round, for 32 bytes asked per body. SERVE_TIMES bounds
    nothing for a peer that cycles through more txs than the bound: sustained at its id
    rate (10,000/s) that is 10,000 bodies a second per connection (40 inbound slots, and
    the largest txs of the pool chosen), for 320 KB/s of requests. What an operator sees:
    upload saturated by peers asking for the same mempool again and again. Fix
    direction: serve only txs announced to that peer (Bitcoin answers GETDATA only for
    txs it announced to the asker, or relayed lately), or keep counting the copies sent
    (e.g. bytes served per peer against an outgoing budget) past the eviction."""

    async def scenario() -> None:
        host = PoolHost()
        network = await _network_on(host)
        rounds = SERVE_TIMES + 1
        ids = _mempool(host, 17 * MAX_TXS_PER_FETCH)  # more than known_txs_per_peer (16,384)
        first = host.pool[ids[0]]
        try:
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, _peers_of(network)
            ) as asker:
                answers = await _ask_rounds(asker, ids, rounds)
                copies = sum(answer.txs.count(first) for answer in answers)
                assert copies <= SERVE_TIMES, (
                    f"one tx body went to the same peer {copies} times in {len(answers)} "
                    f"answers (SERVE_TIMES {SERVE_TIMES})"
                )
        finally:
            await network.stop()

    run(scenario)


def test_txs_announced_to_a_peer_past_known_txs_per_peer_go_to_it_at_most_serve_times() -> None:
    """fix14c: the node announced to its peer more txs than `known_txs_per_peer` (a few
    seconds at the target load); the peer asks for every one, over and over. It gets the
    body of each tx still remembered as announced to it (the last `known_txs_per_peer`),
    and each at most SERVE_TIMES however often it asks (on wt/integ14 the counts of the
    oldest were forgotten, and every body went again each round)."""

    async def scenario() -> None:
        host = PoolHost()
        bound = 4 * MAX_TXS_PER_FETCH
        network = await _network_on(host, known_txs_per_peer=bound)
        ids = _mempool(host, bound + MAX_TXS_PER_FETCH)
        try:
            async with accepted_raw_peer(
                network.listen_address, CHAIN_ID, GENESIS_HASH, _peers_of(network)
            ) as asker:
                network.announce_txs(ids)
                told: set[bytes] = set()
                while len(told) < len(ids):
                    told.update((await asker.receive_kind(TxIds, timeout=5.0)).ids())
                answers = await _ask_rounds(asker, ids, SERVE_TIMES + 2)
                copies = Counter(tx for answer in answers for tx in answer.txs)
                most = max(copies.values(), default=0)
                assert most <= SERVE_TIMES, f"a tx body went to the same peer {most} times"
                served = {sha256(tx) for tx in copies}
                assert set(ids[-bound:]) <= served, (
                    f"{len(set(ids[-bound:]) - served)} of the last {bound} txs announced "
                    "to the peer were not served when it asked"
                )
        finally:
            await network.stop()

    run(scenario)


def test_an_announcement_dropped_over_a_peers_byte_budget_is_never_sent_again() -> None:
    """A node relays to a leaf (a peer whose only neighbour it is) a tx it took from
    another peer. Just before, it sent the leaf frames up to the byte budget the leaf
    applies to it (`out_bytes`: a large proposal or a batch of its own large txs; here
    the budget is small and slow to refill so that the test is short). The TX_IDS frame
    is dropped at the budget (`_send_budgeted`: "the ids are announced by other holders
    too"), but its ids stay in the leaf's `known` set: they are never announced to it
    again, and the leaf, which has no other holder, never gets the tx (the origin
    re-sends by body to its own peers only). The same happens when the leaf's send queue
    is full (a slow link). What a user sees: a tx sent through a node that is someone's
    only peer never reaches that node. Fix direction: on a failed send, take the ids out
    of `known` again and keep them for a later flush (bounded like `announce`)."""

    async def scenario() -> None:
        burst = 64 * 1024
        host = PoolHost()
        network = await _network_on(host, bytes_per_second=20.0, bytes_burst=float(burst))
        try:
            address = network.listen_address
            async with (
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, _peers_of(network)) as source,
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, _peers_of(network)) as leaf,
            ):
                # The node's own tx, its frame exactly the share of the leaf's byte
                # budget that tx frames may use (the rest is kept for consensus frames).
                budget = int(burst * Limits().bulk_share)
                overhead = len(encode(Gossip(Kind.TXS, pack([b""]))))
                size = budget - overhead
                while len(encode(Gossip(Kind.TXS, pack([b"O" * size])))) > budget:
                    size -= 1
                host.submit([b"O" * size])
                await leaf.receive_kind(Gossip, timeout=5.0)
                await source.send(Gossip(Kind.TXS, pack([TXS[1]])))
                await wait_until_async(lambda: IDS[1] in host.pool, what="the relayed tx")
                announced = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(6.0):
                        while not announced:
                            message = await leaf.receive_kind(TxIds, timeout=6.0)
                            announced = IDS[1] in message.ids()
                assert announced, (
                    "the relayed tx was never announced to the leaf: its TX_IDS was dropped "
                    "at the leaf's byte budget and its id kept as known to the leaf"
                )
        finally:
            await network.stop()

    run(scenario)
