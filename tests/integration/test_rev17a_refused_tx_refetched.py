"""A tx a real node refused for a full mempool is fetched again after its cool-down
(review rev17a 3, issue 22).

Attack (a busy honest network, no attacker needed): a peer relays a tx by id while our
mempool is full; it is refused, and the tx relay's refetch after `tx_refused_cooldown`
(docs/p2p.md) is meant to fetch it once room frees. But `Node.has_tx` answers from the
admission's `checked` cache, which `TxAdmission.admit` fills before the mempool refuses
the tx: the relay takes the refused tx as held (`TxFetcher._held`), so neither the
refetch (`_start_refetch`) nor a later announcement (`_lacks`) fetches it, until it ages
out of that cache (100,000 txs later). What a user sees: their tx, refused by a node
that was briefly full, never reaches that node's mempool (nor its blocks) by relay.
Fix direction: `has_tx` for the tx relay should mean pooled (or committed), not checked;
or a MEMPOOL_FULL refusal drops the tx from `checked`."""

from __future__ import annotations

from pathlib import Path

from fluxchain.node.mempool import MempoolLimits
from p2p.messages import GetTxs, TxBodies, TxIds
from tests.p2p.test_fix17_local_tx_clears_refusals import refused_for_a_full_mempool
from tests.support.clock import clock_loop, run_on_clock_loop
from tests.support.wait import wait_until_async


def test_rev17a_a_tx_refused_for_a_full_mempool_is_fetched_again_once_room_frees(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with refused_for_a_full_mempool(tmp_path) as (node, peer, refused):
            fetcher = node.network._tx_fetch
            until = fetcher._refused[refused.id].until
            node.service.mempool.limits = MempoolLimits(max_txs=2)  # room frees
            loop = clock_loop()
            await peer.send(TxIds(refused.id))  # it still holds it (cool-down on)
            # The cool-down ends by a skip, shorter than a heartbeat (the link stays up).
            assert loop.time() < until, "announced after the cool-down"
            loop.skip_to(until + 0.2)
            await peer.send(TxIds(refused.id))  # and says so again after it
            request: GetTxs = await peer.receive_kind(GetTxs, timeout=5.0)
            assert refused.id in request.ids()
            await peer.send(TxBodies(request.request_id, (refused.raw,)))
            await wait_until_async(
                lambda: refused.id in node.service.mempool,
                what="the refused tx admitted once room freed",
            )

    run_on_clock_loop(scenario)
