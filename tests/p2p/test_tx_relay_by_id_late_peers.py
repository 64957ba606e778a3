"""Fixes of rev14b (fix14d): a peer whose request expired, answered late, never, or stuck
in our send queue because it stopped reading, is "late": the ids it announces first are
asked of another announcer first; and a late answer takes back at most what is left of
its request's own points."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack
from p2p.messages import GetTxs, Kind, TxBodies
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import _node
from tests.p2p.test_tx_relay_by_id_attacks5 import delays_after_the_honest_announcement
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _peer_ids
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_a_first_announcer_that_stopped_reading_does_not_hold_up_each_tx() -> None:
    """A peer announces each tx first and then stops reading its link: our request for it
    waits in our send queue behind megabytes of gossip past its deadline (not charged:
    not its fault, rev14a). It is late from then on: the next txs it announces first are
    asked of the honest announcer that follows at once, not a whole timeout later."""

    async def scenario() -> None:
        timeout = 1.0
        network, host = await _node(tx_fetch_timeout=timeout)
        txs = [b"stuck-reader-%d " % i * 20 for i in range(4)]
        pool = {sha256(tx): tx for tx in txs}
        loop = asyncio.get_running_loop()
        serving: asyncio.Task[None] | None = None
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            address = network.listen_address
            async with (
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as stuck,
                accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as honest,
            ):

                async def serve_at_once() -> None:
                    with contextlib.suppress(Exception):  # the link closing at the end
                        while True:
                            request = await honest.receive_kind(GetTxs, timeout=30.0)
                            bodies = tuple(pool[t] for t in request.ids() if t in pool)
                            await honest.send(TxBodies(request.request_id, bodies))

                serving = loop.create_task(serve_at_once())
                # `stuck` reads nothing from here on: 28 MiB of gossip fill its link and
                # our send queue (the honest peer is left out of it).
                link = network._peers[stuck.id]
                for batch in range(4):
                    blobs = [bytes([batch, i]) * (512 * 1024) for i in range(7)]
                    network.broadcast(Kind.TXS, pack(blobs), exclude=honest.id)
                await wait_until_async(
                    lambda: len(link.send_queue) > 0,
                    what="frames waiting in the stuck peer's send queue",
                )
                delays = await delays_after_the_honest_announcement(
                    network, host, list(pool), stuck, honest
                )
                assert stuck.id in _peer_ids(network)
                assert max(delays[1:]) < timeout / 2, (
                    f"the peer whose request sat in our send queue past its deadline is "
                    f"still asked first: each tx came this long after the honest "
                    f"announcement: {delays} s"
                )
        finally:
            if serving is not None:
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
            await network.stop()

    run(scenario)
