"""rev24p: a replaced link re-announces the ids its peer is known to hold.

The attack (or just two nodes dialing each other, the common case at a restart): node A
announced txs to node B and B fetched every one of them from A (it asked for them: A
knows B holds them). Then B dials A, and by the smaller-key rule the new link replaces
the old one as a duplicate (`Network._establish`, p2p24 2).

What happens now: `TxFetcher.announcements_of` returns every id A announced on the old
link (`offered`) as "ours" and only the rest of `known` as "held"; but an id A announced
is always in `known` too (`_release`/`_queue_announcements` add it there), so "held"
never holds an announced id and `announce_again` puts all of them back in the trickle.
A announces to B, again, every pooled tx B already fetched from it: up to
`known_txs_per_peer` (16,384) ids a replacement, a whole mempool's worth of TX_IDS, and
each id is served SERVE_TIMES more (its `offered` count is reset).

What should happen (docs/p2p.md, "Duplicate connections", and the security row of p2p24
2): the ids "waiting to be" announced, or announced but whose asks died with the link,
are announced again "less the ids the peer is known to hold"; an id B asked for and got
is not news to B and must not cross the new link.
"""

from __future__ import annotations

from fluxchain.core.crypto import SigningKey, sha256
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import PoolHost, _limits, _pool
from tests.support.wait import wait_until_async

COUNT = 40


def test_ids_the_peer_fetched_before_the_link_was_replaced_are_not_announced_again() -> None:
    async def scenario() -> None:
        low, high = sorted((SigningKey.generate() for _ in range(2)), key=lambda k: k.public_key)
        limits = _limits(tx_announce_wait=0.05)
        async with cluster() as nodes:
            a_host, b_host = PoolHost(), PoolHost()
            a = await nodes.add(host=a_host, tx_pool=a_host, limits=limits, key=high)
            b = await nodes.add(host=b_host, tx_pool=b_host, limits=limits, key=low)
            await a.network.connect(b.address)  # dialed by the larger key: replaceable
            await wait_until_async(lambda: a.id in b.peer_ids(), what="a linked to b")
            txs = [b"rev24p tx %d " % i * 8 for i in range(COUNT)]
            tx_ids = [sha256(tx) for tx in txs]
            for tx_id, tx in zip(tx_ids, txs, strict=True):
                a_host.pool[tx_id] = tx
            a.network.announce_txs(tx_ids, None)  # admitted from a peer b does not have
            await wait_until_async(
                lambda: all(t in _pool(b) for t in tx_ids), what="b fetched every tx from a"
            )
            before = a.network.frame_counts()["tx_ids"]["announced_out"]
            assert before == COUNT, before
            await b.network.connect(a.address)  # dialed by the smaller key: replaces it
            await wait_until_async(
                lambda: (
                    (b.id, "duplicate_peer") in a_host.disconnected
                    and a_host.connected == [b.id, b.id]
                    and a.id in b.peer_ids()
                ),
                what="the link replaced",
            )
            # A marker tx admitted after the replacement: once b has it, a's flushes on the
            # new link have run, the carried announcements' (due at once) among them.
            marker = b"rev24p marker after the replacement " * 4
            marker_id = sha256(marker)
            a_host.pool[marker_id] = marker
            a.network.announce_txs([marker_id], None)
            await wait_until_async(lambda: marker_id in _pool(b), what="b fetched the marker")
            after = a.network.frame_counts()["tx_ids"]["announced_out"]
            again = after - before - 1
            print(f"announced before={before} after={after} again={again}")
            assert again == 0, (
                f"a announced {again} of the {COUNT} ids b had fetched from it again on the "
                "new link: the ids the peer is known to hold were not left out"
            )

    run(scenario, timeout=30.0)
