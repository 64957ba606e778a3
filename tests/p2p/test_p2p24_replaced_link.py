"""p2p24 2: a link replaced as a duplicate (`Network._establish`: both ends keep the one
the node with the smaller key dialed) closes the old one, and what waited to leave on it
is lost. Consensus frames come again from round state (`ConsensusGossip.forget`, our
ROUND_STATE sent again), block, snapshot and proposal-tx answers fail their requests at
the asker, which asks again (its old link closed too), STATUS is sent on every new link
and PEERS is asked again. Tx announcements were the frames no protocol sent again: an
id is announced once, when the host admits its tx, and the replaced link's waiting and
queued announcements went with it, so a peer with no other neighbour never got the tx.
"""

from __future__ import annotations

from fluxchain.core.crypto import SigningKey, sha256
from tests.p2p.harness import cluster, run
from tests.p2p.test_tx_relay_by_id import PoolHost, _limits, _pool
from tests.support.wait import wait_until_async

TX = b"p2p24 announced before the link was replaced " * 4


def test_an_announcement_waiting_on_a_replaced_link_is_sent_on_the_new_one() -> None:
    async def scenario() -> None:
        low, high = sorted((SigningKey.generate() for _ in range(2)), key=lambda k: k.public_key)
        # The window long enough that the announcement is still waiting when the link is
        # replaced (on a loaded machine too).
        limits = _limits(tx_announce_wait=2.0)
        async with cluster() as nodes:
            a_host, b_host = PoolHost(), PoolHost()
            a = await nodes.add(host=a_host, tx_pool=a_host, limits=limits, key=high)
            b = await nodes.add(host=b_host, tx_pool=b_host, limits=limits, key=low)
            await a.network.connect(b.address)  # dialed by the larger key: replaceable
            await wait_until_async(lambda: a.id in b.peer_ids(), what="a linked to b")
            tx_id = sha256(TX)
            a_host.pool[tx_id] = TX
            a.network.announce_txs([tx_id], None)  # admitted from a peer b does not have
            await b.network.connect(a.address)  # dialed by the smaller key: replaces it
            await wait_until_async(
                lambda: (
                    (b.id, "duplicate_peer") in a_host.disconnected
                    and a_host.connected == [b.id, b.id]
                    and a.id in b.peer_ids()
                ),
                what="the link replaced",
            )
            try:
                await wait_until_async(
                    lambda: tx_id in _pool(b), what="b fetched the tx", timeout=6.0
                )
            except AssertionError:
                raise AssertionError(
                    "a's announcement to b waited on the link the new one replaced and was "
                    f"never sent again: b's frames received {b.network.frame_counts()['received']}"
                ) from None

    run(scenario, timeout=30.0)
