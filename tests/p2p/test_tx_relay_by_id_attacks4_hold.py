"""Defences of tx relay by id checked in rev14a's review that held: peers that announce
junk, leave requests open and go leave nothing behind in the fetcher, and the ids they
were asked for go on to an honest announcer at once."""

from __future__ import annotations

import contextlib

import pytest

from fluxchain.core.crypto import sha256
from p2p.messages import GetTxs, TxBodies, TxIds
from tests.p2p.harness import CHAIN_ID, GENESIS_HASH, accepted_raw_peer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS, _node
from tests.p2p.test_tx_relay_by_id_attacks2 import _announced, _peer_ids
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_peers_that_churn_leave_no_fetch_state_behind() -> None:
    """Eight peers in turn announce 500 junk ids and an honest tx's id, are asked for
    them, and leave without answering. Each departure hands the honest id to the next
    announcer at once; once all are gone, the fetcher keeps no state of theirs and no
    fetch, and the honest holder (which announced too) is asked for the tx."""

    async def scenario() -> None:
        network, host = await _node(tx_fetch_timeout=5.0)
        try:
            peers = lambda: [p.peer_id for p in network.peers()]  # noqa: E731
            address = network.listen_address
            async with accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers) as honest:
                async with contextlib.AsyncExitStack() as stack:
                    churners = []
                    for index in range(8):
                        churner = await stack.enter_async_context(
                            accepted_raw_peer(address, CHAIN_ID, GENESIS_HASH, peers)
                        )
                        junk = [sha256(b"churn-%d-%d" % (index, i)) for i in range(500)]
                        await churner.send(TxIds(b"".join([IDS[2], *junk])))
                        churners.append(churner)
                    await churners[0].receive_kind(GetTxs)
                    await _announced(honest, [IDS[2]], b"honest-churn-marker")
                gone = {c.id for c in churners}
                await wait_until_async(
                    lambda: not gone & set(_peer_ids(network)), what="churners gone"
                )
                request = await honest.receive_kind(GetTxs, timeout=3.0)
                assert IDS[2] in request.ids()
                await honest.send(TxBodies(request.request_id, (TXS[2],)))
                await wait_until_async(lambda: IDS[2] in host.pool, what="the honest tx")
                fetcher = network._tx_fetch
                await wait_until_async(lambda: fetcher.fetching() == 0, what="no fetch left")
                assert not gone & set(fetcher._state)
        finally:
            await network.stop()

    run(scenario)
