"""Issue 24 (api20 1): a client's tx the mempool refuses for now but the node parks (it
may still commit once its sender's account changes) is answered as held, not refused:
202 `held` with the refusal's reason, found by `GET /txs/{id}` as held, then pending,
then confirmed. A tx the node does not keep is still refused (429 for overload)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.tx import Transfer
from fluxchain.node.admission import PARKED_PER_SENDER
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from tests.api.test_api import Client, api, commit, tx_status
from tests.support.chain import Builder, funded_key, owner_key

GAPPED = 1  # the pool takes one of a sender's txs behind a nonce gap; the rest wait


def _api(tmp_path: Path) -> AbstractAsyncContextManager[tuple[Client, NodeService, Builder]]:
    """The API of a node whose pool takes GAPPED txs a sender behind a nonce gap."""
    return api(tmp_path, Mempool(MempoolLimits(max_gapped_per_sender=GAPPED)))


def test_api20_a_tx_parked_for_sender_limit_is_answered_held_and_commits(tmp_path: Path) -> None:
    async def main() -> None:
        async with _api(tmp_path) as (client, service, b):
            to = address_of(owner_key(6).public_key)
            first, gapped, second, third = [b.tx(funded_key(), Transfer(to, 1)) for _ in range(4)]
            # Nonce 0 comes last: nonce 1 waits in the pool behind the gap, 2 and 3 past
            # the sender's room for gapped txs (sender_limit, a 429 before).
            assert (await client.post("/txs", json={"tx": gapped.raw.hex()})).status == 202
            answer = await client.post("/txs", json={"tx": second.raw.hex()})
            body = await answer.json()
            assert answer.status == 202, body
            assert body["id"] == second.id.hex() and body["status"] == "held", body
            assert body["reason"] == "sender_limit", body
            status = await tx_status(client, second.id)
            assert status["status"] == "held" and status["reason"] == "sender_limit", status
            # The same bytes again: still held, not a refusal.
            again = await client.post("/txs", json={"tx": second.raw.hex()})
            assert again.status == 202 and (await again.json())["status"] == "held"
            batch = await client.post("/txs/batch", json={"txs": [third.raw.hex()]})
            assert batch.status == 200
            (result,) = (await batch.json())["results"]
            assert result == {
                "id": third.id.hex(),
                "status": "held",
                "reason": "sender_limit",
                "message": result["message"],
            }, result
            # The gap filled: the held txs are offered at once and pooled.
            assert (await client.post("/txs", json={"tx": first.raw.hex()})).status == 202
            assert (await tx_status(client, second.id))["status"] == "pending"
            assert (await tx_status(client, third.id))["status"] == "pending"
            commit(service, b)
            for tx in (first, gapped, second, third):
                assert (await tx_status(client, tx.id))["status"] == "confirmed"

    asyncio.run(main())


def test_api20_a_tx_the_node_does_not_keep_is_still_refused(tmp_path: Path) -> None:
    """Past the txs a sender may have parked its last nonce is not kept: a 429, as before."""

    async def main() -> None:
        async with _api(tmp_path) as (client, _, b):
            to = address_of(owner_key(6).public_key)
            b.tx(funded_key(), Transfer(to, 1))  # nonce 0, never sent: a gap
            txs = [b.tx(funded_key(), Transfer(to, 1)) for _ in range(GAPPED + PARKED_PER_SENDER)]
            answers = await client.post("/txs/batch", json={"txs": [t.raw.hex() for t in txs]})
            results = (await answers.json())["results"]
            assert [r.get("status") for r in results[:GAPPED]] == ["pending"] * GAPPED
            assert [r.get("status") for r in results[GAPPED:]] == ["held"] * PARKED_PER_SENDER
            late = b.tx(funded_key(), Transfer(to, 1))
            refused = await client.post("/txs", json={"tx": late.raw.hex()})
            assert refused.status == 429 and refused.headers["Retry-After"] == "1"
            assert (await refused.json())["error"]["reason"] == "sender_limit"
            assert (await tx_status(client, late.id))["status"] == "rejected"

    asyncio.run(main())
