"""rev21a, against api21 2: a tx a committed block made invalid is told `rejected`, since
every honest node drops it too (the block's rechecks, commit 96ce615). But the same tx
dropped by this node as the proposer that met it first (`note_dropped`) is `evicted`,
and stays so for as long as its nonce is unspent: on the proposer for ever, while every
other node, whose recheck drops it after the block, says `rejected`.

Unlucky honest user: two users register the same app name in the same block time; both
pass the door (the name is free on committed state). The proposer puts the dearer one
first and drops the cheaper one (`app_exists`); the block commits. The loser's tx can
never commit now (the name is taken), yet the proposer's API says `evicted` ("it may
still commit from a peer's pool") with no end: the loser's wallet keeps the nonce,
waits until its deadline, and every later send of that key lines up behind a nonce that
never fills. A verifying wallet asking several nodes takes `evicted` over `rejected`
(the more cautious), so asking other nodes does not help either.

What should happen: once the block the drop was made for commits, the tx reads
`rejected [app_exists]` on the proposer too, as on every other node."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.core.errors import TxError
from fluxchain.core.tx import AppRegister
from fluxchain.node.mempool import Mempool, MempoolLimits
from tests.api.test_api import api, tx_status
from tests.support.chain import FEE, VALIDATORS, app_spec, funded_key


def test_rev21a_a_tx_the_proposer_dropped_for_a_committed_conflict_is_rejected_after_it(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        # Rechecks would reach every sender here: it is this node's own proposal that
        # meets the loser first.
        async with api(tmp_path, Mempool(MempoolLimits())) as (client, service, b):
            winner, loser = funded_key(VALIDATORS), funded_key(VALIDATORS + 1)
            # The dearer one goes first in the block.
            first = b.tx(winner, AppRegister(app_spec(winner, "shop", expire=1_000)), fee=3 * FEE)
            second = b.tx(loser, AppRegister(app_spec(loser, "shop", expire=1_000)))
            for tx in (first, second):
                answer = await client.post("/txs", json={"tx": tx.raw.hex()})
                body = await answer.json()
                assert body.get("status") == "pending", body
            # This node proposes, as the driver does: its build drops the loser.
            block = b.commit(service.candidates())
            assert first.raw in block.txs
            dropped = [(tx, exc) for tx, exc in b.rejected if isinstance(exc, TxError)]
            assert [tx.id for tx, _ in dropped] == [second.id], b.rejected
            for tx, exc in dropped:
                service.note_dropped(tx, exc)
            service.on_committed(block, tuple(service.chain.events(block.height)))
            # A later block changes nothing for the loser: the name stays taken.
            block = b.commit([])
            service.on_committed(block, tuple(service.chain.events(block.height)))
            status = await tx_status(client, second.id)
            assert status["status"] == "rejected", (
                f"a register that lost its name to a committed one reads {status} on the "
                "proposer that dropped it (every other node says rejected)"
            )
            assert status["reason"] == "app_exists", status

    asyncio.run(main())
